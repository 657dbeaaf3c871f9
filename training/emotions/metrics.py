"""Multi-label metrics (SemEval-2018 E-c: Jaccard accuracy, micro-F1, macro-F1), threshold
tuning on a dev set, and the coarse MELD / GoEmotions-Ekman view of E-c predictions."""

from __future__ import annotations

import numpy as np

from training.emotions.data import EC_TO_COARSE, LABELS

GRID = np.round(np.arange(0.01, 0.96, 0.01), 2)


def jaccard(y: np.ndarray, p: np.ndarray, empty: float = 1.0) -> float:
    """Mean over rows of |y & p| / |y | p|; a row where both are empty scores `empty`."""
    y, p = y.astype(bool), p.astype(bool)
    inter = (y & p).sum(1)
    union = (y | p).sum(1)
    per_row = np.where(union > 0, inter / np.maximum(union, 1), empty)
    return float(per_row.mean())


def f1_per_label(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y, p = y.astype(bool), p.astype(bool)
    tp = (y & p).sum(0)
    denom = y.sum(0) + p.sum(0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def micro_f1(y: np.ndarray, p: np.ndarray) -> float:
    y, p = y.astype(bool), p.astype(bool)
    denom = y.sum() + p.sum()
    return float(2 * (y & p).sum() / denom) if denom else 0.0


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    return float(f1_per_label(y, p).mean())


def multilabel(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"jaccard": jaccard(y, p), "micro_f1": micro_f1(y, p), "macro_f1": macro_f1(y, p),
            "jaccard_empty0": jaccard(y, p, empty=0.0)}


def tune_thresholds(probs: np.ndarray, y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per label, the grid threshold with the best F1 on the rows where the label is known
    (ties: the lowest threshold). Labels never known keep 0.5."""
    out = np.full(probs.shape[1], 0.5)
    for k in range(probs.shape[1]):
        rows = m[:, k] > 0
        if not rows.any():
            continue
        yk, pk = y[rows, k].astype(bool), probs[rows, k]
        pred = pk[:, None] >= GRID[None, :]
        tp = (pred & yk[:, None]).sum(0)
        f1 = 2 * tp / np.maximum(pred.sum(0) + yk.sum(), 1)
        out[k] = GRID[int(np.argmax(f1))]
    return out


def tune_jaccard(probs: np.ndarray, y: np.ndarray, m: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Per-label thresholds that maximise dev Jaccard accuracy over the known labels:
    the best single threshold first, then `rounds` of coordinate ascent, label by label."""
    yk = (y * m).astype(bool)
    known = m.astype(bool)

    def score(thr: np.ndarray) -> float:
        return jaccard(yk, (probs >= thr) & known)

    start = max(GRID, key=lambda g: score(np.full(probs.shape[1], g)))
    thr = np.full(probs.shape[1], start)
    for _ in range(rounds):
        for k in range(probs.shape[1]):
            if not known[:, k].any():
                continue
            best, best_g = -1.0, thr[k]
            for g in GRID:
                thr[k] = g
                v = score(thr)
                if v > best + 1e-12:
                    best, best_g = v, g
            thr[k] = best_g
    return thr


def tune_global(probs: np.ndarray, y: np.ndarray) -> float:
    """The paper's single threshold gamma: the grid value with the best dev Jaccard."""
    scores = [jaccard(y, probs >= g) for g in GRID]
    return float(GRID[int(np.argmax(scores))])


COARSE_ORDER = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def coarse_sets(probs: np.ndarray, thresholds: np.ndarray) -> list[set[str]]:
    """E-c predictions -> MELD/Ekman label sets (EC_TO_COARSE); nothing above threshold (or
    only anticipation / trust) -> {"neutral"}."""
    out = []
    for row in probs >= thresholds:
        labs = {EC_TO_COARSE[LABELS[k]] for k in np.flatnonzero(row) if LABELS[k] in EC_TO_COARSE}
        out.append(labs or {"neutral"})
    return out


def coarse_single(probs: np.ndarray, thresholds: np.ndarray) -> list[str]:
    """One MELD label per row: of the mapped labels above threshold, the one with the highest
    probability / threshold ratio; none -> "neutral"."""
    ratio = probs / np.maximum(thresholds, 1e-6)
    out = []
    for r, row in enumerate(probs >= thresholds):
        ks = [k for k in np.flatnonzero(row) if LABELS[k] in EC_TO_COARSE]
        out.append(EC_TO_COARSE[LABELS[max(ks, key=lambda k: ratio[r, k])]] if ks else "neutral")
    return out


def one_hot(sets: list[set[str]]) -> np.ndarray:
    return np.array([[c in s for c in COARSE_ORDER] for s in sets], dtype=bool)


def single_label(gold: list[str], pred: list[str]) -> dict[str, float]:
    """7-class accuracy, macro-F1 and support-weighted F1 (MELD's usual figure)."""
    g, p = one_hot([{x} for x in gold]), one_hot([{x} for x in pred])
    f1 = f1_per_label(g, p)
    support = g.sum(0)
    return {"accuracy": float(np.mean([a == b for a, b in zip(gold, pred, strict=True)])),
            "macro_f1": float(f1.mean()),
            "weighted_f1": float((f1 * support).sum() / support.sum())}


def ekman(gold: list[set[str]], pred: list[set[str]]) -> dict[str, float]:
    """GoEmotions Ekman (7 labels incl. neutral, multi-label)."""
    g, p = one_hot(gold), one_hot(pred)
    return multilabel(g, p)
