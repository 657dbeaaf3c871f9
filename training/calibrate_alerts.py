"""How often each alert threshold fires on validation data, and how precise it is (served TML).

    python -m training.calibrate_alerts   # writes reports/alert_thresholds.json

Per threshold: share of customer turns (USS valid) / utterances (MELD dev) whose score is at or
below it, and precision and recall against the gold negative class (USS: mean rating < 3).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.data import Dialogue, label_3, load_meld, load_uss, uss_split
from training.features import dialogue_features
from training.paths import MODEL_REPOSITORY, REPORTS, ROOT
from training.tml import TML, load
from worker.bow import BagOfWords
from worker.rules import score_from_probs

THRESHOLDS = (-0.15, -0.2, -0.25, -0.3, -0.35, -0.4)


def turn_scores(model: TML, vocabulary: list[str], dialogues: list[Dialogue],
                encoder: Path) -> list[tuple[object, float]]:
    """(utterance, served score) of every turn, each dialogue read causally by the model."""
    bow = BagOfWords(vocabulary)
    out = []
    with torch.no_grad():
        for d, f in zip(dialogues, dialogue_features(dialogues, encoder), strict=True):
            cust = torch.tensor([[[float(u.role == "customer")] for u in d.utterances]])
            counts = torch.from_numpy(bow.dense([u.text for u in d.utterances]))[None]
            logits, _ = model(torch.from_numpy(f)[None], cust, counts)
            out += [(u, score_from_probs(p.numpy()))
                    for u, p in zip(d.utterances, torch.softmax(logits[0], -1), strict=True)]
    return out


def rates(scored: list[tuple[object, float]], is_negative) -> list[dict]:
    total = len(scored)
    negatives = sum(1 for u, _ in scored if is_negative(u))
    rows = []
    for th in THRESHOLDS:
        flagged = [u for u, s in scored if s <= th]
        hit = sum(1 for u in flagged if is_negative(u))
        rows.append({"threshold": th, "flagged_share": round(len(flagged) / total, 4),
                     "precision": round(hit / max(1, len(flagged)), 4),
                     "recall": round(hit / max(1, negatives), 4)})
    return rows


def main() -> None:
    head, extra = load(ROOT / "training/checkpoints/tml.pt")
    encoder = MODEL_REPOSITORY / "encoder/1/model.onnx"
    uss = []
    for corpus in ("MWOZ", "SGD"):
        dialogues = load_uss(corpus)
        uss += [dialogues[i] for i in uss_split(corpus)["valid"]]
    uss_scored = [(u, s) for u, s in turn_scores(head, extra["vocabulary"], uss, encoder)
                  if u.role == "customer"]
    meld_scored = turn_scores(head, extra["vocabulary"], load_meld("dev"),
                              encoder)
    report = {
        "command": "python -m training.calibrate_alerts",
        "uss_valid_customer_turns": rates(uss_scored, lambda u: label_3(u.scores) == 0),
        "meld_dev_utterances": rates(meld_scored, lambda u: u.sentiment == "negative"),
    }
    out = REPORTS / "alert_thresholds.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("uss_valid_customer_turns", "meld_dev_utterances"):
        print(name)
        for row in report[name]:
            print(f"  <= {row['threshold']:+.2f}: flagged {row['flagged_share']:6.1%} "
                  f"precision {row['precision']:.2f} recall {row['recall']:.2f}")


if __name__ == "__main__":
    main()
