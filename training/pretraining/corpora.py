"""What the pre-training study reads: dialogues as role flags and frozen utterance vectors.

Utterance vectors come from the base MiniLM (frozen: the `frozen` row of training.finetune), so
that a run at 10 % of the USS labels never sees an encoder tuned on the other 90 %. They are
computed once with ONNX Runtime and cached under training/cache/pretraining/.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import USS_CORPORA, Dialogue, Utterance, load_meld, load_uss, uss_split
from training.paths import CACHE, SHARED_DATA, minilm_dir

HERE = CACHE / "pretraining"
MELD_EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
SENTIMENTS = ("negative", "neutral", "positive")
MAX_SPEAKERS = 6  # MELD speaker index by first appearance; the 6th and later share a class


@dataclass
class Set:
    """Dialogues as flat arrays: vector rows, per-utterance labels (-1 = none), offsets."""

    name: str
    vectors: np.ndarray  # [n_utts, 384] float32
    offsets: np.ndarray  # [n_dialogues + 1]
    customer: np.ndarray  # [n_utts] 0/1
    labels: dict[str, np.ndarray]  # head -> [n_utts] int
    corpus: list[str]  # per dialogue
    texts: list[str] | None = None  # per utterance, where a set needs them (pre-training)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def subset(self, keep: list[int]) -> Set:
        rows = np.concatenate([np.arange(self.offsets[d], self.offsets[d + 1]) for d in keep])
        sizes = np.diff(self.offsets)[keep]
        return Set(self.name, self.vectors[rows], np.r_[0, np.cumsum(sizes)],
                   self.customer[rows], {k: v[rows] for k, v in self.labels.items()},
                   [self.corpus[d] for d in keep],
                   None if self.texts is None else [self.texts[i] for i in rows])


def base_encoder() -> Path:
    """The base MiniLM as an ONNX encoder (mean-pooled vector), exported once."""
    out = HERE / "base_encoder.onnx"
    if not out.exists():
        from transformers import BertModel

        from training.export import export_encoder
        from training.model import ChatModel, ModelConfig

        base = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True,
                                         add_pooling_layer=False)
        model = ChatModel(ModelConfig(frozen_layers=6), base.config)
        model.bert.load_state_dict(base.state_dict())
        export_encoder(model.eval(), out)
    return out


def vectors(texts: list[str]) -> np.ndarray:
    from training.encoder import embed_texts

    key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    path = HERE / f"vectors_{key}.npy"
    if not path.exists():
        HERE.mkdir(parents=True, exist_ok=True)
        np.save(path, embed_texts(base_encoder(), texts))
    return np.load(path)


def to_set(name: str, dialogues: list[Dialogue], corpus: list[str],
           labels: dict[str, list[int]]) -> Set:
    utts = [u for d in dialogues for u in d.utterances]
    return Set(name, vectors([u.text for u in utts]),
               np.r_[0, np.cumsum([len(d.utterances) for d in dialogues])],
               np.array([u.role == "customer" for u in utts], np.float32),
               {k: np.array(v) for k, v in labels.items()}, corpus)


def uss(part: str) -> Set:
    from training.data import label_3, label_5

    ds, corpus = [], []
    for c in USS_CORPORA:
        all_ = load_uss(c)
        idx = uss_split(c)[part]
        ds += [all_[i] for i in idx]
        corpus += [c] * len(idx)
    utts = [u for d in ds for u in d.utterances]
    rated = [u.scores if u.role == "customer" else () for u in utts]
    return to_set(f"uss_{part}", ds, corpus, {
        "satisfaction": [label_3(r) if r else -1 for r in rated],
        "levels": [label_5(r) if r else -1 for r in rated]})


def meld(split: str) -> Set:
    ds = load_meld(split)
    emotion, sentiment, speaker = [], [], []
    for d in ds:
        order: dict[str, int] = {}
        for u in d.utterances:
            speaker.append(min(order.setdefault(u.speaker, len(order)), MAX_SPEAKERS - 1))
            emotion.append(MELD_EMOTIONS.index(u.emotion))
            sentiment.append(SENTIMENTS.index(u.sentiment))
    return to_set(f"meld_{split}", ds, ["MELD"] * len(ds),
                  {"emotion": emotion, "sentiment": sentiment, "speaker": speaker})


def fraction(n: int, share: float, seed: int = 1234) -> list[int]:
    """The first `share` of one fixed permutation: nested subsets, the same for every arm."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[: max(1, round(share * n))])


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def sgd_unlabelled(max_dialogues: int | None = None) -> tuple[Set, Set, dict]:
    """SGD dialogues for pre-training (train, held-out dev for its loss curve), never one marked
    valid/test in USS, nor one that is a copy of a USS valid/test dialogue by text: half or more
    of its utterances found in one such dialogue (SGD's agent templates repeat across many
    dialogues, so one shared line is no evidence). Returns the sets and what was left out."""
    held: dict[str, set[str]] = {}  # utterance text -> USS valid/test dialogues that have it
    for c in USS_CORPORA:
        all_ = load_uss(c)
        for part in ("valid", "test"):
            for i in uss_split(c)[part]:
                for u in all_[i].utterances:
                    held.setdefault(_norm(u.text), set()).add(f"{c}-{i}")
    keep: dict[str, list[Dialogue]] = {"train": [], "dev": []}
    dropped = {"uss_valid_test_marked": 0, "text_overlap": 0}
    with gzip.open(SHARED_DATA / "sgd-dialogues" / "sgd_dialogues.jsonl.gz", "rt") as f:
        for line in f:
            d = json.loads(line)
            if d.get("uss_split") in ("valid", "test"):
                dropped["uss_valid_test_marked"] += 1
                continue
            hits = Counter(h for t in d["turns"] for h in held.get(_norm(t["text"]), ()))
            if hits and max(hits.values()) >= len(d["turns"]) / 2:
                dropped["text_overlap"] += 1
                continue

            dia = Dialogue(d["dialogue_id"], tuple(
                Utterance("customer" if t["speaker"] == "USER" else "agent", t["text"])
                for t in d["turns"]))
            keep["dev" if d["split"] == "dev" else "train"].append(dia)
    if max_dialogues:
        keep["train"] = random.Random(0).sample(keep["train"],
                                                min(max_dialogues, len(keep["train"])))
        keep["dev"] = keep["dev"][: max(50, max_dialogues // 20)]
    sets = [to_set(f"sgd_{k}", v, ["SGD-unlabelled"] * len(v), {}) for k, v in keep.items()]
    for s, v in zip(sets, keep.values(), strict=True):
        s.texts = [u.text for d in v for u in d.utterances]
    return sets[0], sets[1], {**dropped, "train_dialogues": len(keep["train"]),
                              "dev_dialogues": len(keep["dev"])}


