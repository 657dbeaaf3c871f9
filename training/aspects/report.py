"""reports/aspects/eval.md and eval.json from the stage files (imn, head, uss), the hand
judgements of the USS extractions (reports/aspects/uss_judgements.json) and the hand-written
reading (reports/aspects/reading.md)."""

from __future__ import annotations

import json

import numpy as np

from training.aspects import absa
from training.aspects.export import MIN_CONFIDENCE
from training.aspects.runs import OUT, read

PAPER = {"laptop14": (58.37, 61.73), "rest14": (69.54, 70.72), "rest15": (59.18, None)}
FLOORS = ("0.0", "0.3", "0.5", "0.7", "0.9")


def ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def imn_table(imn: dict) -> list[str]:
    rows = ["| data set | IMN here (GloVe 50d), test F1 | dev F1 | best epoch / epochs | seeds | "
            "IMN paper | IMN-BERT |", "|---|---|---|---|---|---|---|"]
    epochs = {d: p["config"]["epochs"] for p in imn["runs"] for d in p["results"]}
    for d in absa.DATASETS:
        rs = imn["results"].get(d)
        if not rs:
            rows.append(f"| {d} | not run | | | | {PAPER[d][0]} | {PAPER[d][1] or '—'} |")
            continue
        p, b = PAPER[d]
        rows.append(f"| {d} | {ms([r['test'] for r in rs])} | {ms([r['dev'] for r in rs])} | "
                    f"{', '.join(str(r['epoch']) for r in rs)} / {epochs[d]} | {len(rs)} | {p} | "
                    f"{b if b else '—'} |")
    return rows


def head_table(head: dict) -> list[str]:
    rows = ["| head | data set | test F1 | P | R | dev F1 | seeds | IMN paper | IMN-BERT |",
            "|---|---|---|---|---|---|---|---|---|"]
    for kind, rs in head["results"].items():
        for d in absa.DATASETS:
            t = [r["test"][d]["0.0"] for r in rs]
            p, b = PAPER[d]
            rows.append(f"| {kind} | {d} | {ms([x['f1'] for x in t])} | "
                        f"{ms([x['precision'] for x in t])} | {ms([x['recall'] for x in t])} | "
                        f"{ms([r['dev'][d] for r in rs])} | {len(rs)} | {p} | "
                        f"{b if b else '—'} |")
    return rows


def floor_table(head: dict) -> list[str]:
    kind = head["served"]["kind"]
    r = head["results"][kind][head["served"]["seed"]]
    rows = [f"| floor | {' | '.join(f'{d} P / R / F1' for d in absa.DATASETS)} |",
            "|---|---|---|---|"]
    for fl in FLOORS:
        cells = [f"{r['test'][d][fl]['precision']:.1f} / {r['test'][d][fl]['recall']:.1f} / "
                 f"{r['test'][d][fl]['f1']:.1f}" for d in absa.DATASETS]
        rows.append(f"| {fl} | {' | '.join(cells)} |")
    return rows


def judged(uss: dict) -> tuple[list[dict], dict]:
    path = OUT / "uss_judgements.json"
    marks = {}
    if path.exists():
        for j in json.loads(path.read_text()):
            marks[(j["corpus"], j["dialogue"], j["turn"], j["start"], j["end"],
                   j["polarity"])] = j
    rows = []
    for t in uss["turns"]:
        for s in t["spans"]:
            key = (t["corpus"], t["dialogue"], t["turn"], s["start"], s["end"], s["polarity"])
            j = marks.get(key, {})
            rows.append({**t, "span": s, "accept": j.get("accept"),
                         "aspect_ok": j.get("aspect_ok"), "note": j.get("note", "")})
    counts = {}
    for fl in (0.0, 0.3, 0.5, 0.7, 0.8, 0.9):
        kept = [r for r in rows if r["span"]["confidence"] >= fl]
        turns_with = {(r["corpus"], r["dialogue"], r["turn"]) for r in kept}
        counts[str(fl)] = {"extractions": len(kept),
                           "aspect_ok": sum(r["aspect_ok"] is True for r in kept),
                           "accepted": sum(r["accept"] is True for r in kept),
                           "unjudged": sum(r["accept"] is None for r in kept),
                           "turns_without": len(uss["turns"]) - len(turns_with)}
    return rows, counts


