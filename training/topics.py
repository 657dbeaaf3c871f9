"""Causal conversation topics: NMF on tf-idf bags of words, folded in by a fixed-step torch module.

Fit: scikit-learn NMF on L2-normalised tf-idf counts of the USS (MWOZ, SGD) training dialogues.
Serve: `TopicFoldIn` reads the raw word counts of a conversation prefix, applies the same
weighting, runs a fixed number of multiplicative updates for θ with the topics held fixed, and
returns the top words of θ·H (exportable to ONNX: no data-dependent control flow).
Run `python -m training.topics` to fit, save training/checkpoints/topics.npz and write
reports/topics.json (the figures against the NVDM topic model served before).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import CountVectorizer
from torch import nn

from training.data import USS_CORPORA, Dialogue, load_uss, uss_split
from training.paths import REPORTS, ROOT
from worker.bow import BagOfWords, build_vocabulary

CHECKPOINT = ROOT / "training/checkpoints/topics.npz"
EPS = float(np.finfo(np.float32).eps)
# words of almost every dialogue that say nothing about what it is about
FILLER = ("like", "need", "yes", "thank", "thanks", "please", "okay", "sure", "great", "good",
          "help", "want", "know")


@dataclass
class Topics:
    """A fitted topic model: vocabulary [V], idf [V], components H [K, V] and its settings."""

    vocabulary: list[str]
    idf: np.ndarray
    components: np.ndarray
    settings: dict
    nmf: NMF | None = field(default=None, repr=False)  # the fitted estimator (not saved)

    def top_words(self, n: int = 10) -> list[list[str]]:
        return [[self.vocabulary[i] for i in np.argsort(-h, kind="stable")[:n]]
                for h in self.components]


def dialogues(split: str) -> list[Dialogue]:
    """The USS dialogues (MWOZ, then SGD) of one published split."""
    return [ds[i] for corpus in USS_CORPORA
            for ds in [load_uss(corpus)] for i in uss_split(corpus)[split]]


def text(dialogue: Dialogue) -> str:
    """A dialogue's document: all its utterances joined."""
    return " ".join(u.text for u in dialogue.utterances)


def vocabulary(docs: list[str], size: int = 2000, max_df: float = 1.0,
               drop: tuple[str, ...] = ()) -> list[str]:
    """The `size` most frequent words (worker.bow analyser, stop words out) of `docs`, leaving
    out the words in `drop` and those in more than a `max_df` share of the documents."""
    words = build_vocabulary(docs, 2 * size)
    counts = BagOfWords(words).counts(docs)
    df = np.asarray((counts > 0).mean(0)).ravel()
    freq = np.asarray(counts.sum(0)).ravel()
    keep = [i for i in np.argsort(-freq, kind="stable") if df[i] <= max_df and words[i] not in drop]
    return sorted(words[i] for i in keep[:size])


