"""Document-level auxiliary data for IMN (DS: document sentiment, DD: document domain).

The paper's DS/DD corpora (Yelp restaurant and Amazon electronics reviews, 30k each) are not
available here. Stand-ins from data we have:
  DS  SemEval-2016 task 4A tweets (train), negative / neutral / positive  -> 3 classes
  DD  restaurant vs laptop: the training sentences of rest14 + rest15 vs laptop14, minus any
      sentence that also occurs in a dev or test file of the three data sets (rest14/rest15
      share sentences), so no evaluation sentence is seen.
"""

from __future__ import annotations

import csv
from pathlib import Path

from training.aspects import absa
from training.paths import SHARED_DATA

DS_LABELS = ("positive", "negative", "neutral")  # order of POLARITIES (POS, NEG, NEU)
DOMAINS = ("restaurant", "laptop")


def held_out_texts() -> set[str]:
    return {s.text for d in absa.DATASETS for split in ("dev", "test") for s in absa.load(d, split)}


def sentiment_docs(root: Path = SHARED_DATA) -> list[tuple[str, int]]:
    path = root / "semeval2016-4a" / "twitter-2016train-A.tsv"
    with open(path, encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 3]
    return [(r[2], DS_LABELS.index(r[1])) for r in rows if r[1] in DS_LABELS]


def domain_docs() -> list[tuple[str, int]]:
    held = held_out_texts()
    out, seen = [], set()
    for dataset, domain in (("rest14", 0), ("rest15", 0), ("laptop14", 1)):
        for s in absa.load(dataset, "train"):
            if s.text not in held and s.text not in seen:
                seen.add(s.text)
                out.append((s.text, domain))
    return out


def joint_train() -> list[absa.Sentence]:
    """The three training sets together, minus sentences that occur in any dev/test file."""
    held = held_out_texts()
    out, seen = [], set()
    for d in absa.DATASETS:
        for s in absa.load(d, "train"):
            if s.text not in held and s.text not in seen:
                seen.add(s.text)
                out.append(s)
    return out
