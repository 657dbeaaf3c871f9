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
    lines += against_published(groups) + comparisons(groups) + window_sweep(groups)
    return "\n".join(lines)


def mean(rs: list[dict], metric: str) -> float:
    return float(np.mean([r["metrics"][metric] for r in rs]))


def against_published(groups) -> list[str]:
    """The paper's ablation (+2.5 macro-F1 from the topic models), the published USS 3-class
    accuracies and the issue's bar (TML >= logreg + 5 macro-F1 on USS 3-class), from the rows."""
    lines = ["## Against the paper and the published figures", ""]
    for task, dataset in sorted({(k[0], k[1]) for k in groups if k[2] == "tml_no_topics"}):
        gain = 100 * (mean(groups[(task, dataset, "tml")], "macro_f1")
                      - mean(groups[(task, dataset, "tml_no_topics")], "macro_f1"))
        lines.append(f"- Topic models, {task} {dataset}: {gain:+.1f} macro-F1 points "
                     "(paper: +2.5 on its Chinese e-commerce dialogues, BERT fine-tuned).")
    for (dataset, task), (source, figures) in PUBLISHED.items():
        if (task, dataset, "tml") in groups:
            ours = 100 * mean(groups[(task, dataset, "tml")], "accuracy")
            theirs = 100 * figures["accuracy"]
            lines.append(f"- {task} {dataset} accuracy: TML {ours:.1f} vs published "
                         f"{theirs:.1f} ({source}): {ours - theirs:+.1f}.")
    for dataset in ("MWOZ", "SGD", "MWOZ+SGD"):
        key = ("uss3", dataset)
        if (*key, "tml") in groups and (*key, "logreg") in groups:
            gap = 100 * (mean(groups[(*key, "tml")], "macro_f1")
                         - mean(groups[(*key, "logreg")], "macro_f1"))
            lines.append(f"- uss3 {dataset}: TML minus frozen-embedding logistic regression "
                         f"{gap:+.1f} macro-F1 (bar: +5.0): {'met' if gap >= 5 else 'not met'}.")
    return [*lines, ""]


def comparisons(groups) -> list[str]:
    """TML against each other model, macro-F1 points (means over seeds), per task and test set.
    The paper's own ablation: topic models add 2.5 macro-F1 points."""
    lines = ["## TML minus each other model (macro-F1 points, means over seeds)", "",
             "| task | test set | vs tml_no_topics | vs tml_no_attention | vs utterance_mlp "
             "| vs logreg |", "|---|---|---|---|---|---|"]
    for task, dataset in sorted({(k[0], k[1]) for k in groups if k[2] == "tml"}):
        if not any((task, dataset, other) in groups for other in MODEL_ORDER[1:]):
            continue
        tml = mean(groups[(task, dataset, "tml")], "macro_f1")
        cells = []
        for other in MODEL_ORDER[1:]:
            rs = groups.get((task, dataset, other))
            cells.append(f"{100 * (tml - mean(rs, 'macro_f1')):+.1f}" if rs else "")
        lines.append(f"| {task} | {dataset} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def window_sweep(groups) -> list[str]:
    """Accuracy against the attention window (USS 3-class, one seed, window 32 = the default)."""
    rows = []
    for (task, dataset, model), rs in groups.items():
        if model.startswith("tml_window_") or (model == "tml" and any(
                k[2].startswith("tml_window_") and k[0] == task for k in groups)):
            window = int(model.rsplit("_", 1)[1]) if model != "tml" else rs[0].get("window", 32)
            seed0 = [r for r in rs if r["seed"] == 0] or rs
            rows.append((task, dataset, window, seed0[0]["metrics"]))
    if not rows:
        return []
    lines = ["## Attention window (earlier turns read), seed 0", "",
             "| task | test set | window | accuracy | macro-F1 |", "|---|---|---|---|---|"]
    for task, dataset, window, m in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        lines.append(f"| {task} | {dataset} | {window} | {100 * m['accuracy']:.1f} | "
                     f"{100 * m['macro_f1']:.1f} |")
    return [*lines, ""]


def main() -> None:
    """Merge runs made in parallel: python -m training.tml_report OUT_DIR OTHER_DIR...
    (rows of the others are added to OUT_DIR/eval.json; eval.md lists every command)."""
    import argparse
    import json
    from pathlib import Path

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("others", type=Path, nargs="+")
    args = p.parse_args()
    rows, commands, seen = [], [], set()
    for d in [args.out, *args.others]:
        for r in json.loads((d / "eval.json").read_text()):
            key = (r["task"], r["dataset"], r["model"], r["seed"])
            if key not in seen:  # the same cell run twice: the first merged wins
                seen.add(key)
                rows.append(r)
        commands.append((d / "command.txt").read_text().strip())
    command = "; ".join(commands)
    (args.out / "eval.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "eval.md").write_text(markdown(rows, command))
    (args.out / "command.txt").write_text(command + "\n")


if __name__ == "__main__":
    main()
