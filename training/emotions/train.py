"""Training: the paper's alternating scheme (one source mini-batch updates the shared part,
then one target mini-batch updates everything), the cosine-similarity loss between the two
attentions, and the model of the epoch with the lowest dev loss."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.emotions.model import Datn, DatnConfig
from training.emotions.states import States


@dataclass
class Inputs:
    """Word ids (GloVe) or token states of N texts."""

    ids: list[list[int]] | None = None
    states: States | None = None

    def __len__(self) -> int:
        return len(self.ids) if self.ids is not None else len(self.states)

    def lengths(self) -> np.ndarray:
        if self.ids is not None:
            return np.array([len(s) for s in self.ids])
        return self.states.lengths()

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.states is not None:
            return self.states.batch(rows)
        width = max(len(self.ids[i]) for i in rows)
        x = torch.zeros(len(rows), width, dtype=torch.int64)
        mask = torch.zeros(len(rows), width, dtype=torch.int64)
        for r, i in enumerate(rows):
            x[r, : len(self.ids[i])] = torch.tensor(self.ids[i])
            mask[r, : len(self.ids[i])] = 1
        return x, mask


@dataclass
class Labelled:
    x: Inputs
    y: np.ndarray  # [N, 11] targets, or [N] polarities for the source
    m: np.ndarray | None = None  # [N, 11] known-label mask


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "kl"  # "kl" (paper: softmax + KL to the normalised labels) | "bce" (sigmoid)
    epochs: int = 6
    batch: int = 32
    lr: float = 1e-3
    lam: float = 0.05  # weight of the attention similarity loss
    seed: int = 0


def batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled mini-batches of similar lengths (sorted within chunks of 50 batches)."""
    order = rng.permutation(len(lengths))
    out = []
    for c in range(0, len(order), 50 * size):
        chunk = order[c: c + 50 * size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i: i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(out)
    return out


def emotion_loss(logits: torch.Tensor, y: torch.Tensor, m: torch.Tensor, kind: str):
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * m
        return per.sum() / m.sum().clamp(min=1.0)
    rows = y.sum(1) > 0  # KL to the label distribution: rows without a label carry none
    if not rows.any():
        return logits.sum() * 0.0
    q = y[rows] / y[rows].sum(1, keepdim=True)
    logp = torch.log_softmax(logits[rows], dim=-1)
    return (q * (torch.log(q.clamp(min=1e-12)) - logp)).sum(1).mean()


def similarity(out: dict[str, torch.Tensor]) -> torch.Tensor:
    if "alpha_s" not in out:
        return out["emotion"].sum() * 0.0
    return F.cosine_similarity(out["alpha_s"], out["alpha_t"], dim=-1).mean()


def _cycle(size: int, lengths: np.ndarray, rng) -> Iterator[np.ndarray]:
    while True:
        yield from batches(lengths, size, rng)


@torch.no_grad()
def predict(model: Datn, x: Inputs, kind: str, size: int = 256) -> np.ndarray:
    """Probabilities [N, 11] (softmax for "kl", sigmoid for "bce"), in input order."""
    model.eval()
    lengths = x.lengths()
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(x), 11), dtype=np.float32)
    for i in range(0, len(order), size):
        rows = order[i: i + size]
        logits = model(*x.batch(rows))["emotion"]
        p = torch.softmax(logits, -1) if kind == "kl" else torch.sigmoid(logits)
        out[rows] = p.numpy()
    return out


@torch.no_grad()
def dev_loss(model: Datn, dev: Labelled, kind: str) -> float:
    model.eval()
    total, n = 0.0, 0
    order = np.argsort(dev.x.lengths(), kind="stable")
    for i in range(0, len(order), 256):
        rows = order[i: i + 256]
        logits = model(*dev.x.batch(rows))["emotion"]
        loss = emotion_loss(logits, torch.from_numpy(dev.y[rows]), torch.from_numpy(dev.m[rows]),
                            kind)
        total, n = total + float(loss) * len(rows), n + len(rows)
    return total / n


def fit(cfg: DatnConfig, tc: TrainConfig, target: Labelled, dev: Labelled,
        source: Labelled | None = None, table: np.ndarray | None = None,
        log: str = "") -> tuple[Datn, list[dict]]:
    """Train from scratch (word vectors from `table` for a words model)."""
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    model = Datn(cfg)
    if table is not None:
        with torch.no_grad():
            model.embed.weight.copy_(torch.from_numpy(table))
    return _fit(model, tc, target, dev, source, rng, log)


def _fit(model: Datn, tc: TrainConfig, target: Labelled, dev: Labelled,
         source: Labelled | None, rng: np.random.Generator, log: str):
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    opt_src = torch.optim.Adam(model.source_parameters(), lr=tc.lr) if source else None
    src_iter = _cycle(tc.batch, source.x.lengths(), rng) if source else None
    best, best_state, history = float("inf"), None, []
    for epoch in range(tc.epochs):
        model.train()
        t0 = time.time()
        for rows in batches(target.x.lengths(), tc.batch, rng):
            if source is not None:
                srows = next(src_iter)
                logits = model.source_forward(*source.x.batch(srows))
                loss = F.cross_entropy(logits, torch.from_numpy(source.y[srows]))
                model.zero_grad(set_to_none=True)
                loss.backward()
                opt_src.step()
            out = model(*target.x.batch(rows))
            y, m = torch.from_numpy(target.y[rows]), torch.from_numpy(target.m[rows])
            loss = emotion_loss(out["emotion"], y, m, tc.loss) + tc.lam * similarity(out)
            model.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        d = dev_loss(model, dev, tc.loss)
        history.append({"epoch": epoch + 1, "dev_loss": round(d, 5),
                        "seconds": round(time.time() - t0, 1)})
        if log:
            print(f"{log} epoch {epoch + 1}: dev loss {d:.4f} ({time.time() - t0:.0f}s)",
                  flush=True)
        if d < best:
            best, best_state = d, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), history
