"""Bag-of-words counts over the topic models' vocabulary (stop words are not in it).

One analyser for training and serving: scikit-learn's CountVectorizer with a fixed vocabulary
(lower-cased, tokens of two or more word characters).
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer


class BagOfWords:
    def __init__(self, vocabulary: list[str]) -> None:
        self.vocabulary = list(vocabulary)
        self._vectorizer = CountVectorizer(vocabulary=self.vocabulary, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def counts(self, texts: list[str]):
        """Sparse float32 [len(texts), vocabulary] counts (scipy CSR)."""
        return self._vectorizer.transform(texts)

    def dense(self, texts: list[str]) -> np.ndarray:
        return self.counts(texts).toarray()

    def words(self, ids) -> list[str]:
        """The words of vocabulary ids; a negative id means "no word" and is skipped."""
        return [self.vocabulary[int(i)] for i in ids if i >= 0]


def build_vocabulary(texts: list[str], size: int, min_df: int = 2) -> list[str]:
    """The `size` most frequent words of `texts`, English stop words excluded (as the paper)."""
    vec = CountVectorizer(stop_words="english", max_features=size, min_df=min_df)
    vec.fit(texts)
    return sorted(vec.vocabulary_, key=vec.vocabulary_.get)
