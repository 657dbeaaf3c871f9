"""Token states of the served encoder (training/model.py ChatModel.tokens, frozen), cached.

Texts are tokenised exactly as the worker does (worker/tokenizer.py: the MiniLM tokenizer.json,
at most 128 tokens). States are stored flat in fp16, [sum of lengths, 384], with row offsets.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from training.paths import CACHE, SERVED, minilm_dir
from worker.tokenizer import TurnTokenizer, default_tokenizer_path

STATES = CACHE / "emotions"
MAX_TOKENS = 128


@dataclass
class States:
    """Token states of N texts: flat [T, 384] fp16 and offsets [N + 1]."""

    flat: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded float32 states [B, L, E] and mask [B, L] of `rows`."""
        lens = self.offsets[rows + 1] - self.offsets[rows]
        width = int(lens.max())
        x = np.zeros((len(rows), width, self.flat.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (i, n) in enumerate(zip(rows, lens, strict=True)):
            x[r, :n] = self.flat[self.offsets[i]: self.offsets[i] + n]
            mask[r, :n] = 1
        return torch.from_numpy(x), torch.from_numpy(mask)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _key(texts: list[str]) -> str:
    h = hashlib.sha1(SERVED.read_bytes())  # all: most trained layers lie past the first MB
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:12]


@torch.no_grad()
def encode(texts: list[str], model=None, log: str = "") -> States:
    """Token states of `texts` (in order), from the served encoder."""
    if model is None:
        from training.model import load

        model, _ = load(SERVED, minilm_dir())
    tok = TurnTokenizer(default_tokenizer_path(), max_tokens=MAX_TOKENS)
    buckets = tok.buckets(texts, bucket_size=64)
    parts: list[np.ndarray | None] = [None] * len(texts)
    t0 = time.time()
    for k, b in enumerate(buckets):
        ids, mask = torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask)
        h = model.tokens(ids, mask).numpy().astype(np.float16)
        for r, i in enumerate(b.rows):
            parts[i] = h[r, : int(b.attention_mask[r].sum())]
        if log and k % 50 == 0:
            print(f"{log}: {k}/{len(buckets)} buckets, {time.time() - t0:.0f}s", flush=True)
    lens = np.array([len(p) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return States(np.concatenate(parts), offsets)


def cached(name: str, texts: list[str], model=None) -> States:
    """Token states of `texts`, from training/cache/emotions/ when already computed."""
    path = STATES / f"{name}-{_key(texts)}.npz"
    if path.exists():
        z = np.load(path)
        return States(z["flat"], z["offsets"])
    s = encode(texts, model, log=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, flat=s.flat, offsets=s.offsets)
    return s
