"""Per-wordpiece tag probabilities -> aspect spans of one turn (pure Python + numpy; the worker
calls `spans`).

Words: maximal runs of wordpieces that touch in the text (no character between them), which is
how the ABSA training text (words joined by spaces) was split. A word is read from its first
wordpiece (the one trained). Per word: p_O, p_B = sum of B-x, p_I = sum of I-x; the largest of
the three says outside / begins a term / continues a term (an I after O begins one). A term's
polarity is the largest of sum(B-x + I-x) over its words; its confidence is
mean(1 - p_O) x that polarity's share of the non-O mass: roughly P(aspect and this polarity).
Character bounds are code-point indices into the turn text; punctuation and spaces at either
end are trimmed, and combining marks, emoji modifiers and zero-width joiners after the end are
kept with the term, so no grapheme is cut.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from training.aspects import POLARITIES, TAGS

POLARITY_NAMES = {"POS": "positive", "NEG": "negative", "NEU": "neutral"}
_B = [TAGS.index(f"B-{p}") for p in POLARITIES]
_I = [TAGS.index(f"I-{p}") for p in POLARITIES]


def _words(offsets: list[tuple[int, int]], n: int) -> list[tuple[int, int, int]]:
    """(first wordpiece, start, end) of each word; special tokens (empty offsets) skipped."""
    words: list[tuple[int, int, int]] = []
    for i, (a, b) in enumerate(offsets[:n]):
        if b <= a:
            continue
        if words and words[-1][2] == a:
            words[-1] = (words[-1][0], words[-1][1], b)
        else:
            words.append((i, a, b))
    return words


def _trailing(ch: str) -> bool:
    """Characters that belong to the grapheme before them."""
    cp = ord(ch)
    return (unicodedata.category(ch).startswith("M") or cp == 0x200D
            or 0x1F3FB <= cp <= 0x1F3FF or 0xFE00 <= cp <= 0xFE0F)


def _edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _bounds(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    while start < end < len(text) and _trailing(text[end]):
        end += 1 + (text[end] == "\u200d" and end + 1 < len(text))
    return start, min(end, len(text))


def _span(text: str, words: list[tuple[int, int, int]], probs: np.ndarray) -> dict | None:
    aspect = 1.0 - probs[:, 0]
    mass = probs[:, _B] + probs[:, _I]  # [n, 3] per polarity
    share = mass.sum(0) / max(float(aspect.sum()), 1e-12)
    k = int(np.argmax(share))
    start, end = _bounds(text, words[0][1], words[-1][2])
    if end <= start:
        return None
    return {"text": text[start:end], "start": start, "end": end,
            "polarity": POLARITY_NAMES[POLARITIES[k]],
            "confidence": round(float(aspect.mean() * share[k]), 4)}


def spans(tag_probs: np.ndarray, offsets: list[tuple[int, int]], text: str,
          min_confidence: float) -> list[dict]:
    """Aspect terms of one turn: {"text", "start", "end", "polarity", "confidence"}, with
    text == turn_text[start:end]; `tag_probs` [L, 7] in TAGS order (padding rows ignored)."""
    tag_probs = np.asarray(tag_probs, dtype=np.float64)
    words = _words(offsets, min(len(offsets), len(tag_probs)))
    firsts = [tag_probs[w[0]] for w in words]
    runs: list[list[int]] = []
    for j, p in enumerate(firsts):
        kind = int(np.argmax([p[0], p[_B].sum(), p[_I].sum()]))
        if kind == 0:
            continue
        if kind == 2 and runs and runs[-1][-1] == j - 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    out = []
    for run in runs:
        span = _span(text, [words[j] for j in run], np.stack([firsts[j] for j in run]))
        if span is not None and span["confidence"] >= min_confidence:
            out.append(span)
    return out
