"""Training IMN (Algorithm 1 of the paper): pretrain on DS + DD, then aspect-level batches with
a document-level batch every r = 2 aspect batches; theta_ds and theta_dd are left out of the
aspect-level update. The epoch with the best dev F1 is kept and evaluated on test."""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.aspects import absa, docs, glove
from training.aspects.imn import IMN, decode


@dataclass(frozen=True)
class IMNConfig:
    epochs: int = 25
    pretrain_epochs: int = 2
    lr: float = 1e-3
    batch: int = 32
    ratio: int = 2  # r: one document batch every r aspect batches
    iterations: int = 2  # T
    docs: bool = True


def aspect_arrays(sents: list[absa.Sentence], vocab: dict[str, int]):
    """Word ids, AE labels (0 O, 1 BA, 2 IA) and AS labels (0 POS, 1 NEG, 2 NEU, -100 none)."""
    out = []
    for s in sents:
        ae = [0] * len(s.words)
        pol = [-100] * len(s.words)
        for a, b, p in absa.spans(s.tags):
            ae[a] = 1
            for i in range(a, b):
                ae[i] = 2 if i > a else 1
                pol[i] = ("POS", "NEG", "NEU").index(p)
        out.append((glove.ids(list(s.words), vocab), ae, pol))
    return out


def pad(rows: list[list[int]], value: int = 0) -> torch.Tensor:
    n = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)


def aspect_loss(model: IMN, batch) -> torch.Tensor:
    ids = pad([b[0] for b in batch])
    mask = ids != glove.PAD
    mask |= pad([[1] * len(b[0]) for b in batch]).bool()  # UNK/PAD id 0 never occurs in words
    ae, pol = pad([b[1] for b in batch], -100), pad([b[2] for b in batch], -100)
    y_ae, y_as = model(ids, mask)
    n = mask.sum(1).float()
    l_ae = F.cross_entropy(y_ae.transpose(1, 2), ae, reduction="none").sum(1) / n
    l_as = F.cross_entropy(y_as.transpose(1, 2), pol, reduction="none").sum(1) / n
    return (l_ae + l_as).mean()


def doc_loss(model: IMN, ds_batch, dd_batch) -> torch.Tensor:
    loss = torch.zeros(())
    for batch, which in ((ds_batch, 0), (dd_batch, 1)):
        ids = pad([b[0] for b in batch])
        mask = pad([[1] * len(b[0]) for b in batch]).bool()
        y = torch.tensor([b[1] for b in batch])
        logits = model.documents(ids, mask)[which]
        loss = loss + F.cross_entropy(logits, y)
    return loss


@torch.no_grad()
def evaluate(model: IMN, data, sents: list[absa.Sentence], batch: int = 128) -> float:
    model.eval()
    counts = absa.Counts()
    for i in range(0, len(data), batch):
        chunk = data[i: i + batch]
        ids = pad([b[0] for b in chunk])
        mask = pad([[1] * len(b[0]) for b in chunk]).bool()
        y_ae, y_as = model(ids, mask)
        ae, pol = y_ae.argmax(-1).numpy(), y_as.argmax(-1).numpy()
        for j, s in enumerate(sents[i: i + batch]):
            counts.add(decode(ae[j], pol[j], len(s.words)), absa.spans(s.tags))
    model.train()
    return counts.f1()


def batches(items: list, size: int, rng: random.Random) -> list[list]:
    items = items[:]
    rng.shuffle(items)
    return [items[i: i + size] for i in range(0, len(items), size)]


def train(dataset: str, cfg: IMNConfig, seed: int, log=print) -> dict:
    log = functools.partial(log, flush=True) if log is print else log
    torch.manual_seed(seed)
    rng = random.Random(seed)
    split = {s: absa.load(dataset, s) for s in ("train", "dev", "test")}
    ds_docs = [(glove.tokenize(t), y) for t, y in docs.sentiment_docs()]
    dd_docs = [(glove.tokenize(t), y) for t, y in docs.domain_docs()]
    words = {w.lower() for ss in split.values() for s in ss for w in s.words}
    words |= {w for d in (ds_docs, dd_docs) for ws, _ in d for w in ws}
    vocab, matrix = glove.vectors(words)
    data = {k: aspect_arrays(v, vocab) for k, v in split.items()}
    ds = [(glove.ids(w, vocab), y) for w, y in ds_docs if w]
    dd = [(glove.ids(w, vocab), y) for w, y in dd_docs if w]
    model = IMN(matrix, cfg.iterations, cfg.docs)
    g = model.groups()
    opt_a = torch.optim.Adam(g["s"] + g["ae"] + g["as"] + g["re"], lr=cfg.lr)
    opt_d = torch.optim.Adam(g["s"] + g["ds"] + g["dd"], lr=cfg.lr)
    t0 = time.time()

    def doc_step() -> None:
        opt_d.zero_grad()
        doc_loss(model, rng.sample(ds, cfg.batch), rng.sample(dd, cfg.batch)).backward()
        opt_d.step()

    if cfg.docs:
        for _ in range(cfg.pretrain_epochs * max(len(ds), len(dd)) // cfg.batch):
            doc_step()
    best = {"dev": -1.0}
    for epoch in range(cfg.epochs):
        for b, batch in enumerate(batches(data["train"], cfg.batch, rng), 1):
            opt_a.zero_grad()
            aspect_loss(model, batch).backward()
            opt_a.step()
            if cfg.docs and b % cfg.ratio == 0:
                doc_step()
        dev = evaluate(model, data["dev"], split["dev"])
        if dev > best["dev"]:
            test = evaluate(model, data["test"], split["test"])
            best = {"dev": dev, "test": test, "epoch": epoch + 1}
        log(f"imn {dataset} seed {seed} epoch {epoch + 1}: dev {dev:.2f} "
            f"(best {best['dev']:.2f} @ {best['epoch']}, test {best['test']:.2f}) "
            f"{time.time() - t0:.0f}s")
    glove_known = float(np.mean([w.lower() in vocab for s in split["train"] for w in s.words]))
    return {**best, "seconds": round(time.time() - t0, 1), "glove_coverage": glove_known}


def run_all(seeds: int, epochs: int, started: float, datasets: list[str]) -> None:
    """One stage file per data set (imn_<data set>.json), so data sets can run in parallel."""
    from dataclasses import asdict

    from training.aspects import runs

    cfg = IMNConfig(epochs=epochs, pretrain_epochs=1)
    for d in datasets:
        t0 = time.time()
        results = [train(d, cfg, seed) for seed in range(seeds)]
        runs.write(f"imn_{d}", {"config": asdict(cfg), "results": {d: results}}, t0)
