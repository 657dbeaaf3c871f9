"""Why a turn is negative: emotions (multi-label, per-label thresholds) and aspect terms (spans
of the turn's text with a polarity), decoded from the explaining models' outputs (pure)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

POLARITY = {"POS": "positive", "NEG": "negative", "NEU": "neutral"}
ZWJ = "\u200d"


@dataclass(frozen=True)
class EmotionLabels:
    names: tuple[str, ...]
    thresholds: tuple[float, ...]

    def decode(self, probs: np.ndarray) -> dict[str, Any]:
        """{"probs": label -> probability, "labels": those at or above their threshold, most
        probable first}."""
        p = [round(float(v), 6) for v in probs]
        above = sorted((i for i, v in enumerate(p) if v >= self.thresholds[i]),
                       key=lambda i: -p[i])
        return {"probs": dict(zip(self.names, p, strict=True)),
                "labels": [self.names[i] for i in above]}


def _trailing(ch: str) -> bool:
    """Characters that belong to the grapheme before them: combining marks, emoji skin-tone
    modifiers, variation selectors and zero-width joiners."""
    cp = ord(ch)
    return (unicodedata.category(ch).startswith("M") or ch == ZWJ
            or 0x1F3FB <= cp <= 0x1F3FF or 0xFE00 <= cp <= 0xFE0F)


def _edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim spaces and punctuation at either end; keep the marks that follow the last
    character, so that no grapheme is cut."""
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    while start < end < len(text) and _trailing(text[end]):
        end += 1 + (text[end] == ZWJ and end + 1 < len(text))
    return start, min(end, len(text))


def _words(offsets: list[tuple[int, int]], n: int) -> list[tuple[int, int, int]]:
    """(first wordpiece, start, end) of each word: maximal runs of wordpieces that touch in the
    text (how the ABSA training text, words joined by spaces, was split); special tokens (empty
    offsets) skipped."""
    words: list[tuple[int, int, int]] = []
    for i, (a, b) in enumerate(offsets[:n]):
        if b <= a:
            continue
        if words and words[-1][2] == a:
            words[-1] = (words[-1][0], words[-1][1], b)
        else:
            words.append((i, a, b))
    return words


@dataclass(frozen=True)
class AspectTags:
    """Decoding of the aspect model's per-wordpiece tag probabilities (tags like O, B-POS,
    I-POS, B-NEG, I-NEG, B-NEU, I-NEU, in the model's order; training.aspects trains it)."""

    tags: tuple[str, ...]
    min_confidence: float

    def spans(self, tag_probs: np.ndarray, offsets: list[tuple[int, int]],
              text: str) -> list[dict[str, Any]]:
        """Aspect terms of one turn: {"text", "start", "end", "polarity", "confidence"} with
        text == turn_text[start:end] (code-point offsets). A word is read from its first
        wordpiece: p_O, p_B = sum of B-x, p_I = sum of I-x; the largest says outside, begins
        or continues a term (an I after O begins one). A term's polarity is the largest summed
        mass over its words; its confidence mean(1 - p_O) x that polarity's share of the non-O
        mass, roughly P(aspect and this polarity). Terms under `min_confidence` are dropped."""
        probs = np.asarray(tag_probs, dtype=np.float64)
        pols = [t[2:] for t in self.tags if t.startswith("B-")]
        b = [self.tags.index(f"B-{p}") for p in pols]
        i = [self.tags.index(f"I-{p}") for p in pols]
        o = self.tags.index("O")
        words = _words(offsets, min(len(offsets), len(probs)))
        firsts = [probs[w[0]] for w in words]
        runs: list[list[int]] = []
        for j, p in enumerate(firsts):
            kind = int(np.argmax([p[o], p[b].sum(), p[i].sum()]))
            if kind == 0:
                continue
            if kind == 2 and runs and runs[-1][-1] == j - 1:
                runs[-1].append(j)
            else:
                runs.append([j])
        out = []
        for run in runs:
            p = np.stack([firsts[j] for j in run])
            aspect = 1.0 - p[:, o]
            share = (p[:, b] + p[:, i]).sum(0) / max(float(aspect.sum()), 1e-12)
            k = int(np.argmax(share))
            start, end = _bounds(text, words[run[0]][1], words[run[-1]][2])
            confidence = round(float(aspect.mean() * share[k]), 4)
            if end > start and confidence >= self.min_confidence:
                out.append({"text": text[start:end], "start": start, "end": end,
                            "polarity": POLARITY[pols[k]], "confidence": confidence})
        return out


def top_emotion(emotions: dict[str, Any] | None) -> str | None:
    return emotions["labels"][0] if emotions and emotions["labels"] else None


def top_aspect(aspects: list[dict[str, Any]] | None) -> str | None:
    """The most confident negative aspect term, else the most confident one."""
    if not aspects:
        return None
    return max(aspects, key=lambda a: (a["polarity"] == "negative", a["confidence"]))["text"]
