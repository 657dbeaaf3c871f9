"""Heads over the served encoder's token states, trained on laptop14 + rest14 + rest15 train
together (minus sentences that occur in any dev/test file); the epoch with the best mean dev F1
over the three data sets is kept. Evaluated per data set with the served decoder
(decode.spans, no floor), its character spans mapped back to the ABSA words they cover."""

from __future__ import annotations

import functools
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.aspects import absa, decode, docs, features
from training.aspects.head import HeadConfig, build, save
from training.model import encoder_digest
from training.paths import ROOT

CHECKPOINT = ROOT / "training/checkpoints/aspects.pt"
FLOORS = (0.0, 0.3, 0.5, 0.7, 0.9)


@dataclass
class Item:
    sentence: absa.Sentence
    enc: absa.Encoded
    states: torch.Tensor  # [n, 384] fp16


def items(sents: list[absa.Sentence], states: list[torch.Tensor]) -> list[Item]:
    return [Item(s, absa.encode(s), x) for s, x in zip(sents, states, strict=True)]


def collate(batch: list[Item]):
    n = max(len(it.enc.ids) for it in batch)
    x = torch.zeros(len(batch), n, 384)
    mask = torch.zeros(len(batch), n, dtype=torch.long)
    tags = torch.full((len(batch), n), absa.IGNORE, dtype=torch.long)
    for r, it in enumerate(batch):
        k = len(it.enc.ids)
        x[r, :k] = it.states.float()
        mask[r, :k] = 1
        tags[r, :k] = torch.tensor(it.enc.labels)
    return x, mask, tags


def loss_of(out: dict[str, torch.Tensor], tags: torch.Tensor) -> torch.Tensor:
    if "tags" in out:
        return F.cross_entropy(out["tags"].transpose(1, 2), tags, ignore_index=absa.IGNORE)
    ae = torch.where(tags > 0, 2 - tags % 2, tags)  # B-x (odd) -> 1, I-x (even) -> 2, O -> 0
    pol = torch.where(tags > 0, (tags - 1) // 2, torch.full_like(tags, absa.IGNORE))
    return (F.cross_entropy(out["ae"].transpose(1, 2), ae, ignore_index=absa.IGNORE)
            + F.cross_entropy(out["as"].transpose(1, 2), pol, ignore_index=absa.IGNORE))


def word_span(words: tuple[str, ...], start: int, end: int) -> tuple[int, int]:
    starts = absa.word_starts(words)
    covered = [i for i, (a, w) in enumerate(zip(starts, words, strict=True))
               if a < end and a + len(w) > start]
    return covered[0], covered[-1] + 1


@torch.no_grad()
def predict(head, data: list[Item], batch: int = 128) -> list[np.ndarray]:
    head.eval()
    out = []
    for i in range(0, len(data), batch):
        chunk = data[i: i + batch]
        x, mask, _ = collate(chunk)
        probs = head(x, mask)["probs"].numpy()
        out += [probs[r, : len(it.enc.ids)] for r, it in enumerate(chunk)]
    head.train()
    return out


def f1(data: list[Item], probs: list[np.ndarray], floor: float = 0.0) -> dict:
    counts = absa.Counts()
    for it, p in zip(data, probs, strict=True):
        pred = []
        for s in decode.spans(p, it.enc.offsets, it.sentence.text, floor):
            a, b = word_span(it.sentence.words, s["start"], s["end"])
            pred.append((a, b, s["polarity"][:3].upper()))
        counts.add(pred, absa.spans(it.sentence.tags))
    p = 100 * counts.tp / counts.pred if counts.pred else 0.0
    r = 100 * counts.tp / counts.gold if counts.gold else 0.0
    return {"f1": counts.f1(), "precision": p, "recall": r}


def train(cfg: HeadConfig, data: dict, seed: int, epochs: int, log=print) -> dict:
    log = functools.partial(log, flush=True) if log is print else log
    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = build(cfg)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    train_items = data["train"]
    best: dict = {"dev_mean": -1.0}
    t0 = time.time()
    for epoch in range(epochs):
        order = train_items[:]
        rng.shuffle(order)
        for i in range(0, len(order), 32):
            x, mask, tags = collate(order[i: i + 32])
            opt.zero_grad()
            loss_of(head(x, mask), tags).backward()
            opt.step()
        dev = {d: f1(data[d, "dev"], predict(head, data[d, "dev"]))["f1"] for d in absa.DATASETS}
        mean = float(np.mean(list(dev.values())))
        if mean > best["dev_mean"]:
            best = {"dev_mean": mean, "dev": dev, "epoch": epoch + 1,
                    "state": {k: v.clone() for k, v in head.state_dict().items()}}
        log(f"{cfg.kind} seed {seed} epoch {epoch + 1}: dev {mean:.2f} {dev} "
            f"{time.time() - t0:.0f}s")
    head.load_state_dict(best.pop("state"))
    head.eval()
    test = {}
    for d in absa.DATASETS:
        probs = predict(head, data[d, "test"])
        test[d] = {str(fl): f1(data[d, "test"], probs, fl) for fl in FLOORS}
    return {"head": head, **best, "test": test, "seconds": round(time.time() - t0, 1)}


def run_all(seeds: int, epochs: int, started: float) -> None:
    from training.aspects import runs

    parts: dict = {"train": docs.joint_train()}
    for d in absa.DATASETS:
        for split in ("dev", "test"):
            parts[d, split] = absa.load(d, split)
    states = features.token_states([s.text for p in parts.values() for s in p])  # one cache
    data, k = {}, 0
    for key, sents in parts.items():
        data[key] = items(sents, states[k: k + len(sents)])
        k += len(sents)
    results, best = {}, None
    for kind in ("tagger", "interactive"):
        cfg = HeadConfig(kind=kind)
        results[kind] = []
        for seed in range(seeds):
            r = train(cfg, data, seed, epochs)
            head = r.pop("head")
            results[kind].append(r)
            if best is None or r["dev_mean"] > best[0]:
                best = (r["dev_mean"], head, cfg, kind, seed)
    assert best is not None
    _, head, cfg, kind, seed = best
    save(CHECKPOINT, head, cfg, {"kind": kind, "seed": seed, "dev_mean": best[0],
                                 "encoder": encoder_digest(features.SERVED)})
    runs.write("head", {"train_sentences": len(data["train"]), "epochs": epochs,
                        "configs": {k: asdict(HeadConfig(kind=k)) for k in results},
                        "results": results, "served": {"kind": kind, "seed": seed}}, started)
