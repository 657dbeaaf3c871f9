"""NMF topics: the torch fold-in matches scikit-learn, exports to ONNX, survives empty prefixes,
tells domains apart, and the metrics give hand-computed values (a small fit, a few seconds)."""

import math

import numpy as np
import pytest
import torch

from training import topics as T
from worker.bow import BagOfWords

HOTEL = ["I need a hotel in the north with free parking for 3 nights.",
         "The Acorn guest house is a 4 star guesthouse with parking. Shall I book a room?",
         "Yes, book the hotel room for 2 people starting Friday, 3 nights."]
TRAIN = ["I need a train from Cambridge to London on Tuesday.",
         "Train TR1234 leaves Cambridge station at 09:00 and arrives at 10:00.",
         "Book tickets on that train for 2 people, please."]


@pytest.fixture(scope="module")
def small():
    train = T.dialogues("train")
    docs = [T.text(d) for d in train[:75] + train[800:875]]  # 75 MWOZ + 75 SGD dialogues
    model = T.fit(docs, topics=8)
    valid = T.dialogues("valid")
    bow = BagOfWords(model.vocabulary)
    prefixes = np.concatenate([T.prefix_counts(bow, d) for d in valid[:10] + valid[99:109]])
    return model, T.fold_in(model), prefixes[prefixes.sum(1) > 0]


def test_fold_in_agrees_with_sklearn_transform(small):
    model, module, prefixes = small
    scores = model.nmf.transform(T.tfidf(prefixes, model.idf, True)) @ model.components
    reference = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    with torch.no_grad():
        ids = module(torch.from_numpy(prefixes.astype(np.float32)))[0].numpy()
    agree = np.mean([set(a) == set(b) for a, b in zip(ids, reference, strict=True)])
    assert agree >= 0.95, agree


def test_onnx_equals_torch(small):
    _, module, prefixes = small
    rows = np.random.default_rng(0).choice(len(prefixes), 50, replace=False)
    check = T.onnx_check(module, prefixes[rows])
    assert check["word_sets_equal"] == 1.0
    assert check["theta_max_abs_diff"] < 1e-4


def test_zero_counts_are_finite(small):
    model, module, prefixes = small
    counts = torch.zeros(3, len(model.vocabulary))
    counts[1] = torch.from_numpy(prefixes[0].astype(np.float32))
    with torch.no_grad():
        ids, theta = module(counts)
    assert ids.shape == (3, 5) and ids.dtype == torch.int64 and theta.shape == (3, 8)
    assert torch.isfinite(theta).all() and (theta[0] == 0).all() and theta[1].sum() > 0
    assert ((ids[1] >= 0) & (ids[1] < len(model.vocabulary))).all()
    assert (ids[0] == -1).all() and (ids[2] == -1).all()  # an empty prefix has no words


def test_domains_get_different_words(small):
    model, module, _ = small
    bow = BagOfWords(model.vocabulary)
    counts = torch.from_numpy(bow.dense([" ".join(HOTEL), " ".join(TRAIN)]))
    with torch.no_grad():
        ids = module(counts)[0].tolist()
    hotel, train = (set(bow.words(r)) for r in ids)
    assert hotel != train
    assert "train" in train and {"hotel", "guest", "house", "guesthouse"} & hotel


def test_save_load_round_trip(small, tmp_path):
    model, _, _ = small
    T.save(tmp_path / "t.npz", model)
    back = T.load(tmp_path / "t.npz")
    assert back.vocabulary == model.vocabulary and back.settings == model.settings
    assert np.allclose(back.components, model.components, atol=1e-6)


def test_metrics_on_hand_examples():
    words = [f"w{i}" for i in range(15)]
    assert T.diversity([words[:10], words[5:15]]) == pytest.approx(15 / 20)
    docs = [{"a", "b"}, {"a", "b"}, {"a"}, {"c"}]
    ab = math.log((2 / 4) / ((3 / 4) * (2 / 4))) / -math.log(2 / 4)
    assert T.npmi([["a", "b"]], docs) == pytest.approx(ab)
    assert T.npmi([["a", "b"], ["a", "c"]], docs) == pytest.approx((ab - 1) / 2)
    assert T.distinct_share([("a", "b"), ("b", "a"), ("c", "d"), ("a", "b")]) == 0.25
