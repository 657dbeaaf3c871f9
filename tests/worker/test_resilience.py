import asyncio

from tritonclient.utils import InferenceServerException

from tests.helpers import FakeScorer, msg, turn
from tests.worker.test_pipeline import Store, scores
from worker.pipeline import TurnProcessor
from worker.resilience import score_isolating
from worker.rules import AlertRules


def no_log(kind):
    return lambda rs: None


class PoisonScorer(FakeScorer):
    """Rejects any batch holding a 'poison' turn (the input's fault), like a model error."""

    async def encode(self, texts):
        if any("poison" in t for t in texts):
            raise ValueError("model rejected the input")
        return await super().encode(texts)


class FlakyScorer(FakeScorer):
    """Unavailable for the first two calls, then fine (a Triton restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    async def encode(self, texts):
        if self.failures:
            self.failures -= 1
            raise InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")
        return await super().encode(texts)


def test_only_the_turn_that_fails_alone_is_dead_lettered():
    batch = [msg(turn("a", 0, text="fine")), msg(turn("b", 0, text="poison")),
             msg(turn("a", 1, text="still fine"))]
    proc = TurnProcessor(PoisonScorer(), AlertRules(), model_name="fake")
    result = asyncio.run(score_isolating(proc, batch, Store().load, no_log))
    assert [(d.reason, d.offset) for d in result.dead_letters] == [("inference_failed",
                                                                     batch[1].offset)]
    assert [(e.conversation_id, e.seq) for e in result.enriched] == [("a", 0), ("a", 1)]
    # state threads through the split: the same scores as the clean batch without the poison
    clean = asyncio.run(TurnProcessor(FakeScorer(), AlertRules(), model_name="fake").process(
        [batch[0], batch[2]], Store().load))
    assert scores([result]) == scores([clean])


def test_transient_faults_are_retried_until_triton_is_back():
    proc = TurnProcessor(FlakyScorer(), AlertRules(), model_name="fake")
    result = asyncio.run(score_isolating(proc, [msg(turn("a", 0))], Store().load, no_log))
    assert len(result.enriched) == 1 and not result.dead_letters
