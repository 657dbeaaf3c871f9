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


@pytest.mark.parametrize("encoder", ["encoder", "encoder_int8"])
def test_triton_equals_onnx_runtime(stack, encoder):
    tok = TurnTokenizer(default_tokenizer_path())
    (bucket,) = tok.buckets(["Where is my refund?", "Thanks a lot!", "No."], bucket_size=8)
    enc_feed = {"input_ids": bucket.input_ids, "attention_mask": bucket.attention_mask}
    (served,) = triton_infer(stack.triton.grpc_url, encoder, enc_feed, ["embedding"])
    (local,) = ort.InferenceSession(str(MODEL_REPOSITORY / encoder / "1/model.onnx")).run(
        ["embedding"], enc_feed)
    np.testing.assert_allclose(served, local, atol=1e-5)

    rng = np.random.default_rng(1)
    head_feed = {"embedding": local.astype(np.float32),
                 "is_customer": np.array([[1], [0], [1]], np.float32),
                 "state": rng.standard_normal((3, 128)).astype(np.float32)}
    served = triton_infer(stack.triton.grpc_url, "turn_head", head_feed, ["probs", "state_out"])
    local = ort.InferenceSession(str(MODEL_REPOSITORY / "turn_head/1/model.onnx")).run(
        ["probs", "state_out"], head_feed)
    for s, loc in zip(served, local, strict=True):
        np.testing.assert_allclose(s, loc, atol=1e-5)


def test_startup_check_refuses_a_mismatched_model(stack):
    tok = TurnTokenizer(default_tokenizer_path())

    async def check(encoder: str, head: str) -> int:
        scorer = TritonScorer(stack.triton.grpc_url, encoder, head, tok)
        try:
            await scorer.check_models(max_batch=64)
            return scorer.state_size
        finally:
            await scorer.close()

    assert asyncio.run(check("encoder", "turn_head")) == 128
    with pytest.raises(ModelMismatch):
        asyncio.run(check("encoder", "encoder"))  # the head's tensors are not there
    with pytest.raises(ModelMismatch):
        asyncio.run(check("turn_head", "turn_head"))
