"""The utterance encoder: MiniLM-L6 mean-pooled, L2-normalised sentence embeddings (384-d).

Exported to ONNX as model_repository/encoder; training features are computed with the exported
graph itself (ONNX Runtime), so the head is trained on exactly what the server produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from transformers import AutoModel

from training.paths import minilm_dir
from worker.tokenizer import TurnTokenizer, default_tokenizer_path


class SentenceEncoder(torch.nn.Module):
    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

def export_encoder(out: Path, opset: int = 17, model_dir: Path | None = None) -> None:
    """Export a sentence encoder (MiniLM by default) with named inputs/outputs and dynamic
    batch and sequence axes."""
    model = SentenceEncoder(model_dir or minilm_dir()).eval()
    width = model.bert.config.hidden_size
    ids = torch.ones(2, 8, dtype=torch.int64)
    mask = torch.ones(2, 8, dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    # the exporter leaves the embedding width symbolic; declare it as config.pbtxt does
    graph = onnx.load(str(out))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = width
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))

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
