"""Scoring a micro-batch through faults: transient Triton faults are retried forever with
bounded backoff (the agent holds its batch, so input waits instead of being dropped); a batch
that fails for a reason of its own is retried, then split so that only the turns that fail
alone are dead-lettered."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.infer import is_transient
from worker.pipeline import BatchResult, Loader, Message, TurnProcessor
from worker.records import Rejection
from worker.state import ConversationState

log = structlog.get_logger(__name__)
OnRetry = Callable[[str], Callable[[RetryCallState], None]]


async def score(processor: TurnProcessor, messages: list[Message], load: Loader,
                on_retry: OnRetry, backoff_max_s: float = 10.0) -> BatchResult:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.2, max=backoff_max_s),
        before_sleep=on_retry("transient"),
        reraise=True,
    ):
        with attempt:
            return await processor.process(messages, load)
    raise AssertionError("unreachable")


async def score_isolating(processor: TurnProcessor, messages: list[Message], load: Loader,
                          on_retry: OnRetry, attempts: int = 3) -> BatchResult:
    try:
        async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts), reraise=True,
                                           wait=wait_exponential_jitter(multiplier=0.1, max=1.0),
                                           before_sleep=on_retry("failed_batch")):
            with attempt:
                return await score(processor, messages, load, on_retry)
    except Exception as exc:
        if len(messages) == 1:
            log.error("turn_failed", error=type(exc).__name__)
            result = BatchResult()
            processor.dead_letter(result, messages[0],
                                  Rejection("inference_failed", str(exc)[:300]))
            return result
        log.error("batch_failed_isolating", size=len(messages), error=type(exc).__name__)
    merged = BatchResult()

    def overlay(cid: str) -> ConversationState | None:
        if cid in merged.states:  # a copy: process() mutates what it loads
            return ConversationState.loads(merged.states[cid][0].dumps())
        return load(cid)

    for i, msg in enumerate(messages):  # each sees the states the previous ones left
        part = await score_isolating(processor, [msg], overlay, on_retry, attempts)
        merged.merge(part, index=i)
    return merged
