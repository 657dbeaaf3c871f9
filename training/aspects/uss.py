"""The served head on service chat: 100 customer turns of the USS test split (the first 50 of
MWOZ test dialogues and the first 50 of SGD, in file order, of >= 4 words), run through the
exported ONNX exactly as served; every extraction (no floor) goes to uss.json for a reader to
judge. Also the head's CPU cost per turn with onnxruntime (1 thread, batch 32 x 24 tokens)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from training.aspects import absa, decode, features
from training.aspects.export import export
from training.data import load_uss, uss_split
from training.machine import token_head_seconds

PER_CORPUS = 50


def sample() -> list[dict]:
    out = []
    for corpus in ("MWOZ", "SGD"):
        dialogues = load_uss(corpus)
        taken = 0
        for i in uss_split(corpus)["test"]:
            for t, u in enumerate(dialogues[i].utterances):
                if u.role == "customer" and len(u.text.split()) >= 4 and taken < PER_CORPUS:
                    out.append({"corpus": corpus, "dialogue": i, "turn": t, "text": u.text})
                    taken += 1
    return out


def session(onnx_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def bench(sess, batch: int = 32, length: int = 24, repeats: int = 50) -> dict:
    med = float(np.median(token_head_seconds(sess, batch, length, warmup=5, reps=repeats)))
    return {"batch": batch, "tokens": length, "threads": 1, "median_batch_ms": 1e3 * med,
            "per_turn_ms": 1e3 * med / batch}


def run(started: float) -> None:
    from training.aspects import runs

    turns = sample()
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(export(Path(tmp)))
        states = features.token_states([t["text"] for t in turns])
        for turn, x in zip(turns, states, strict=True):
            enc = absa.tokenizer().encode(turn["text"])
            probs = sess.run(None, {"tokens": x.float().numpy()[None],
                                    "attention_mask": np.ones((1, len(enc.ids)), np.int64)})[0]
            turn["spans"] = decode.spans(probs[0], [tuple(o) for o in enc.offsets],
                                         turn["text"], 0.0)
        cost = bench(sess)
    runs.write("uss", {"turns": turns, "cost": cost}, started)
