"""Dialogue data sets: USS (MWOZ, SGD) with the published split, and MELD.

A dialogue is a list of `Utterance`s in order. USS USER turns are the customer, SYSTEM turns the
agent; the dialogue-level OVERALL line is not a turn and is dropped.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training import service
from training.aspects import absa
from training.paths import SHARED_DATA

USS_CORPORA = ("MWOZ", "SGD")
LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")


@dataclass(frozen=True)
class Utterance:
    role: str  # "customer" | "agent"
    text: str
    scores: tuple[int, ...] = ()  # USS annotators' 1..5 ratings (customer turns only)
    speaker: str = ""
    sentiment: str = ""  # MELD only
    emotion: str = ""  # MELD only


@dataclass(frozen=True)
class Dialogue:
    id: str
    utterances: tuple[Utterance, ...]


def label_5(scores: tuple[int, ...]) -> int:
    """USS paper's 5-level label: majority vote of the ratings, ties to the lower rating (0..4)."""
    counts = Counter(scores)
    top = max(counts.values())
    return min(s for s, c in counts.items() if c == top) - 1


def label_3(scores: tuple[int, ...]) -> int:
    """Later work's 3-class label from the mean rating: 0 negative (<3), 1 neutral, 2 positive."""
    mean = sum(scores) / len(scores)
    return 0 if mean < 3 else (1 if mean == 3 else 2)


def load_uss(corpus: str, root: Path = SHARED_DATA) -> list[Dialogue]:
    """All dialogues of one USS corpus, in file order (indices match splits.json)."""
    dialogues: list[Dialogue] = []
    current: list[Utterance] = []
    with open(root / "uss" / f"{corpus}.txt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if current:
                    name = f"{corpus.lower()}-{len(dialogues):04d}"
                    dialogues.append(Dialogue(name, tuple(current)))
                    current = []
                continue
            parts = line.split("\t")
            role, text = parts[0], parts[1]
            if text == "OVERALL":
                continue
            rated = len(parts) > 3 and parts[3]
            scores = tuple(int(s) for s in parts[3].split(",")) if rated else ()
            current.append(Utterance("customer" if role == "USER" else "agent", text, scores))
    if current:
        dialogues.append(Dialogue(f"{corpus.lower()}-{len(dialogues):04d}", tuple(current)))
    return dialogues


def uss_split(corpus: str, root: Path = SHARED_DATA) -> dict[str, list[int]]:
    """The published 8:1:1 dialogue split (USDA, ASAP): train = every dialogue not held out."""
    spec = json.loads((root / "uss" / "splits.json").read_text())[corpus]
    n = len(load_uss(corpus, root))
    held = set(spec["valid"]) | set(spec["test"])
    return {
        "train": [i for i in range(n) if i not in held],
        "valid": sorted(spec["valid"]),
        "test": sorted(spec["test"]),
    }


def load_meld(split: str, root: Path = SHARED_DATA) -> list[Dialogue]:
    """MELD dialogues of one split ("train", "dev", "test"), decoded as UTF-8 (the files are
    UTF-8, not Windows-1252 as the data README says). Roles: the speaker of the first
    utterance is taken as the customer and everyone else as the agent side."""
    rows: dict[int, list[tuple[int, dict[str, str]]]] = {}
    with open(root / "meld" / f"{split}_sent_emo.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(int(row["Dialogue_ID"]), []).append((int(row["Utterance_ID"]), row))
    dialogues = []
    for did in sorted(rows):
        turns = [r for _, r in sorted(rows[did], key=lambda x: x[0])]
        first = turns[0]["Speaker"]
        dialogues.append(
            Dialogue(
                f"meld-{split}-{did:04d}",
                tuple(
                    Utterance(
                        "customer" if r["Speaker"] == first else "agent",
                        r["Utterance"],
                        speaker=r["Speaker"],
                        sentiment=r["Sentiment"],
                        emotion=r["Emotion"],
                    )
                    for r in turns
                ),
            )
        )
    return dialogues


SENTIMENTS = ("negative", "neutral", "positive")


def head_label(u: Utterance, head: str) -> int:
    """The label of an utterance for one of the served model's heads ("satisfaction",
    "levels", "sentiment"); -1 where it has none."""
    if head == "sentiment":
        return SENTIMENTS.index(u.sentiment) if u.sentiment in SENTIMENTS else -1
    if u.role != "customer" or not u.scores:
        return -1
    return label_3(u.scores) if head == "satisfaction" else label_5(u.scores)


def single_turns(name: str, items: list[tuple[str, str]]) -> list[Dialogue]:
    """Labelled single utterances (text, sentiment) as one-turn customer dialogues."""
    return [Dialogue(f"{name}-{i:05d}", (Utterance("customer", text, sentiment=label),))
            for i, (text, label) in enumerate(items)]


def load_semeval(split: str, root: Path = SHARED_DATA) -> list[Dialogue]:
    """SemEval-2016 4A tweets about brands and products ("train", "dev", "devtest", "test")."""
    items = []
    with open(root / "semeval2016-4a" / f"twitter-2016{split}-A.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[1] in SENTIMENTS and parts[2].strip():
                items.append((parts[2], parts[1]))
    return single_turns(f"semeval-{split}", items)


def load_goemotions(split: str, root: Path = SHARED_DATA) -> list[Dialogue]:
    """GoEmotions comments with one sentiment group (anger, annoyance, disappointment, ... are
    "negative"; "ambiguous" and mixed comments are left out), as one-turn dialogues."""
    folder = root / "goemotions" / "group"
    names = (folder / "labels.txt").read_text().split()
    items = []
    with open(folder / f"{split}.tsv", encoding="utf-8") as f:
        for line in f:
            text, ids, _ = line.rstrip("\n").split("\t")
            groups = {names[int(i)] for i in ids.split(",")}
            if len(groups) == 1 and (label := groups.pop()) in SENTIMENTS:
                items.append((text, label))
    return single_turns(f"goemotions-{split}", items)


def load_service(split: str) -> list[Dialogue]:
    """Service requests (training/service.py: CLINC150, Banking77) as one-turn customer
    dialogues ("train", "valid", "test"): neutral, bar a few explicit complaints."""
    return single_turns(f"service-{split}", service.load(split))


def load_written(split: str) -> list[Dialogue]:
    """The written service turns (training/service.py: complaints, requests, praise) as
    one-turn customer dialogues ("train", "valid")."""
    return single_turns(f"written-{split}", service.load_written(split))


def load_review_sentences(split: str) -> list[Dialogue]:
    """SemEval-2014/15 ABSA review sentences (laptops, restaurants: "Keys stick and I haven't
    had it 45 days") whose aspect terms all share one polarity, with that polarity, as one-turn
    dialogues ("train", "dev"). Product and service failures, told by customers."""
    names = {"POS": "positive", "NEG": "negative", "NEU": "neutral"}
    items = []
    for dataset in absa.DATASETS:
        for sentence in absa.load(dataset, split):
            polarities = {p for _, _, p in absa.spans(sentence.tags)}
            if len(polarities) == 1:
                items.append((sentence.text, names[polarities.pop()]))
    return single_turns(f"reviews-{split}", items)
