"""The only @app.agent code: take a micro-batch, score it, emit, then store the new states."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from datetime import datetime

import faust
import orjson
import structlog
from faust.streams import _current_event
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tenacity import RetryCallState

from worker import metrics
from worker.app import Wiring
from worker.infer import Scorer
from worker.pipeline import BatchResult, Message, TurnProcessor
from worker.resilience import score_isolating
from worker.settings import Settings
from worker.state import ConversationState, expired

log = structlog.get_logger(__name__)
LAG_INTERVAL_S = 5.0  # how often chat_consumer_lag is recomputed
PROMETHEUS_TYPE = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if "charset" not in p)


def wire(w: Wiring, settings: Settings, scorer: Scorer) -> None:
    processor = TurnProcessor(scorer, settings.alert_rules(), model_name=settings.head_model,
                              max_message_bytes=settings.max_message_bytes,
                              echo_text=settings.echo_text, redact_pii=settings.redact_pii)

    def load(cid: str) -> ConversationState | None:
        raw = w.table.get(cid.encode("utf-8"))
        return None if raw is None else ConversationState.loads(raw)

    async def emit(result: BatchResult) -> None:
        """Send every output and wait for the broker's acks before states are stored: a stored
        state then always has its events delivered (at-least-once, no lost turn)."""
        futures = []
        for ev in result.enriched:
            futures.append(await w.enriched.send(key=ev.conversation_id.encode(),
                                                 value=orjson.dumps(ev), force=True))
        for al in result.alerts:
            futures.append(await w.alerts.send(key=al.conversation_id.encode(),
                                               value=orjson.dumps(al), force=True))
        for dl in result.dead_letters:
            key = dl.conversation_id.encode() if dl.conversation_id else None
            futures.append(await w.dlq.send(key=key, value=orjson.dumps(dl), force=True))
        await asyncio.gather(*futures)

    @w.app.timer(interval=LAG_INTERVAL_S)
    async def report_lag() -> None:
        await update_consumer_lag(w.app, settings.topic_turns)

    @w.app.agent(w.turns, name="score_turns")
    async def score_turns(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch,
                                               within=settings.max_wait_ms / 1000):
            messages = [Message(e.message.value, e.message.key, e.message.topic,
                                e.message.partition, e.message.offset) for e in events]
            metrics.MESSAGES_IN.inc(len(messages))
            metrics.BATCH_SIZE.observe(len(messages))
            t0 = time.perf_counter()
            result = await score_isolating(processor, messages, load, _log_retry)
            t1 = time.perf_counter()
            await emit(result)
            t2 = time.perf_counter()
            count(result)
            for cid, (state, idx) in result.states.items():
                # the table picks the changelog partition from the current event: make it the
                # event of this conversation, not the batch's last one
                _current_event.set(weakref.ref(events[idx]))
                w.table[cid.encode("utf-8")] = state.dumps()
            log.info("batch", size=len(events), enriched=len(result.enriched),
                     alerts=len(result.alerts), dead_letters=len(result.dead_letters),
                     duplicates=result.duplicates, ended=result.ended,
                     score_ms=round(1000 * (t1 - t0), 1), emit_ms=round(1000 * (t2 - t1), 1),
                     store_ms=round(1000 * (time.perf_counter() - t2), 1))


_lag_labels: set[tuple[str, str]] = set()


async def update_consumer_lag(app: faust.App, topic: str) -> None:
    """chat_consumer_lag per assigned partition of `topic`: highwater (the next offset the
    broker will write, as of the last fetch response) minus the committed offset, or minus the
    read position while nothing is committed yet. Partitions no longer assigned lose their
    series. The highwater is the broker's answer, so on a broker whose ListOffsets/fetch
    highwater is approximate (Tansu with multi-record batches) the figure is too."""
    consumer = app.consumer
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
    except Exception:  # consumer not started or between generations: try next time
        return
    committed = getattr(consumer, "_committed_offset", {})
    seen: set[tuple[str, str]] = set()
    for tp in assigned:
        try:
            high = consumer.highwater(tp)
            base = committed.get(tp)
            if base is None:
                base = await consumer.position(tp)
        except Exception:  # partition moving away mid-computation
            continue
        if high is None or base is None:
            continue
        labels = (tp.topic, str(tp.partition))
        metrics.CONSUMER_LAG.labels(*labels).set(max(0, high - base))
        seen.add(labels)
    for labels in _lag_labels - seen:
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(*labels)
    _lag_labels.clear()
    _lag_labels.update(seen)


def expire_idle(w: Wiring, settings: Settings) -> None:
    """Drop idle conversations' state: a changelog tombstone on the partition the state came
    from, then the local copy. Only states of partitions this worker owns are touched."""

    @w.app.timer(interval=settings.state_sweep_s)
    async def sweep() -> None:
        partitions = {tp.partition for tp in w.app.assignor.assigned_actives()
                      if tp.topic == settings.topic_turns}
        gone = expired(list(w.table.data.items()), time.time(), settings.state_idle_s,
                       partitions)
        for key, partition in gone:
            w.table.send_changelog(partition, key, None)
            w.table.data.pop(key, None)
        if gone:
            metrics.STATES_EXPIRED.inc(len(gone))
            log.info("states_expired", count=len(gone))


def _log_retry(kind: str) -> Callable[[RetryCallState], None]:
    def before_sleep(rs: RetryCallState) -> None:
        metrics.RETRIES.labels(kind).inc()
        log.warning("triton_retry", kind=kind, attempt=rs.attempt_number,
                    error=type(rs.outcome.exception()).__name__)

    return before_sleep


def count(result: BatchResult) -> None:
    """Metrics of one emitted batch."""
    metrics.TURNS_ENRICHED.inc(len(result.enriched))
    metrics.DUPLICATES.inc(result.duplicates)
    metrics.CONVERSATIONS_ENDED.inc(result.ended)
    for dl in result.dead_letters:
        metrics.DEAD_LETTERS.labels(dl.reason).inc()
    for alert in result.alerts:
        for rule in alert.rules:
            metrics.ALERTS.labels(rule).inc()
    now = time.time()
    for ev in result.enriched:
        with contextlib.suppress(ValueError):
            metrics.TURN_TO_EVENT_SECONDS.observe(now - datetime.fromisoformat(ev.ts).timestamp())


def health_views(w: Wiring, scorer_ok: Callable[[], bool]) -> None:
    """/live/: the process answers. /ready/: partitions recovered, not rebalancing, Triton up.
    /metrics: Prometheus."""
    metrics.ACTIVE_CONVERSATIONS.set_function(lambda: len(w.table))
    metrics.TRITON_HEALTHY.set_function(lambda: 1.0 if scorer_ok() else 0.0)

    @w.app.page("/metrics")
    async def prometheus(web, request):  # type: ignore[no-untyped-def]
        # aiohttp takes the charset separately; the exposition format is UTF-8 text
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=PROMETHEUS_TYPE)

    @w.app.page("/live/")
    async def live(web, request):  # type: ignore[no-untyped-def]
        return web.json({"live": True})

    @w.app.page("/ready/")
    async def ready(web, request):  # type: ignore[no-untyped-def]
        recovered = w.app.tables.recovery.completed.is_set()
        ok = recovered and not w.app.rebalancing and scorer_ok()
        return web.json({"ready": ok, "recovered": recovered, "triton": scorer_ok()},
                        status=200 if ok else 503)
