"""GloVe 6B 50d word vectors for IMN (read by training.emotions.glove.load_glove), with IMN's
own tokenisation and vocabulary."""

from __future__ import annotations

import re

import numpy as np

from training.emotions.glove import load_glove

PAD, UNK = 0, 1
_SPLIT = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Words of a raw document (tweets): lowercase word runs and single punctuation marks."""
    return _SPLIT.findall(text.lower())


def vectors(words: set[str]) -> tuple[dict[str, int], np.ndarray]:
    """Vocabulary (PAD 0, UNK 1, then the known words) and its [V, 50] matrix; words GloVe
    lacks map to UNK (a zero row)."""
    index, emb = load_glove()
    row = {w: i for i, w in enumerate(index)}
    known = sorted(w for w in words if w in row)
    vocab = {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(known)}}
    matrix = np.zeros((len(vocab), emb.shape[1]), dtype=np.float32)
    for w in known:
        matrix[vocab[w]] = emb[row[w]]
    return vocab, matrix


def ids(words: list[str], vocab: dict[str, int]) -> list[int]:
    return [vocab.get(w.lower(), UNK) for w in words]
