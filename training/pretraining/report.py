"""Summary (mean +- std over seeds) and the markdown report of the pre-training study.

    python -m training.pretraining.report reports/pretraining.json   # rewrite summary and .md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

METRICS = {"USS": [("MWOZ", "macro_f1"), ("SGD", "macro_f1"), ("MWOZ", "levels_macro_f1"),
                   ("SGD", "levels_macro_f1"), ("MWOZ", "accuracy"), ("SGD", "accuracy")],
           "MELD": [("MELD", "emotion_weighted_f1"), ("MELD", "sentiment_macro_f1")]}


def summary(runs: list[dict]) -> list[dict]:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        cells[(r["dataset"], r["fraction"], r["arm"])].append(r)
    out = []
    for (dataset, fraction, arm), rs in cells.items():
        row = {"dataset": dataset, "fraction": fraction, "arm": arm, "seeds": len(rs),
               "best_epoch_mean": round(float(np.mean([r["best_epoch"] for r in rs])), 2),
               "valid_mean": round(float(np.mean([r["valid_score"] for r in rs])), 2),
               "valid_epoch1_mean": round(float(np.mean([r["valid_curve"][0] for r in rs])), 2)}
        for corpus, metric in METRICS[dataset]:
            v = [r["test"][corpus][metric] for r in rs]
            row[f"{corpus}_{metric}"] = {"mean": round(float(np.mean(v)), 2),
                                         "std": round(float(np.std(v)), 2)}
        out.append(row)
    return out


def _cell(row: dict, key: str) -> str:
    return f"{row[key]['mean']:.2f} ± {row[key]['std']:.2f}"


def _delta(rows: dict, arm: str, key: str) -> str:
    d = rows[arm][key]["mean"] - rows["none"][key]["mean"]
    return f"{d:+.2f}"


def markdown(r: dict) -> str:
    s = r["summary"]
    lines = ["# TL-ERC pre-training and SI-MTL on the served context model", "",
             f"Command: `{r['command']}`. Machine: {r['machine']['cpu']} "
             f"({r['machine']['torch_threads']} torch threads). Total "
             f"{r['stages']['total_seconds'] / 60:.1f} min; seeds {r['seeds']}.", "",
             f"Utterance vectors: {r['encoder']}. Context model: GRU(256) over [vector; "
             "is_customer], the served design's; only the GRU is transferred. Fine-tuning: "
             "AdamW 1e-3, 16 dialogues a batch, up to 15 epochs, early stop after 4 without "
             "gain, model selection on validation (USS: pooled satisfaction macro-F1; MELD: "
             "emotion weighted F1). Test figures are those of the selected epoch.", "",
             "## Pre-training", "",
             f"SGD dialogues: {r['pretraining_data']['train_dialogues']} for training, "
             f"{r['pretraining_data']['dev_dialogues']} (SGD dev) for the held-out loss; left "
             f"out: {r['pretraining_data']['uss_valid_test_marked']} marked USS valid/test, "
             f"{r['pretraining_data']['text_overlap']} sharing an utterance (> 4 words) with a "
             "USS valid/test dialogue.", "",
             "| objective | epochs | steps | seconds | held-out loss by epoch |",
             "|---|---|---|---|---|"]
    for name, p in r["pretraining"].items():
        curve = " → ".join(f"{c['loss']:.3f}" for c in p["dev_curve"])
        lines.append(f"| {name} | {p['epochs']} | {p['steps']} | {p['seconds']:.0f} | {curve} |")
    lines += ["", "Training-loss curves (every 50 steps) are in the JSON.", ""]
    for dataset in ("USS", "MELD"):
        rows = [x for x in s if x["dataset"] == dataset]
        if not rows:
            continue
        keys = [f"{c}_{m}" for c, m in METRICS[dataset]][:4 if dataset == "USS" else 2]
        deltas = keys[:2] if dataset == "USS" else keys[:1]
        lines += [f"## {dataset} test, mean ± std over seeds", "",
                  "| fraction | arm | " + " | ".join(keys) + " | "
                  + " | ".join(f"Δ {k} vs none" for k in deltas)
                  + " | best epoch | valid after epoch 1 → best |",
                  "|---" * (len(keys) + len(deltas) + 4) + "|"]
        by_frac: dict[float, dict[str, dict]] = defaultdict(dict)
        for x in rows:
            by_frac[x["fraction"]][x["arm"]] = x
        for frac in sorted(by_frac):
            arms = by_frac[frac]
            for arm, x in arms.items():
                delta = " | ".join(_delta(arms, arm, k) if "none" in arms else ""
                                   for k in deltas)
                lines.append(f"| {frac:.0%} | {arm} | " + " | ".join(_cell(x, k) for k in keys)
                             + f" | {delta} | {x['best_epoch_mean']:.1f} | "
                             f"{x['valid_epoch1_mean']:.1f} → {x['valid_mean']:.1f} |")
        lines.append("")
    if served := r.get("served_configuration"):
        lines += ["## The served configuration (upper 2 encoder layers fine-tuned, CPU, seed 0)",
                  "", f"Command: `{served['command']}`.", "",
                  "| GRU start | valid macro-F1 | MWOZ test macro-F1 | SGD test macro-F1 | "
                  "MELD sentiment macro-F1 | best epoch | valid by epoch | minutes |",
                  "|---|---|---|---|---|---|---|---|"]
        for x in served["runs"]:
            curve = " → ".join(f"{h['valid_macro_f1']:.2f}" for h in x["history"])
            lines.append(f"| {x['context_init'] or 'random (served recipe)'} | "
                         f"{x['valid_macro_f1']:.2f} | {x['test']['MWOZ']['macro_f1']:.2f} | "
                         f"{x['test']['SGD']['macro_f1']:.2f} | "
                         f"{x['meld_sentiment_macro_f1']:.2f} | {x['best_epoch']} | {curve} | "
                         f"{x['train_minutes']:.1f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def served_configuration(reports: Path) -> dict | None:
    """The served configuration (training.finetune top2, CPU) with the pre-trained GRU against
    the same run from scratch (reports/served/finetune_cpu.json), where both exist."""
    tl, base = reports / "pretraining_served/finetune.json", reports / "served/finetune_cpu.json"
    if not (tl.exists() and base.exists()):
        return None
    pick = ("context_init", "seed", "best_epoch", "valid_macro_f1", "train_minutes", "history")
    runs = [json.loads(tl.read_text())["runs"][-1], json.loads(base.read_text())["runs"][0]]
    return {"command": "python -m training.finetune --rows top2 --seeds 0 --context-init "
                       "training/checkpoints/context_generative.pt "
                       "--out reports/pretraining_served",
            "runs": [{**{k: r.get(k) for k in pick},
                      "test": {c: {m: r["test"]["uss"][c][m] for m in ("accuracy", "macro_f1")}
                               for c in ("MWOZ", "SGD")},
                      "meld_sentiment_macro_f1": r["test"]["meld"]["sentiment"]["macro_f1"]}
                     for r in runs]}


def main() -> None:
    path = Path(sys.argv[1])
    r = json.loads(path.read_text())
    r["summary"] = summary(r["runs"])
    if (served := served_configuration(path.parent)) is not None:
        r["served_configuration"] = served
    path.write_text(json.dumps(r, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(r))


if __name__ == "__main__":
    main()
