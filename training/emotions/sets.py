"""The named data sets of the experiments (one place, so cache names and sizes agree)."""

from __future__ import annotations

from training.emotions.data import Split, load_ec, load_goemotions_ec, load_meld_ec, load_source

GOEMO_TRAIN = 8000  # random GoEmotions train comments (of 43,410), for CPU time
GOEMO_DEV = 2000  # random GoEmotions dev comments (of 5,426): thresholds and model choice
SOURCE_SPLIT = ("train",)  # SemEval-2016 4A train (6,000 tweets) as the source for the states


def split(name: str) -> Split:
    corpus, part = name.split("-", 1)
    if corpus == "ec":
        return load_ec(part)
    if corpus == "meld":
        return load_meld_ec(part)
    limit = {"train": GOEMO_TRAIN, "dev": GOEMO_DEV}.get(part)
    return load_goemotions_ec(part, limit=limit, seed=0)


def source(states: bool) -> tuple[list[str], object]:
    """SemEval-2016 4A: all 30,631 tweets for the GloVe DATN (the paper used 28,631), the
    train split only for the token-state variant (encoding costs CPU time)."""
    return load_source(SOURCE_SPLIT) if states else load_source()


ORDER = ("ec-train", "ec-dev", "ec-test", "meld-test", "goemotions-test", "meld-dev",
         "goemotions-dev", "source", "meld-train", "goemotions-train")
