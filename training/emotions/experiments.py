"""The experiment grid: GloVe DATN rows (paper replication + no-transfer ablation) and the
dual-attention heads over the served encoder's token states, trained on E-c alone or with
GoEmotions and/or MELD. Each run's metrics go to training/cache/emotions/runs/<run>.json
(the states runs also keep their weights there, for the served choice)."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict

import numpy as np
import torch

from training.emotions import metrics as M
from training.emotions import sets
from training.emotions.data import Split
from training.emotions.glove import build_vocab
from training.emotions.glove import encode as encode_words
from training.emotions.model import DatnConfig
from training.emotions.states import SERVED, STATES, cached
from training.emotions.train import Inputs, Labelled, TrainConfig, fit, predict
from training.model import encoder_digest

RUNS = STATES / "runs"
EVAL = ("ec-test", "meld-test", "goemotions-test", "meld-dev", "goemotions-dev")

# GloVe rows: (run name, variant, uses the source task)
GLOVE_ROWS = (("glove-base", "base", False), ("glove-datn2-nosource", "datn2", False),
              ("glove-datn2", "datn2", True), ("glove-datn1", "datn1", True))
# Token-state rows: (run name, extra target corpora, uses the source task)
STATE_ROWS = (("states-ec", (), True), ("states-ec+goemotions+meld", ("goemotions", "meld"), True),
              ("states-ec+goemotions", ("goemotions",), True),
              ("states-ec+meld", ("meld",), True), ("states-ec-nosource", (), False))
GLOVE_CFG = dict(d_in=50, hidden=100, att=100, mlp=100, dropout=0.5)
STATES_CFG = dict(d_in=384, proj=128, hidden=64, att=64, mlp=128, dropout=0.3)


def evaluate(probs: dict[str, np.ndarray], data: dict[str, Split], tune_on: list[str],
             objective: str = "jaccard", paper_gamma: bool = False) -> dict:
    """Thresholds per label on the pooled dev sets `tune_on` (for dev Jaccard, or per-label
    F1); metrics on every set."""
    p = np.concatenate([probs[n] for n in tune_on])
    y = np.concatenate([data[n].y for n in tune_on])
    m = np.concatenate([data[n].m for n in tune_on])
    thr = M.tune_jaccard(p, y, m) if objective == "jaccard" else M.tune_thresholds(p, y, m)
    out: dict = {"thresholds": [float(t) for t in thr], "tuned_on": tune_on,
                 "objective": objective}
    for name in probs:
        if name == "ec-test":
            out[name] = M.multilabel(data[name].y, probs[name] >= thr)
            out[name]["f1_per_label"] = [round(float(v), 4) for v in
                                         M.f1_per_label(data[name].y, probs[name] >= thr)]
        elif name.startswith("meld-"):
            gold = [next(iter(s)) for s in data[name].coarse]
            out[name] = M.single_label(gold, M.coarse_single(probs[name], thr))
        elif name.startswith("goemotions-"):
            out[name] = M.ekman(data[name].coarse, M.coarse_sets(probs[name], thr))
    if paper_gamma:
        gamma = M.tune_global(probs["ec-dev"], data["ec-dev"].y)
        out["gamma"] = gamma
        out["ec-test-gamma"] = M.multilabel(data["ec-test"].y, probs["ec-test"] >= gamma)
    return out


def evaluate_saved(data: dict[str, Split]) -> dict[str, list[dict]]:
    """Every saved run, evaluated with both threshold objectives: {run: [per seed]}. Token-state
    runs of another encoder than the served one are left out."""
    out: dict[str, list[dict]] = {}
    served = encoder_digest(SERVED)
    for path in sorted(RUNS.glob("*.json")):
        meta = json.loads(path.read_text())
        if meta["config"]["input"] == "states" and meta.get("encoder") != served:
            continue
        z = np.load(path.with_suffix(".npz"))
        probs = {k: z[k] for k in z.files}
        glove = meta["loss"] == "kl"
        meta["main"] = evaluate(probs, data, meta["tune_on"], "jaccard", paper_gamma=glove)
        meta["f1_thresholds"] = evaluate(probs, data, meta["tune_on"], "f1")
        out.setdefault(meta["run"], []).append(meta)
    return out


def _save(name: str, result: dict, probs: dict[str, np.ndarray]) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{name}.json").write_text(json.dumps(result, indent=1))
    np.savez(RUNS / f"{name}.npz", **probs)


def run_glove(seeds: tuple[int, ...], epochs: int) -> None:
    data = {n: sets.split(n) for n in ("ec-train", "ec-dev", *EVAL)}
    src_texts, src_y = sets.source(states=False)
    vocab, table, vstats = build_vocab(data["ec-train"].texts + src_texts,
                                       [t for d in data.values() for t in d.texts] + src_texts)
    x = {n: Inputs(ids=encode_words(d.texts, vocab)) for n, d in data.items()}
    target = Labelled(x["ec-train"], data["ec-train"].y, data["ec-train"].m)
    dev = Labelled(x["ec-dev"], data["ec-dev"].y, data["ec-dev"].m)
    source = Labelled(Inputs(ids=encode_words(src_texts, vocab)), src_y)
    for seed, (name, variant, use_source) in itertools.product(seeds, GLOVE_ROWS):
        cfg = DatnConfig(variant=variant, input="words", vocab=len(vocab), **GLOVE_CFG)
        tc = TrainConfig(loss="kl", epochs=epochs, batch=32, seed=seed)
        t0 = time.time()
        model, hist = fit(cfg, tc, target, dev, source if use_source else None, table,
                          log=f"{name} s{seed}")
        probs = {n: predict(model, x[n], "kl") for n in ("ec-dev", *EVAL)}
        res = dict(run=name, seed=seed, tune_on=["ec-dev"], loss="kl", config=asdict(cfg),
                   train=asdict(tc), history=hist, seconds=round(time.time() - t0, 1),
                   vocab=vstats, train_sets=["ec-train"], train_rows=len(target.y),
                   source_sentences=len(src_texts) if use_source else 0)
        _save(f"{name}-s{seed}", res, probs)


def run_states(seeds: tuple[int, ...], epochs: int, only: tuple[str, ...] = ()) -> None:
    names = ("ec-train", "ec-dev", "meld-train", "goemotions-train", *EVAL)
    data = {n: sets.split(n) for n in names}
    x = {n: Inputs(states=cached(n, d.texts)) for n, d in data.items()}
    src_texts, src_y = sets.source(states=True)
    source = Labelled(Inputs(states=cached("source", src_texts)), src_y)
    for seed, (name, extra, use_source) in itertools.product(seeds, STATE_ROWS):
        if only and name not in only:
            continue
        train_sets = ["ec-train", *(f"{c}-train" for c in extra)]
        dev_sets = ["ec-dev", *(f"{c}-dev" for c in extra)]
        target = _concat([data[n] for n in train_sets], [x[n] for n in train_sets])
        dev = _concat([data[n] for n in dev_sets], [x[n] for n in dev_sets])
        cfg = DatnConfig(variant="datn1", input="states", **STATES_CFG)
        tc = TrainConfig(loss="bce", epochs=epochs, batch=64, seed=seed)
        t0 = time.time()
        model, hist = fit(cfg, tc, target, dev, source if use_source else None,
                          log=f"{name} s{seed}")
        probs = {n: predict(model, x[n], "bce") for n in ("ec-dev", *EVAL)}
        res = dict(run=name, seed=seed, tune_on=dev_sets, loss="bce", config=asdict(cfg),
                   train=asdict(tc), history=hist, seconds=round(time.time() - t0, 1),
                   train_sets=train_sets, train_rows=len(target.y),
                   source_sentences=len(src_texts) if use_source else 0,
                   encoder=encoder_digest(SERVED))
        _save(f"{name}-s{seed}", res, probs)
        torch.save({"config": asdict(cfg), "state": model.state_dict()},
                   RUNS / f"{name}-s{seed}.pt")


def _concat(splits: list[Split], inputs: list[Inputs]) -> Labelled:
    """Several corpora as one training set (token states only)."""
    flats, offsets, base = [], [np.zeros(1, dtype=np.int64)], 0
    for i in inputs:
        flats.append(i.states.flat)
        offsets.append(i.states.offsets[1:] + base)
        base += len(i.states.flat)
    from training.emotions.states import States

    states = States(np.concatenate(flats), np.concatenate(offsets))
    return Labelled(Inputs(states=states), np.concatenate([s.y for s in splits]),
                    np.concatenate([s.m for s in splits]))
