"""reports/tml/eval.md from the rows of eval.json: mean ± std over seeds, then the comparisons."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

MODEL_ORDER = ("tml", "tml_no_topics", "tml_no_attention", "utterance_mlp", "logreg")
# published figures on the same protocols (see the issue and shared/notes/design.md)
PUBLISHED = {("MWOZ", "uss3"): ("USDA/ASAP, causal prefix, 8:1:1 split", {"accuracy": 0.581}),
             ("SGD", "uss3"): ("USDA/ASAP, causal prefix, 8:1:1 split", {"accuracy": 0.648})}
TASK_METRICS = {"uss5": ("uar", "macro_f1", "accuracy"), "uss3": ("accuracy", "macro_f1", "uar"),
                "meld3": ("weighted_f1", "macro_f1", "accuracy"),
                "meld7": ("weighted_f1", "macro_f1", "accuracy"),
                "served": ("macro_f1", "uar", "accuracy")}


def stat(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"


def grouped(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        out[(r["task"], r["dataset"], r["model"])].append(r)
    return out


def markdown(rows: list[dict], command: str) -> str:
    groups = grouped(rows)
    lines = ["# TML: causal topic-aware multi-task sentiment, evaluated", "",
             f"Command: `{command}`. Rows of eval.json: one per (task, test set, model, seed). "
             "Test splits: the published USS dialogue split (splits.json), MELD's official split. "
             "Model selection on validation macro-F1 only. Figures in %, mean ± sample std over "
             "seeds where there are several.", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        names = TASK_METRICS[task]
        scheme = next(r["scheme"] for r in rows if r["task"] == task)
        lines += [f"## {task}: {scheme}", "",
                  "| test set | model | seeds | " + " | ".join(names) + " | per-class F1 |",
                  "|---|---|---|" + "---|" * len(names) + "---|"]
        keys = sorted((k for k in groups if k[0] == task), key=lambda k: (
            k[1], MODEL_ORDER.index(k[2]) if k[2] in MODEL_ORDER else 99, k[2]))
        for key in keys:
            rs = groups[key]
            per_class = {c: np.mean([r["metrics"]["per_class_f1"][c] for r in rs])
                         for c in rs[0]["metrics"]["per_class_f1"]}
            lines.append(f"| {key[1]} | {key[2]} | {len(rs)} | " + " | ".join(
                stat([r["metrics"][m] for r in rs]) for m in names) + " | " + ", ".join(
                f"{c} {100 * v:.1f}" for c, v in per_class.items()) + " |")
        for (dataset, t), (source, figures) in PUBLISHED.items():
            if t == task:
                lines.append(f"| {dataset} | published ({source}) | | " + " | ".join(
                    f"{100 * figures[m]:.1f}" if m in figures else "" for m in names) + " | |")
        lines.append("")
    return "\n".join(lines)
