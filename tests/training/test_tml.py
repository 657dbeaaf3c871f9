"""TML: streaming equals the full-sequence pass, ONNX equals torch, the config carries the
vocabulary, and training + export run on a tiny slice."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from training.paths import MODEL_REPOSITORY, ROOT
from training.tml import TML, TMLConfig, TMLStep, load

CHECKPOINT = ROOT / "training/checkpoints/tml.pt"


@pytest.fixture(scope="module")
def served():
    return load(CHECKPOINT)


def dialogue(turns: int, vocab: int, seed: int):
    rng = np.random.default_rng(seed)
    emb = torch.from_numpy(rng.standard_normal((1, turns, 384)).astype(np.float32))
    cust = torch.from_numpy((rng.random((1, turns, 1)) > 0.5).astype(np.float32))
    bow = torch.from_numpy(rng.poisson(0.01, (1, turns, vocab)).astype(np.float32))
    return emb, cust, bow


def streamed(model: TML, emb, cust, bow) -> torch.Tensor:
    step = TMLStep(model)
    state = step.initial_state(1)
    out = []
    with torch.no_grad():
        for t in range(emb.shape[1]):
            probs, _, *new = step(emb[:, t], cust[:, t], bow[:, t], *state.values())
            state = dict(zip(TMLStep.STATE, new, strict=True))
            out.append(probs[0])
    return torch.stack(out)


@pytest.mark.parametrize("turns", [1, 2, 7, 33, 60])
def test_served_model_streaming_equals_full_sequence(served, turns):
    model, _ = served
    emb, cust, bow = dialogue(turns, model.cfg.vocab, turns)
    with torch.no_grad():
        full = torch.softmax(model(emb, cust, bow)[0][0], -1)
    torch.testing.assert_close(streamed(model, emb, cust, bow), full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("flags", [{"window": 3}, {"window": 3, "use_topics": False},
                                   {"use_attention": False}])
def test_variants_stream_exactly_past_the_window(flags):
    torch.manual_seed(0)
    model = TML(TMLConfig(vocab=40, **flags)).eval()
    emb, cust, bow = dialogue(20, 40, 1)
    with torch.no_grad():
        full = torch.softmax(model(emb, cust, bow)[0][0], -1)
    torch.testing.assert_close(streamed(model, emb, cust, bow), full, atol=1e-4, rtol=0)


def test_committed_onnx_equals_committed_checkpoint(served):
    model, _ = served
    sess = ort.InferenceSession(str(MODEL_REPOSITORY / "tml/1/model.onnx"))
    step = TMLStep(model)
    state = step.initial_state(4)
    rng = np.random.default_rng(0)
    names = [o.name for o in sess.get_outputs()]
    for _ in range(40):  # enough turns to fill and roll the 32-turn memory
        turn = {"embedding": rng.standard_normal((4, 384)).astype(np.float32),
                "is_customer": (rng.random((4, 1)) > 0.5).astype(np.float32),
                "turn_bow": rng.poisson(0.01, (4, model.cfg.vocab)).astype(np.float32)}
        got = sess.run(names, {**turn, **{k: v.numpy() for k, v in state.items()}})
        with torch.no_grad():
            want = step(*(torch.from_numpy(v) for v in turn.values()), *state.values())
        for name, g, w in zip(names, got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, err_msg=name)
        state = dict(zip(TMLStep.STATE, want[2:], strict=True))


def test_config_carries_the_checkpoints_vocabulary(served):
    model, extra = served
    config = text_format.Parse((MODEL_REPOSITORY / "tml/config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    vocabulary = json.loads(config.parameters["vocabulary"].string_value)
    assert vocabulary == extra["vocabulary"] and len(vocabulary) == model.cfg.vocab


def test_training_and_export_run_on_a_tiny_slice(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "training.tml_train", "--tasks", "uss3", "meld7", "--models",
         "tml", "logreg", "--seeds", "0", "--windows", "32", "--dialogues", "8", "--epochs", "1",
         "--vocab", "300", "--out", str(tmp_path / "tml"), "--save-dir", str(tmp_path / "ck")],
        check=True, cwd=ROOT, capture_output=True, timeout=900)
    rows = json.loads((tmp_path / "tml/eval.json").read_text())
    assert {(r["task"], r["model"]) for r in rows} == {
        ("uss3", "tml"), ("uss3", "logreg"), ("meld7", "tml"), ("meld7", "logreg")}
    assert {r["dataset"] for r in rows if r["task"] == "uss3"} == {"MWOZ", "SGD", "MWOZ+SGD"}
    for r in rows:
        assert 0.0 <= r["metrics"]["macro_f1"] <= 1.0 and r["metrics"]["turns"] > 0
    assert "| MWOZ | tml | 1 |" in (tmp_path / "tml/eval.md").read_text()
    subprocess.run([sys.executable, "-m", "training.tml_export", str(tmp_path / "ck/uss3-tml-0.pt"),
                    "--repo", str(tmp_path / "repo")], check=True, cwd=ROOT, capture_output=True)
    sess = ort.InferenceSession(str(tmp_path / "repo/tml/1/model.onnx"))
    assert [o.name for o in sess.get_outputs()][:2] == ["probs", "topic_words"]
