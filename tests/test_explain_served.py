"""Emotions and aspects on the real stack: the worker's explaining path (encoder token states ->
emotion and aspect models in Triton, concurrently with the step) gives what ONNX Runtime gives
from the same files, and every event's aspect offsets point at the span in the turn's text."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from tests.conftest import send
from tests.helpers import turn
from training.paths import MODEL_REPOSITORY
from worker.infer import TritonScorer
from worker.schemas import validator
from worker.settings import Settings
from worker.tokenizer import TurnTokenizer, default_tokenizer_path

pytestmark = pytest.mark.integration

TEXTS = ["This is the worst service ever, I want a refund for the broken laptop now.",
         "The battery 🔋 died after a day and the screen flickers 😡",
         "Le café\u0301 was cold and the waiter rude",
         "الخدمة سيئة, the delivery was late",
         "שירות גרוע, the app keeps crashing",
         "Thanks, the agent was really helpful and the price is fair."]


def scorer(url: str) -> TritonScorer:
    s = Settings()
    return TritonScorer(url, s.encoder_model, s.head_model,
                        TurnTokenizer(default_tokenizer_path()),
                        emotion_model=s.emotion_model, aspect_model=s.aspect_model)


def local(name: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(MODEL_REPOSITORY / name / "1/model.onnx"))
    return sess.run(None, feed)


def test_served_explanations_equal_onnx_runtime(stack):
    async def go():
        sc = scorer(stack.triton.grpc_url)
        await sc.check_models(64)
        try:
            encoded = await sc.encode_turns(TEXTS)
            return sc, encoded, await sc.explain(encoded, TEXTS)
        finally:
            await sc.close()

    sc, encoded, explained = asyncio.run(go())
    assert sc.explains and len(explained) == len(TEXTS)
    for bucket in encoded.buckets:
        feed = {"input_ids": bucket.input_ids, "attention_mask": bucket.attention_mask}
        _, tokens = local("encoder", feed)
        (emotions,) = local("emotions", {"tokens": tokens,
                                         "attention_mask": bucket.attention_mask})
        (tags,) = local("aspects", {"tokens": tokens, "attention_mask": bucket.attention_mask})
        for r, row in enumerate(bucket.rows):
            served_emotions, served_aspects = explained[row]
            np.testing.assert_allclose(list(served_emotions["probs"].values()), emotions[r],
                                       atol=1e-4)
            want = sc.aspect_tags.spans(tags[r], bucket.offsets[r], TEXTS[row])
            key = [(a["text"], a["start"], a["end"], a["polarity"]) for a in want]
            assert [(a["text"], a["start"], a["end"], a["polarity"])
                    for a in served_aspects] == key
            for got, exp in zip(served_aspects, want, strict=True):
                assert got["confidence"] == pytest.approx(exp["confidence"], abs=1e-3)


def test_every_event_carries_emotions_and_aspects_that_point_at_the_text(stack, outputs):
    cid = "explain-1"
    docs = [turn(cid, i, "customer" if i % 2 == 0 else "agent", t) for i, t in enumerate(TEXTS)]
    send(stack.bootstrap, stack.settings.topic_turns,
         [(cid.encode(), orjson.dumps(d)) for d in docs])
    events = outputs.wait("enriched", lambda d: d["conversation_id"] == cid, len(TEXTS))
    spans = 0
    for e in events:
        validator("enriched_turn").validate(e)
        assert e["schema_version"] == 4
        assert len(e["emotions"]["probs"]) == 11
        assert set(e["emotions"]["labels"]) <= set(e["emotions"]["probs"])
        for a in e["aspects"]:
            assert e["text"][a["start"]:a["end"]] == a["text"]
            spans += 1
    assert spans >= 3, "the served aspect model finds the obvious aspect terms"
    for a in outputs.select("alerts", lambda d: d["conversation_id"] == cid):
        validator("alert").validate(a)
        assert "emotion" in a and "aspect" in a
