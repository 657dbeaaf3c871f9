"""Token states of the served encoder (training/checkpoints/served.pt over MiniLM), frozen,
exactly as the serving encoder computes them; cached under training/cache/aspects/."""

from __future__ import annotations

import hashlib
from functools import cache

import torch

from training.aspects import absa
from training.paths import CACHE, SERVED, minilm_dir


@cache
def encoder():
    from training.model import load

    model, _ = load(SERVED, minilm_dir())
    return model


@torch.no_grad()
def token_states(texts: list[str], batch: int = 64) -> list[torch.Tensor]:
    """[n_wordpieces, 384] fp16 per text (worker tokenisation: no padding, <= 128 tokens)."""
    h = hashlib.sha1(SERVED.read_bytes())  # states of another encoder must never be reused
    h.update("\n".join(texts).encode())
    key = h.hexdigest()[:16]
    path = CACHE / "aspects" / f"tokens_{key}.pt"
    if path.exists():
        return torch.load(path)
    encs = absa.tokenizer().encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
    out: list[torch.Tensor | None] = [None] * len(texts)
    model = encoder()
    for s in range(0, len(order), batch):
        rows = order[s: s + batch]
        n = max(len(encs[i].ids) for i in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(rows):
            k = len(encs[i].ids)
            ids[r, :k] = torch.tensor(encs[i].ids)
            mask[r, :k] = 1
        states = model.tokens(ids, mask)
        for r, i in enumerate(rows):
            out[i] = states[r, : int(mask[r].sum())].half().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out  # type: ignore[return-value]