def write_report() -> None:
    parts = [read(f"imn_{d}") for d in absa.DATASETS if (OUT / f"imn_{d}.json").exists()]
    imn = {"config": parts[0]["config"], "runs": parts,
           "results": {d: r for p in parts for d, r in p["results"].items()}}
    head, uss = read("head"), read("uss")
    rows, counts = judged(uss)
    served = head["served"]
    md = ["# Aspect-based sentiment (issue #16, aspects half)", "",
          "End-to-end F1 over (aspect span, polarity) pairs on the SemEval test sets "
          "(lixin4ever/BERT-E2E-ABSA preparation). Paper: IMN, He et al., ACL 2019.", "",
          "## Runs", ""]
    for st in (*imn["runs"], head, uss):
        md.append(f"- `{st['command']}`: {st['wall_seconds']:.0f} s wall; {st['machine']}")
    md += ["", "## 1. IMN on GloVe", "", *imn_table(imn), "",
           "Config (epochs per data set in the table): "
           f"{json.dumps({k: v for k, v in imn['config'].items() if k != 'epochs'})}", "",
           "## 2. Heads over the served MiniLM token states (trained on the three training "
           "sets together)", "",
           f"Training sentences: {head['train_sentences']}; up to {head['epochs']} epochs, "
           "best mean dev F1 kept. Decoded by `decode.spans` (no floor), spans mapped to words.",
           "", *head_table(head), "",
           f"Served: `{served['kind']}` seed {served['seed']} (best mean dev F1). "
           "Its test precision / recall / F1 by confidence floor:", "", *floor_table(head), "",
           "## 3. Service chat: 100 USS test customer turns (served head, ONNX)", "",
           "| floor | extractions | span is an aspect | accepted (aspect and polarity) | "
           "unjudged | turns without any |", "|---|---|---|---|---|---|"]
    for fl, c in counts.items():
        md.append(f"| {fl} | {c['extractions']} | {c['aspect_ok']} | {c['accepted']} | "
                  f"{c['unjudged']} | "
                  f"{c['turns_without']} |")
    md += ["", f"Serving floor in config.pbtxt: min_confidence = {MIN_CONFIDENCE}.", "",
           "Every extraction (no floor); accept = a reader would take the span as something "
           "the customer talks about, with a sensible polarity:", "",
           "| # | corpus/dialogue/turn | turn | span | polarity | confidence | aspect | accept | "
           "note |", "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        s = r["span"]
        mark = {True: "yes", False: "no", None: "?"}[r["accept"]]
        asp = {True: "yes", False: "no", None: "?"}[r["aspect_ok"]]
        text = r["text"].replace("|", "\\|")
        md.append(f"| {i} | {r['corpus']}/{r['dialogue']}/{r['turn']} | {text} | {s['text']} | "
                  f"{s['polarity']} | {s['confidence']:.2f} | {asp} | {mark} | {r['note']} |")
    c = uss["cost"]
    md += ["", f"CPU cost of the served head (onnxruntime, {c['threads']} thread, batch "
           f"{c['batch']} x {c['tokens']} tokens): {c['median_batch_ms']:.2f} ms a batch, "
           f"{c['per_turn_ms']:.3f} ms a turn (median of 50; {uss['machine']['cpu']}).", ""]
    reading = OUT / "reading.md"
    if reading.exists():
        md += [reading.read_text()]
    (OUT / "eval.md").write_text("\n".join(md) + "\n")
    summary = {"imn": imn, "head": head, "uss_counts": counts, "min_confidence": MIN_CONFIDENCE,
               "uss_cost": uss["cost"]}
    (OUT / "eval.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
