"""The pre-training study's parts on small synthetic dialogues (the study itself is a command)."""

import numpy as np
import torch

from training.model import ChatModel, ModelConfig
from training.pretraining.context import EOS, UNK, Context, Vocabulary
from training.pretraining.corpora import Set, fraction
from training.pretraining.train import finetune, pretrain


def synthetic(n: int, seed: int, labelled: bool = True) -> Set:
    """Dialogues whose next turn follows from the last (a random walk) and whose customer
    turns' satisfaction is readable from the vector."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 7, n)
    rows = int(sizes.sum())
    vec = rng.normal(size=(rows, 384)).astype(np.float32)
    starts = np.r_[0, np.cumsum(sizes)][:-1]
    for start, size in zip(starts, sizes, strict=True):
        for t in range(start + 1, start + size):
            vec[t] = 0.9 * vec[t - 1] + 0.45 * vec[t]
    vec[:, 0] *= 4
    cust = (np.concatenate([np.arange(k) for k in sizes]) % 2 == 0).astype(np.float32)
    sat = np.where(cust == 1, (vec[:, 0] > 0).astype(int) * 2, -1)
    labels = {"satisfaction": sat, "levels": np.where(sat >= 0, sat * 2, -1)} if labelled else {}
    return Set("synthetic", vec, np.r_[0, np.cumsum(sizes)], cust, labels,
               ["MWOZ" if i % 2 else "SGD" for i in range(n)],
               [f"turn {i} words {i % 7}" for i in range(rows)])


def test_fractions_are_nested_and_fixed() -> None:
    small, big = fraction(200, 0.1), fraction(200, 0.5)
    assert len(small) == 20 and len(big) == 100
    assert set(small) <= set(big)
    assert fraction(200, 0.25) == fraction(200, 0.25)


def test_vocabulary_keeps_the_most_frequent_wordpieces() -> None:
    v = Vocabulary([[5, 5, 5, 9, 9, 11]], size=2)
    ids = v.ids([5, 9, 11, 99999], max_len=10)
    assert ids[0] != ids[1] and ids[2] == UNK and ids[3] == UNK and ids[-1] == EOS


def test_context_gru_transfers_into_the_served_model() -> None:
    from transformers import BertConfig

    served = ChatModel(ModelConfig(), BertConfig(hidden_size=384, num_hidden_layers=6,
                                                 num_attention_heads=12, intermediate_size=32))
    served.gru.load_state_dict(Context({}).gru.state_dict())  # same shapes, same keys


def test_pretraining_lowers_the_held_out_loss_and_finetuning_learns() -> None:
    torch.set_num_threads(1)
    train, dev = synthetic(40, 0, labelled=False), synthetic(10, 1, labelled=False)
    for objective in ("generative", "retrieval"):
        state, rep = pretrain(objective, train, dev, (train.texts, dev.texts), epochs=3,
                              vocab_size=50)
        assert rep["dev_curve"][-1]["loss"] < rep["dev_curve"][0]["loss"]
        assert set(state) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    lab = synthetic(300, 2), synthetic(60, 3), synthetic(60, 4)
    for arm, init in (("none", None), ("tl_erc+si_mtl", state)):
        r = finetune("uss", arm, *lab, seed=0, pretrained=init, max_epochs=8)
        assert 1 <= r["best_epoch"] <= r["epochs_run"] <= 8
        assert r["test"]["MWOZ"]["macro_f1"] > 60  # the signal is in the vector
