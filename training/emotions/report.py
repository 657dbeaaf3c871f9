"""Collect the runs (training/cache/emotions/runs/*.json) into reports/emotions/eval.{md,json},
choose the served variant and write its checkpoint."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from training.emotions import export as X
from training.emotions import sets
from training.emotions.data import LABELS
from training.emotions.experiments import GLOVE_ROWS, RUNS, STATE_ROWS, evaluate_saved
from training.emotions.model import Datn, DatnConfig
from training.machine import machine, token_head_seconds
from training.paths import REPORTS

OUT = REPORTS / "emotions"
LOG = RUNS / "commands.jsonl"
# Yu et al. 2018, Table 3, S1 -> E1 (E-c test; ACC = Jaccard accuracy, F1 = macro-F1; mean of
# ten runs, DATN-2* the ensemble of the ten). Columns re-assembled from the text extraction.
PAPER = {"Base": (0.569, 0.521), "SP": (0.577, 0.532), "DATN-1": (0.582, 0.543),
         "DATN-2": (0.583, 0.544), "DATN-2* (10-run ensemble)": (0.597, 0.551),
         "SemEval-18 rank 1 (as quoted)": (0.595, 0.542)}
SPANEMO_JACCARD = 0.601


def runs() -> dict[str, list[dict]]:
    names = ("ec-dev", "ec-test", "meld-test", "goemotions-test", "meld-dev", "goemotions-dev")
    return evaluate_saved({n: sets.split(n) for n in names})


def stat(rs: list[dict], *path: str) -> tuple[float, float]:
    vals = []
    for r in rs:
        v = r
        for k in path:
            v = v[k]
        vals.append(v)
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else float("nan")


def fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    return f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}"


def conversational(r: dict, split: str = "dev") -> float:
    """The served choice: mean of MELD macro-F1 (7 classes) and GoEmotions-Ekman macro-F1,
    with the run's main (dev-Jaccard) thresholds."""
    e = r["main"]
    return (e[f"meld-{split}"]["macro_f1"] + e[f"goemotions-{split}"]["macro_f1"]) / 2


def choose(all_runs: dict[str, list[dict]]) -> tuple[str, dict]:
    """The token-state variant with the best mean dev conversational score; its best seed."""
    rows = {n: rs for n, rs in all_runs.items() if n.startswith("states-")}
    name = max(rows, key=lambda n: np.mean([conversational(r) for r in rows[n]]))
    return name, max(rows[name], key=conversational)


def served_cost(onnx_path: Path, batch: int = 32, tokens: int = 24, reps: int = 200) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    times = token_head_seconds(sess, batch, tokens, warmup=10, reps=reps)
    med = float(np.median(times)) * 1e3
    return {"batch": batch, "tokens": tokens, "threads": 1, "median_ms_per_batch": round(med, 3),
            "ms_per_turn": round(med / batch, 4), "p90_ms_per_batch":
            round(float(np.percentile(times, 90)) * 1e3, 3)}


def write_served(name: str, best: dict) -> dict:
    ckpt = torch.load(RUNS / f"{name}-s{best['seed']}.pt", map_location="cpu")
    model = Datn(DatnConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state"])
    about = {"run": name, "seed": best["seed"], "train_sets": best["train_sets"],
             "encoder": best["encoder"],
             "dev_conversational": round(conversational(best), 4),
             "thresholds_tuned_on": best["tune_on"],
             "thresholds_objective": "dev Jaccard accuracy over the known labels"}
    thresholds = best["main"]["thresholds"]
    X.save_checkpoint(model.eval(), thresholds, about)
    with tempfile.TemporaryDirectory() as d:
        cost = served_cost(X.export(Path(d)))
    return {**about, "checkpoint_bytes": X.CHECKPOINT.stat().st_size, "cpu_cost": cost,
            "thresholds": dict(zip(LABELS, thresholds, strict=True))}


def build(command: str, wall_s: float) -> dict:
    all_runs = runs()
    name, best = choose(all_runs)
    served = write_served(name, best)
    keys = {"ec-test": ("jaccard", "micro_f1", "macro_f1", "jaccard_empty0"),
            "ec-test-gamma": ("jaccard", "micro_f1", "macro_f1"),
            "meld-test": ("accuracy", "macro_f1", "weighted_f1"),
            "goemotions-test": ("jaccard", "micro_f1", "macro_f1"),
            "meld-dev": ("macro_f1",), "goemotions-dev": ("macro_f1",)}
    rows = {}
    for n, rs in all_runs.items():
        row: dict = {"seeds": [r["seed"] for r in rs], "seconds": [r["seconds"] for r in rs],
                     "train_sets": rs[0]["train_sets"], "train_rows": rs[0]["train_rows"],
                     "source_sentences": rs[0]["source_sentences"],
                     "config": rs[0]["config"], "train": rs[0]["train"],
                     "best_epoch": [int(np.argmin([h["dev_loss"] for h in r["history"]])) + 1
                                    for r in rs]}
        for objective in ("main", "f1_thresholds"):
            ev = {split: {k: stat(rs, objective, split, k) for k in ks}
                  for split, ks in keys.items() if split in rs[0][objective]}
            ev["f1_per_label"] = np.mean([r[objective]["ec-test"]["f1_per_label"]
                                          for r in rs], 0).round(4).tolist()
            ev["thresholds"] = [r[objective]["thresholds"] for r in rs]
            row[objective] = ev
        if "gamma" in rs[0]["main"]:
            row["gamma"] = [r["main"]["gamma"] for r in rs]
        row["dev_conversational"] = stat([{"v": conversational(r)} for r in rs], "v")
        rows[n] = row
    log = [json.loads(x) for x in LOG.read_text().splitlines()] if LOG.exists() else []
    return {"command": command, "commands": log, "machine": machine(),
            "wall_seconds": round(wall_s, 1), "rows": rows, "served": served,
            "paper": PAPER, "spanemo_jaccard": SPANEMO_JACCARD, "labels": list(LABELS),
            "order": [r[0] for r in GLOVE_ROWS] + [r[0] for r in STATE_ROWS]}


def markdown(rep: dict) -> str:
    from training.emotions.report_md import render

    return render(rep)


def write(command: str, wall_s: float) -> dict:
    rep = build(command, wall_s)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eval.json").write_text(json.dumps(rep, indent=1))
    (OUT / "eval.md").write_text(markdown(rep))
    return rep
