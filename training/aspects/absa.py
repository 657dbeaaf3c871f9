"""ABSA sentences (`sentence####tok=TAG ...`), aspect spans, wordpiece alignment and F1.

A run of T-x words is one aspect term with polarity x (a polarity change starts a new term).
The text the encoder reads is the words joined by single spaces, so every wordpiece lies in
exactly one word. Wordpiece labels: the first wordpiece of each word carries the word's unified
tag (B-x on a term's first word, I-x on the others, O elsewhere); the other wordpieces and the
special tokens are ignored (-100) in the loss and in decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer

from training.aspects import POLARITIES, TAGS
from training.paths import SHARED_DATA

DATASETS = ("laptop14", "rest14", "rest15")
MAX_TOKENS = 128
IGNORE = -100

Span = tuple[int, int, str]  # [start, end) in words (or characters), polarity


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]  # O / T-POS / T-NEG / T-NEU per word

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse(line: str) -> Sentence:
    _, tagged = line.rstrip("\n").split("####")
    words, tags = [], []
    for item in tagged.split(" "):
        word, tag = item.rsplit("=", 1)
        words.append(word)
        tags.append(tag)
    return Sentence(tuple(words), tuple(tags))


def load(dataset: str, split: str, root: Path = SHARED_DATA) -> list[Sentence]:
    path = root / "absa" / dataset / f"{split}.txt"
    return [parse(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def spans(tags: tuple[str, ...] | list[str]) -> list[Span]:
    """Aspect terms of a T-x word sequence: maximal runs of one polarity."""
    out: list[Span] = []
    start, pol = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        cur = tag[2:] if tag.startswith("T-") else ""
        if start >= 0 and cur != pol:
            out.append((start, i, pol))
            start = -1
        if cur and start < 0:
            start, pol = i, cur
    return out


def unified(tags: tuple[str, ...]) -> list[str]:
    """Word tags O/T-x -> unified BIO tags (O, B-x, I-x)."""
    out = ["O"] * len(tags)
    for s, e, pol in spans(tags):
        out[s] = f"B-{pol}"
        for i in range(s + 1, e):
            out[i] = f"I-{pol}"
    return out


def tagged_spans(tags: list[str]) -> list[Span]:
    """Spans of unified BIO word tags; an I-x after O (or another polarity) starts a term."""
    out: list[Span] = []
    start, pol = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        kind, cur = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if start >= 0 and (kind != "I" or cur != pol):
            out.append((start, i, pol))
            start = -1
        if kind in "BI" and start < 0:
            start, pol = i, cur
    return out


@cache
def tokenizer() -> Tokenizer:
    """The worker's tokenizer as the worker runs it: no padding, at most 128 tokens."""
    from worker.tokenizer import default_tokenizer_path

    tok = Tokenizer.from_file(str(default_tokenizer_path()))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_TOKENS)
    return tok


def word_starts(words: tuple[str, ...]) -> list[int]:
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    return starts


def piece_words(offsets: list[tuple[int, int]], words: tuple[str, ...]) -> list[int]:
    """The word index of each wordpiece (-1 for special tokens)."""
    starts = word_starts(words)
    out, w = [], 0
    for a, b in offsets:
        if a == b:
            out.append(-1)
            continue
        while w + 1 < len(words) and starts[w + 1] <= a:
            w += 1
        out.append(w)
    return out


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    offsets: list[tuple[int, int]]
    labels: list[int]  # unified tag index on each word's first wordpiece, else IGNORE
    first: list[int]  # per word: its first wordpiece (-1 if truncated away)


def encode(sentence: Sentence) -> Encoded:
    enc = tokenizer().encode(sentence.text)
    offsets = [tuple(o) for o in enc.offsets]
    owner = piece_words(offsets, sentence.words)
    word_tags = unified(sentence.tags)
    first = [-1] * len(sentence.words)
    labels = [IGNORE] * len(owner)
    for p, w in enumerate(owner):
        if w >= 0 and first[w] < 0:
            first[w] = p
            labels[p] = TAGS.index(word_tags[w])
    return Encoded(list(enc.ids), offsets, labels, first)


def decode_labels(enc: Encoded) -> list[str]:
    """Word tags back from the first-wordpiece labels (the alignment's round trip)."""
    return [TAGS[enc.labels[p]] if p >= 0 else "O" for p in enc.first]


@dataclass
class Counts:
    tp: int = 0
    pred: int = 0
    gold: int = 0

    def add(self, pred: list[Span], gold: list[Span]) -> None:
        self.tp += len(set(pred) & set(gold))
        self.pred += len(set(pred))
        self.gold += len(set(gold))

    def f1(self) -> float:
        p = self.tp / self.pred if self.pred else 0.0
        r = self.tp / self.gold if self.gold else 0.0
        return 100 * 2 * p * r / (p + r) if p + r else 0.0


assert all(f"B-{p}" in TAGS and f"I-{p}" in TAGS for p in POLARITIES)
