"""Frozen encoder features of dialogues, cached on disk (keyed by the encoder file and texts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from training.data import Dialogue
from training.encoder import embed_texts
from training.paths import CACHE


def dialogue_features(dialogues: list[Dialogue], encoder_onnx: Path,
                      tokenizer_json: Path | None = None) -> list[np.ndarray]:
    """One float32 [turns, 384] array per dialogue, computed once and cached."""
    texts = [u.text for d in dialogues for u in d.utterances]
    stat = encoder_onnx.stat()  # the encoder's identity is part of the key
    key = "\x1e".join([f"{encoder_onnx.resolve()}:{stat.st_size}:{stat.st_mtime_ns}", *texts])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = CACHE / f"emb-{digest}.npy"
    if path.exists():
        flat = np.load(path)
    else:
        flat = embed_texts(encoder_onnx, texts, tokenizer_json=tokenizer_json)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, flat)
    out, start = [], 0
    for d in dialogues:
        out.append(flat[start : start + len(d.utterances)])
        start += len(d.utterances)
    return out
