"""Utterance vectors from an exported encoder graph (ONNX Runtime, length-bucketed as the
worker does), so that calibration and evaluation read exactly what the server produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.tokenizer import TurnTokenizer, default_tokenizer_path


def embed_texts(onnx_path: Path, texts: list[str], bucket_size: int = 64,
                tokenizer_json: Path | None = None) -> np.ndarray:
    """Embeddings of `texts` from an exported encoder, in input order (float32 [n, width])."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    tok = TurnTokenizer(tokenizer_json or default_tokenizer_path())
    width = sess.get_outputs()[0].shape[1]
    out = np.zeros((len(texts), width), dtype=np.float32)
    for bucket in tok.buckets(texts, bucket_size):
        (emb,) = sess.run(
            ["embedding"], {"input_ids": bucket.input_ids, "attention_mask": bucket.attention_mask}
        )
        out[bucket.rows] = emb
    return out