def tfidf(counts: np.ndarray, idf: np.ndarray, sublinear: bool) -> np.ndarray:
    """Raw counts [N, V] -> L2-normalised tf-idf rows (an all-zero row stays zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    tf = np.where(counts > 0, 1 + np.log(np.maximum(counts, 1)), 0) if sublinear else counts
    x = tf * idf
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)


def fit(docs: list[str], topics: int = 20, size: int = 2000, max_df: float = 0.5,
        drop: tuple[str, ...] = FILLER, sublinear: bool = True,
        alpha_h: float = 0.0, l1_ratio: float = 0.0, seed: int = 0) -> Topics:
    """Frobenius NMF (init nndsvda; W never regularised, so the fold-in is plain) on the tf-idf
    of `docs`. The defaults are the settings chosen on the validation dialogues."""
    vocab = vocabulary(docs, size, max_df, drop)
    counts = BagOfWords(vocab).dense(docs)
    idf = np.log((1 + len(docs)) / (1 + (counts > 0).sum(0))) + 1  # scikit-learn's smooth idf
    nmf = NMF(topics, init="nndsvda", alpha_W=0.0, alpha_H=alpha_h, l1_ratio=l1_ratio,
              max_iter=1000, random_state=seed)
    nmf.fit(tfidf(counts, idf, sublinear))
    settings = {"topics": topics, "size": size, "max_df": max_df, "drop": list(drop),
                "sublinear": sublinear, "alpha_h": alpha_h, "l1_ratio": l1_ratio, "seed": seed,
                "init": "nndsvda", "documents": len(docs)}
    return Topics(vocab, idf, nmf.components_.copy(), settings, nmf)


def save(path: Path, model: Topics) -> None:
    np.savez(path, vocabulary=np.array(model.vocabulary), idf=model.idf.astype(np.float32),
             components=model.components.astype(np.float32),
             settings=np.array(json.dumps(model.settings)))


def load(path: Path = CHECKPOINT) -> Topics:
    with np.load(path) as z:
        return Topics([str(w) for w in z["vocabulary"]], z["idf"], z["components"],
                      json.loads(str(z["settings"])))


class TopicFoldIn(nn.Module):
    """Raw prefix counts [B, V] -> (top word ids [B, top_words], -1 for an empty prefix;
    θ [B, K]), in fixed steps."""

    def __init__(self, components: np.ndarray, idf: np.ndarray, top_words: int = 5,
                 iterations: int = 200, sublinear: bool = True) -> None:
        super().__init__()
        h = torch.as_tensor(np.asarray(components, np.float32))
        self.register_buffer("h", h)
        self.register_buffer("hh", h @ h.T)
        self.register_buffer("idf", torch.as_tensor(np.asarray(idf, np.float32)))
        self.top_words, self.iterations, self.sublinear = top_words, iterations, sublinear

    def forward(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tf = torch.where(counts > 0, 1 + torch.log(counts.clamp(min=1.0)),
                         torch.zeros_like(counts)) if self.sublinear else counts
        x = tf * self.idf
        x = x / torch.sqrt((x * x).sum(-1, keepdim=True)).clamp(min=EPS)
        xh = x @ self.h.T
        theta = torch.ones_like(xh) / self.h.shape[0]  # a constant start: deterministic
        for _ in range(self.iterations):  # multiplicative updates of θ with H fixed
            theta = theta * xh / (theta @ self.hh).clamp(min=EPS)
        ids = torch.topk(theta @ self.h, self.top_words, dim=-1).indices
        # a prefix with no vocabulary word has no topic: -1 ids, "no words" to the worker
        empty = (counts.sum(-1, keepdim=True) <= 0).expand_as(ids)
        return torch.where(empty, torch.full_like(ids, -1), ids), theta


def fold_in(model: Topics, top_words: int = 5, iterations: int = 200) -> TopicFoldIn:
    """The serving module of a fitted (or loaded) model."""
    return TopicFoldIn(model.components, model.idf, top_words, iterations,
                       model.settings["sublinear"])


def prefix_counts(bow: BagOfWords, dialogue: Dialogue) -> np.ndarray:
    """Counts [T, V] of the prefix after each turn."""
    return np.cumsum(bow.dense([u.text for u in dialogue.utterances]), axis=0)


def onnx_check(module: nn.Module, counts: np.ndarray) -> dict:
    """Export to ONNX (opset 17, TorchScript exporter, dynamic batch; traced on 2 rows) and
    compare onnxruntime with torch on all of `counts`."""
    import onnxruntime as ort

    x = torch.from_numpy(np.asarray(counts, np.float32))
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "topics.onnx"
        torch.onnx.export(module, (x[:2],), path, dynamo=False, opset_version=17,
                          input_names=["counts"], output_names=["word_ids", "theta"],
                          dynamic_axes={"counts": {0: "batch"}, "word_ids": {0: "batch"},
                                        "theta": {0: "batch"}})
        ids, theta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"counts": x.numpy()})
        t_ids, t_theta = module(x)
    return {"rows": len(x), "word_sets_equal": float(np.mean(
                [set(a) == set(b) for a, b in zip(ids, t_ids.numpy(), strict=True)])),
            "theta_max_abs_diff": float(np.abs(theta - t_theta.numpy()).max())}


def diversity(top_words: list[list[str]]) -> float:
    """Unique words among all topics' top 10 ÷ (10·K)."""
    return len({w for t in top_words for w in t[:10]}) / (10 * len(top_words))


