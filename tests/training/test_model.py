"""The first model (GRU head, training/model.py): streaming equals full sequence and training
runs; the served models' configs match their graphs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from training.model import TurnHeadStep, load_checkpoint
from training.paths import MODEL_REPOSITORY, ROOT

CHECKPOINT = ROOT / "training/checkpoints/turn_head.pt"
ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}


@pytest.fixture(scope="module")
def head():
    return load_checkpoint(CHECKPOINT)


@pytest.mark.parametrize("turns", [1, 2, 7, 33, 60])
def test_step_by_step_equals_full_sequence(head, turns):
    rng = np.random.default_rng(turns)
    emb = torch.from_numpy(rng.standard_normal((1, turns, 384)).astype(np.float32))
    cust = torch.from_numpy((rng.random((1, turns, 1)) > 0.5).astype(np.float32))
    with torch.no_grad():
        full = torch.softmax(head(emb, cust)[0][0], -1)
        step, h = TurnHeadStep(head), torch.zeros(1, head.cfg.hidden)
        streamed = []
        for t in range(turns):
            p, h = step(emb[:, t], cust[:, t], h)
            streamed.append(p[0])
    assert torch.allclose(torch.stack(streamed), full, atol=1e-5)


@pytest.mark.parametrize("model", ["encoder", "encoder_int8", "tml"])
def test_config_pbtxt_matches_the_exported_graph(model):
    config = text_format.Parse((MODEL_REPOSITORY / model / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.name == model and config.backend == "onnxruntime"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    graph = onnx.load(str(MODEL_REPOSITORY / model / "1/model.onnx"), load_external_data=False)
    tensors = {t.name: t for t in [*graph.graph.input, *graph.graph.output]}
    for io in [*config.input, *config.output]:
        t = tensors[io.name].type.tensor_type
        assert ONNX_TYPES[t.elem_type] == model_config_pb2.DataType.Name(io.data_type)
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        assert dims[0] == -1, "batch axis must be dynamic"
        assert dims[1:] == list(io.dims), io.name
    assert {io.name for io in [*config.input, *config.output]} == set(tensors)


def test_encoder_onnx_equals_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from training.encoder import embed_texts
    from training.paths import minilm_dir

    texts = ["I want a refund now!", "ok", "Could you book a table for two at 7pm, please?"]
    ours = embed_texts(MODEL_REPOSITORY / "encoder/1/model.onnx", texts)
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_training_runs_end_to_end_on_a_tiny_slice(tmp_path: Path):
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "training.train", "--dialogues", "12", "--epochs", "2",
         "--out-dir", str(tmp_path / "repo"), "--report", str(report),
         "--checkpoint", str(tmp_path / "head.pt")],
        check=True, cwd=ROOT, capture_output=True, timeout=600)
    r = json.loads(report.read_text())
    assert set(r["test"]) == {"MWOZ", "SGD", "MWOZ+SGD", "MELD"}
    m = r["test"]["MWOZ+SGD"]
    assert set(m["turn_head"]["per_class_f1"]) == {"very_negative", "negative", "neutral",
                                                    "positive", "very_positive"}
    assert 0.0 <= m["turn_head"]["macro_f1"] <= 1.0 and m["turn_head"]["turns"] > 0
    sess = ort.InferenceSession(str(tmp_path / "repo/turn_head/1/model.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["probs", "state_out"]
