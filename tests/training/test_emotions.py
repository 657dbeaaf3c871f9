"""Emotions (training/emotions): metrics on hand cases, the label mappings, padding
invariance of the DATN head, and the Triton export (onnxruntime agrees with torch)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from training.emotions import export as X
from training.emotions import metrics as M
from training.emotions.data import (
    GOEMO_EKMAN,
    GOEMO_TO_EC,
    LABELS,
    goemotions_to_ec,
    meld_to_ec,
)
from training.emotions.model import Datn, DatnConfig
from training.paths import SHARED_DATA

torch.set_num_threads(1)
STATES = DatnConfig(variant="datn1", input="states", d_in=384, proj=32, hidden=16, att=16,
                    mlp=16, dropout=0.3)


def on(*names: str) -> np.ndarray:
    return np.array([n in names for n in LABELS])


def test_jaccard_and_f1_by_hand():
    y = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=bool)
    p = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
    # rows: 1/2, 1/2, empty-empty 1 (or 0 with empty=0)
    assert M.jaccard(y, p) == pytest.approx(2 / 3)
    assert M.jaccard(y, p, empty=0.0) == pytest.approx(1 / 3)
    # tp 2, |y| 3, |p| 3 -> 2*2/6
    assert M.micro_f1(y, p) == pytest.approx(2 / 3)
    # per label: 1.0, 0.0 (1 gold, 1 wrong prediction), 1.0
    assert M.f1_per_label(y, p).tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert M.macro_f1(y, p) == pytest.approx(2 / 3)


def test_single_label_metrics():
    gold = ["joy", "joy", "neutral", "anger"]
    pred = ["joy", "neutral", "neutral", "joy"]
    r = M.single_label(gold, pred)
    assert r["accuracy"] == pytest.approx(0.5)
    # F1: joy 2*1/(2+2)=0.5, neutral 2*1/(1+2)=2/3, anger 0, the four absent classes 0
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 7)
    assert r["weighted_f1"] == pytest.approx((0.5 * 2 + 2 / 3) / 4)


def test_thresholds_tuning():
    probs = np.array([[0.9, 0.2], [0.3, 0.6], [0.8, 0.1], [0.2, 0.7]])
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    m = np.ones_like(y)
    thr = M.tune_thresholds(probs, y, m)
    assert ((probs >= thr) == y.astype(bool)).all()
    thr = M.tune_jaccard(probs, y, m)
    assert M.jaccard(y, probs >= thr) == 1.0
    m[:, 1] = 0  # an unknown label keeps 0.5 in the F1 tuning
    assert M.tune_thresholds(probs, y, m)[1] == 0.5


def test_goemotions_mapping():
    y, m = goemotions_to_ec({"annoyance", "love"})
    assert (y.astype(bool) == on("anger", "joy", "love")).all()
    assert (m.astype(bool) == ~on("pessimism", "trust")).all()
    y, _ = goemotions_to_ec({"neutral"})
    assert not y.any()
    names = (SHARED_DATA / "goemotions/original/labels.txt").read_text().split()
    assert set(GOEMO_TO_EC) == set(names)
    # E-c's six Ekman labels follow GoEmotions' own Ekman grouping
    for ekman, members in GOEMO_EKMAN.items():
        for g in members:
            if ekman != "neutral":
                assert ekman in GOEMO_TO_EC[g], g


def test_meld_mapping_and_coarse_predictions():
    y, m = meld_to_ec("disgust")
    assert (y.astype(bool) == on("disgust")).all()
    assert (m.astype(bool) == on("anger", "disgust", "fear", "joy", "sadness", "surprise")).all()
    y, _ = meld_to_ec("neutral")
    assert not y.any()
    thr = np.full(len(LABELS), 0.5)
    probs = np.zeros((3, len(LABELS)))
    probs[0, LABELS.index("optimism")] = 0.9  # optimism -> joy
    probs[1, LABELS.index("trust")] = 0.9  # trust has no MELD label -> neutral
    probs[2, LABELS.index("anger")] = 0.6
    probs[2, LABELS.index("pessimism")] = 0.8  # the highest ratio wins: sadness
    assert M.coarse_single(probs, thr) == ["joy", "neutral", "sadness"]
    assert M.coarse_sets(probs, thr) == [{"joy"}, {"neutral"}, {"anger", "sadness"}]


@pytest.mark.parametrize("cfg", [
    STATES, DatnConfig(variant="datn2", input="words", vocab=50, d_in=8, hidden=8, att=8, mlp=8),
    DatnConfig(variant="base", input="words", vocab=50, d_in=8, hidden=8, att=8, mlp=8)])
def test_padding_does_not_change_the_output(cfg):
    torch.manual_seed(0)
    model = Datn(cfg).eval()
    x = torch.randn(1, 9, 384) if cfg.input == "states" else torch.randint(1, 50, (1, 9))
    padded = torch.cat([x, torch.zeros_like(x)[:, :4]], dim=1)
    mask = torch.ones(1, 13, dtype=torch.int64)
    mask[:, 9:] = 0
    with torch.no_grad():
        a = model(x, torch.ones(1, 9, dtype=torch.int64))["emotion"]
        b = model(padded, mask)["emotion"]
    assert torch.allclose(a, b, atol=1e-5)


def _ort_matches_torch(checkpoint: Path, out: Path) -> str:
    import onnxruntime as ort

    onnx_path = X.export(out, checkpoint)
    model, _ = X.load_checkpoint(checkpoint)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, length in ((1, 3), (5, 17), (32, 24)):
        tokens = rng.normal(size=(batch, length, 384)).astype(np.float32)
        mask = np.ones((batch, length), dtype=np.int64)
        for r in range(batch):
            mask[r, rng.integers(2, length + 1):] = 0  # ragged rows, padded on the right
        (got,) = sess.run(["emotion_probs"], {"tokens": tokens, "attention_mask": mask})
        with torch.no_grad():
            want = X.Probabilities(model)(torch.from_numpy(tokens), torch.from_numpy(mask))
        assert got.shape == (batch, len(LABELS))
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    return (out / "emotions" / "config.pbtxt").read_text()


def _parameter(pbtxt: str, key: str) -> str:
    return re.search(rf'key: "{key}"\s*value: {{ string_value: "([^"]*)" }}', pbtxt).group(1)


def test_export_of_a_small_head(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "emotions.pt"
    X.save_checkpoint(Datn(STATES).eval(), [0.3] * len(LABELS), {"test": True}, ckpt)
    pbtxt = _ort_matches_torch(ckpt, tmp_path / "repo")
    assert 'name: "emotions"' in pbtxt and 'backend: "onnxruntime"' in pbtxt
    assert "max_batch_size: 128" in pbtxt and "dynamic_batching" in pbtxt
    assert 'name: "tokens" data_type: TYPE_FP32 dims: [ -1, 384 ]' in pbtxt
    assert 'name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ]' in pbtxt
    assert 'name: "emotion_probs" data_type: TYPE_FP32 dims: [ 11 ]' in pbtxt


@pytest.mark.skipif(not X.CHECKPOINT.exists(), reason="no trained emotions head yet")
def test_served_checkpoint_exports_with_sane_thresholds(tmp_path):
    assert X.CHECKPOINT.stat().st_size < 5_000_000
    pbtxt = _ort_matches_torch(X.CHECKPOINT, tmp_path)
    assert _parameter(pbtxt, "labels").split(",") == list(LABELS)
    thresholds = [float(t) for t in _parameter(pbtxt, "thresholds").split(",")]
    assert len(thresholds) == len(LABELS)
    assert all(0.0 < t < 1.0 for t in thresholds)
