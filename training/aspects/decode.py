"""Per-wordpiece tag probabilities -> aspect spans of one turn. The one implementation is the
worker's (`worker.explain.AspectTags.spans`); training and its reports call it through here."""

from __future__ import annotations

import numpy as np

from training.aspects import TAGS
from worker.explain import AspectTags


def spans(tag_probs: np.ndarray, offsets: list[tuple[int, int]], text: str,
          min_confidence: float) -> list[dict]:
    """Aspect terms of one turn: {"text", "start", "end", "polarity", "confidence"}, with
    text == turn_text[start:end]; `tag_probs` [L, 7] in TAGS order (padding rows ignored)."""
    return AspectTags(TAGS, min_confidence).spans(tag_probs, offsets, text)
