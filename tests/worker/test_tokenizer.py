import itertools
import random

from worker.tokenizer import TurnTokenizer, cut_points, default_tokenizer_path


def brute_force(lengths: list[int], max_rows: int, overhead: int) -> int:
    n, best = len(lengths), None
    for mask in itertools.product([0, 1], repeat=max(0, n - 1)):
        starts = [0] + [i + 1 for i, m in enumerate(mask) if m]
        runs = list(zip(starts, [*starts[1:], n], strict=True))
        if any(b - a > max_rows for a, b in runs):
            continue
        cost = sum((b - a) * lengths[b - 1] + overhead for a, b in runs)
        best = cost if best is None else min(best, cost)
    return best


def test_cut_points_are_optimal():
    rng = random.Random(0)
    for _ in range(200):
        lengths = sorted(rng.randint(1, 60) for _ in range(rng.randint(1, 9)))
        max_rows, overhead = rng.randint(1, 6), rng.randint(0, 80)
        runs = cut_points(lengths, max_rows, overhead)
        assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
        assert all(a < b <= a + max_rows for a, b in runs)
        cost = sum((b - a) * lengths[b - 1] + overhead for a, b in runs)
        assert cost == brute_force(lengths, max_rows, overhead)


def test_buckets_cover_every_turn_once_with_its_own_tokens():
    tok = TurnTokenizer(default_tokenizer_path())
    texts = ["ok", "thanks a lot", "x " * 50, "where is my order number 12345?", "no", "hi there"]
    buckets = tok.buckets(texts, bucket_size=4, call_overhead_tokens=8)
    assert sorted(r for b in buckets for r in b.rows) == list(range(len(texts)))
    for b in buckets:
        for row, i in enumerate(b.rows):
            single = tok.buckets([texts[i]])[0]
            n = int(b.attention_mask[row].sum())
            assert (b.input_ids[row, :n] == single.input_ids[0]).all()
            assert not b.input_ids[row, n:].any()