def npmi(top_words: list[list[str]], docs: list[set[str]]) -> float:
    """Mean NPMI over the pairs of each topic's top 10 words (document co-occurrence; a pair
    that never co-occurs scores -1, one in every document 1)."""
    where: dict[str, np.ndarray] = {}
    for w in {w for t in top_words for w in t[:10]}:
        where[w] = np.array([w in d for d in docs])
    scores = []
    for t in top_words:
        for a, b in combinations(t[:10], 2):
            p_ij = np.mean(where[a] & where[b])
            if p_ij == 0 or p_ij == 1:
                scores.append(-1.0 if p_ij == 0 else 1.0)
                continue
            pmi = np.log(p_ij / (where[a].mean() * where[b].mean()))
            scores.append(pmi / -np.log(p_ij))
    return float(np.mean(scores))


def distinct_share(final_words: list[tuple[str, ...]]) -> float:
    """Share of conversations whose final topic words (as a set) differ from the most common."""
    sets = Counter(frozenset(w) for w in final_words)
    return 1 - sets.most_common(1)[0][1] / len(final_words)


def figures(top: list[list[str]], final: list[tuple[str, ...]], sets: list[set[str]]) -> dict:
    return {"diversity": diversity(top), "npmi_train": npmi(top, sets),
            "distinct_share_test": distinct_share(final), "topics": [" ".join(t) for t in top]}


def main() -> None:
    start = time.time()
    train, valid, test = (dialogues(s) for s in ("train", "valid", "test"))
    model = fit([text(d) for d in train])
    save(CHECKPOINT, model)
    bow, module = BagOfWords(model.vocabulary), fold_in(model)
    analyse = CountVectorizer().build_analyzer()
    sets = [set(analyse(text(d))) for d in train]
    with torch.no_grad():
        ids = module(torch.from_numpy(bow.dense([text(d) for d in test])))[0]
    new = figures(model.top_words(10), [tuple(bow.words(r)) for r in ids.tolist()], sets)
    prefixes = np.concatenate([prefix_counts(bow, d) for d in valid])
    prefixes = prefixes[prefixes.sum(1) > 0]  # a prefix with no vocabulary word has no topic
    scores = model.nmf.transform(tfidf(prefixes, model.idf, model.settings["sublinear"]))
    reference = np.argsort(-(scores @ model.components), axis=1, kind="stable")[:, :5]
    with torch.no_grad():
        ids = module(torch.from_numpy(prefixes.astype(np.float32)))[0].numpy()
    new["foldin_agreement_valid"] = float(np.mean([set(a) == set(b) for a, b in zip(
        ids, reference, strict=True)]))
    new["valid_prefixes"] = len(prefixes)
    rows = np.random.default_rng(0).choice(len(prefixes), 50, replace=False)
    new["onnx_check"] = onnx_check(module, prefixes[rows])
    # the collapsed NVDM model served before: measured once, with the same figures, on
    # training/checkpoints/tml.pt at commit 5268cfa (TML's code is gone since), kept as measured
    out = REPORTS / "topics.json"
    old = json.loads(out.read_text())["nvdm_overall_served_before"] if out.exists() else None
    report = {"command": "python -m training.topics", "settings": model.settings,
              "fold_in_iterations": module.iterations, "seconds": round(time.time() - start, 1),
              "nmf_topics": new, "nvdm_overall_served_before": old}
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'topic model':38s} diversity  npmi(train)  distinct_share(test)")
    for name, r in (("NMF fold-in (new)", new), ("NVDM overall (served before, tml.pt)", old)):
        if r is None:
            continue
        print(f"{name:38s} {r['diversity']:9.3f}  {r['npmi_train']:11.3f}  "
              f"{r['distinct_share_test']:20.3f}")
    print(f"fold-in top words = sklearn transform on {new['foldin_agreement_valid']:.4f} of "
          f"{len(prefixes)} validation prefixes; ONNX check {new['onnx_check']}")
    for k, words in enumerate(new["topics"]):
        print(f"  topic {k:2d}: {words}")
    print(f"{report['seconds']} s; wrote {CHECKPOINT} and {REPORTS / 'topics.json'}")


if __name__ == "__main__":
    main()
