"""The real tritonserver serves exactly what ONNX Runtime computes from the same files, and the
worker's start-up check refuses a model that does not fit."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from training.paths import MODEL_REPOSITORY
from worker.infer import ModelMismatch, TritonScorer
from worker.tokenizer import TurnTokenizer, default_tokenizer_path

pytestmark = pytest.mark.integration


def triton_infer(url: str, model: str, feed: dict[str, np.ndarray], outputs: list[str]):
    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, arr in feed.items():
        t = grpcclient.InferInput(name, list(arr.shape),
                                  "INT64" if arr.dtype == np.int64 else "FP32")
        t.set_data_from_numpy(arr)
        inputs.append(t)
    result = client.infer(model, inputs)
    return [result.as_numpy(n) for n in outputs]


def test_triton_equals_onnx_runtime(stack):
    encoder = "encoder"
    tok = TurnTokenizer(default_tokenizer_path())
    (bucket,) = tok.buckets(["Where is my refund?", "Thanks a lot!", "No."], bucket_size=8)
    enc_feed = {"input_ids": bucket.input_ids, "attention_mask": bucket.attention_mask}
    (served,) = triton_infer(stack.triton.grpc_url, encoder, enc_feed, ["embedding"])
    (local,) = ort.InferenceSession(str(MODEL_REPOSITORY / encoder / "1/model.onnx")).run(
        ["embedding"], enc_feed)
    np.testing.assert_allclose(served, local, atol=1e-5)

    rng = np.random.default_rng(1)
    sess = ort.InferenceSession(str(MODEL_REPOSITORY / "step/1/model.onnx"))
    feed = {}
    for t in sess.get_inputs():
        shape = [3, *t.shape[1:]]
        if t.type == "tensor(int64)":
            feed[t.name] = rng.integers(0, 40, shape).astype(np.int64)
        elif "bow" in t.name:
            feed[t.name] = rng.poisson(0.05, shape).astype(np.float32)
        else:
            feed[t.name] = rng.standard_normal(shape).astype(np.float32)
    feed["embedding"] = local.astype(np.float32)
    feed["is_customer"] = np.array([[1], [0], [1]], np.float32)
    names = [o.name for o in sess.get_outputs()]
    served = triton_infer(stack.triton.grpc_url, "step", feed, names)
    for name, s, loc in zip(names, served, sess.run(names, feed), strict=True):
        np.testing.assert_allclose(s, loc, atol=1e-5, err_msg=name)


def test_startup_check_refuses_a_mismatched_model(stack):
    tok = TurnTokenizer(default_tokenizer_path())

    async def check(encoder: str, head: str) -> dict:
        scorer = TritonScorer(stack.triton.grpc_url, encoder, head, tok)
        try:
            await scorer.check_models(max_batch=64)
            return {"state": scorer.state_spec, "words": len(scorer.bag_of_words)}
        finally:
            await scorer.close()

    got = asyncio.run(check("encoder", "step"))
    assert got["state"]["h"] == (np.float32, (256,))
    assert set(got["state"]) == {"h", "bow"}
    assert got["words"] == got["state"]["bow"][1][0]
    with pytest.raises(ModelMismatch):
        asyncio.run(check("encoder", "encoder"))  # the head's tensors are not there
    with pytest.raises(ModelMismatch):
        asyncio.run(check("step", "step"))


def test_a_turn_scores_the_same_bits_in_any_batch(stack):
    """A turn recomputed after a crash lands in another batch; its event must be identical."""
    tok = TurnTokenizer(default_tokenizer_path())
    texts = ["I need a cheap hotel in the north with free parking please", "thanks",
             "Can you book a table for two at 7pm at an italian restaurant in the centre?"]

    async def embed() -> list[np.ndarray]:
        scorer = TritonScorer(stack.triton.grpc_url, "encoder", "step", tok)
        try:
            return [await scorer.encode(texts[:1]), await scorer.encode(texts),
                    await scorer.encode(texts * 20)]
        finally:
            await scorer.close()

    alone, three, sixty = asyncio.run(embed())
    assert np.array_equal(alone[0], three[0]) and np.array_equal(alone[0], sixty[0])
