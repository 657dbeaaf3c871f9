"""Emotion data: SemEval-2018 E-c (target), SemEval-2016 4A (source sentiment), GoEmotions and
MELD, all in E-c's 11-label space with a known-label mask (a label a corpus cannot say is
masked out of the loss and of threshold tuning, never taken as 0)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import SENTIMENTS, load_meld, load_semeval
from training.paths import SHARED_DATA

LABELS = ("anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
          "sadness", "surprise", "trust")
MELD_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
EKMAN = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")  # labels.txt order

# GoEmotions' 27 emotions -> E-c labels. The six Ekman labels take GoEmotions' own Ekman
# grouping (its ekman_mapping.json), so E-c joy is GoEmotions-Ekman joy; love, optimism and
# anticipation are added where GoEmotions has a direct counterpart. GoEmotions has no trust or
# pessimism: those two stay unknown (masked); "neutral" = every other label 0.
GOEMO_TO_EC: dict[str, tuple[str, ...]] = {
    "anger": ("anger",), "annoyance": ("anger",), "disapproval": ("anger",),
    "disgust": ("disgust",),
    "fear": ("fear",), "nervousness": ("fear",),
    "joy": ("joy",), "amusement": ("joy",), "approval": ("joy",), "excitement": ("joy",),
    "gratitude": ("joy",), "relief": ("joy",), "pride": ("joy",), "admiration": ("joy",),
    "love": ("joy", "love"), "caring": ("joy", "love"), "optimism": ("joy", "optimism"),
    "desire": ("joy", "anticipation"),
    "sadness": ("sadness",), "disappointment": ("sadness",), "embarrassment": ("sadness",),
    "grief": ("sadness",), "remorse": ("sadness",),
    "surprise": ("surprise",), "realization": ("surprise",), "confusion": ("surprise",),
    "curiosity": ("surprise", "anticipation"),
    "neutral": (),
}
GOEMO_UNKNOWN = ("pessimism", "trust")
# MELD (one label per utterance, 7 classes): the six emotions are E-c labels of the same name;
# neutral = none of them. MELD cannot say anticipation, love, optimism, pessimism or trust.
MELD_KNOWN = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
# E-c prediction -> MELD / Ekman label: love and optimism are kinds of joy (Plutchik: love =
# joy + trust, optimism = anticipation + joy; in E-c train 94 % of love and 75 % of optimism
# tweets are also joy), pessimism a kind of sadness (68 % of pessimism tweets are sadness);
# anticipation and trust have no MELD/Ekman counterpart and are dropped. Nothing above its
# threshold -> neutral.
EC_TO_COARSE: dict[str, str] = {"anger": "anger", "disgust": "disgust", "fear": "fear",
                                "joy": "joy", "love": "joy", "optimism": "joy",
                                "sadness": "sadness", "pessimism": "sadness",
                                "surprise": "surprise"}


@dataclass
class Split:
    """Texts with E-c targets y [N, 11] (0/1) and mask m [N, 11] (1 = label known)."""

    name: str
    texts: list[str]
    y: np.ndarray
    m: np.ndarray
    coarse: list[set[str]] | None = None  # gold MELD / Ekman labels, for the coarse metrics


def load_ec(split: str, root: Path = SHARED_DATA) -> Split:
    """E-c English "train", "dev" or "test". Test reads E-c-En-test-gold.txt: despite the data
    README, E-c-En-test.txt has NONE in every label column."""
    name = "test-gold" if split == "test" else split
    texts, rows = [], []
    with open(root / "semeval2018-ec" / f"E-c-En-{name}.txt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert tuple(header[2:]) == LABELS, header
        for line in f:
            parts = line.rstrip("\n").split("\t")
            texts.append(parts[1])
            rows.append([int(v) for v in parts[2:]])
    y = np.asarray(rows, dtype=np.float32)
    return Split(f"ec-{split}", texts, y, np.ones_like(y))


def load_source(splits: tuple[str, ...] = ("train", "dev", "devtest", "test"),
                root: Path = SHARED_DATA) -> tuple[list[str], np.ndarray]:
    """SemEval-2016 4A tweets and their polarity (0 negative, 1 neutral, 2 positive)."""
    texts, labels = [], []
    for s in splits:
        for d in load_semeval(s, root):
            u = d.utterances[0]
            texts.append(u.text)
            labels.append(SENTIMENTS.index(u.sentiment))
    return texts, np.asarray(labels, dtype=np.int64)


def goemotions_to_ec(names: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """One GoEmotions label set -> (E-c targets, known mask)."""
    y = np.zeros(len(LABELS), dtype=np.float32)
    for n in names:
        for lab in GOEMO_TO_EC[n]:
            y[LABELS.index(lab)] = 1.0
    m = np.ones(len(LABELS), dtype=np.float32)
    for lab in GOEMO_UNKNOWN:
        m[LABELS.index(lab)] = 0.0
    return y, m


def meld_to_ec(emotion: str) -> tuple[np.ndarray, np.ndarray]:
    """One MELD emotion -> (E-c targets, known mask)."""
    y = np.zeros(len(LABELS), dtype=np.float32)
    m = np.zeros(len(LABELS), dtype=np.float32)
    for lab in MELD_KNOWN:
        m[LABELS.index(lab)] = 1.0
    if emotion != "neutral":
        y[LABELS.index(emotion)] = 1.0
    return y, m


def load_goemotions_ec(split: str, limit: int | None = None, seed: int = 0,
                       root: Path = SHARED_DATA) -> Split:
    """GoEmotions (27 + neutral) in E-c space; `limit` draws a random subsample."""
    folder = root / "goemotions" / "original"
    names = (folder / "labels.txt").read_text().split()
    ekman_of = {g: e for e in EKMAN for g in GOEMO_EKMAN[e]}
    items = []
    with open(folder / f"{split}.tsv", encoding="utf-8") as f:
        for line in f:
            text, ids, _ = line.rstrip("\n").split("\t")
            items.append((text, {names[int(i)] for i in ids.split(",")}))
    if limit is not None and limit < len(items):
        items = random.Random(seed).sample(items, limit)
    ys, ms, coarse = [], [], []
    for _, labs in items:
        y, m = goemotions_to_ec(labs)
        ys.append(y)
        ms.append(m)
        coarse.append({ekman_of[n] for n in labs})
    return Split(f"goemotions-{split}", [t for t, _ in items], np.stack(ys), np.stack(ms),
                 coarse)


def load_meld_ec(split: str, root: Path = SHARED_DATA) -> Split:
    """MELD utterances ("train", "dev", "test") in E-c space."""
    texts, ys, ms, coarse = [], [], [], []
    for d in load_meld(split, root):
        for u in d.utterances:
            y, m = meld_to_ec(u.emotion)
            texts.append(u.text)
            ys.append(y)
            ms.append(m)
            coarse.append({u.emotion})
    return Split(f"meld-{split}", texts, np.stack(ys), np.stack(ms), coarse)


# GoEmotions' Ekman grouping (its release's ekman_mapping.json, neutral kept as neutral).
GOEMO_EKMAN: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "joy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
            "relief", "pride", "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
    "neutral": ("neutral",),
}
