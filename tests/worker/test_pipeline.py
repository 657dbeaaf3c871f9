import asyncio
import base64

import numpy as np
import orjson

from tests.helpers import FakeScorer, msg, turn
from worker.pipeline import Message, TurnProcessor
from worker.records import event_id
from worker.rules import AlertRules
from worker.schemas import validator
from worker.state import ConversationState


class Store:
    """What the Faust table gives the pipeline: stored bytes, fresh objects on every load."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self, cid: str) -> ConversationState | None:
        raw = self.data.get(cid)
        return None if raw is None else ConversationState.loads(raw)

    def save(self, result) -> None:
        for cid, (state, _) in result.states.items():
            self.data[cid] = state.dumps()


def processor(scorer=None) -> TurnProcessor:
    return TurnProcessor(scorer or FakeScorer(), AlertRules(), model_name="fake")


def run(batches: list[list[Message]], proc: TurnProcessor | None = None, store=None):
    proc, store = proc or processor(), store or Store()
    results = []
    for batch in batches:
        result = asyncio.run(proc.process(batch, store.load))
        store.save(result)
        results.append(result)
    return results, store


def scores(results) -> dict[tuple[str, int], float]:
    return {(e.conversation_id, e.seq): e.score for r in results for e in r.enriched}


def test_one_event_per_turn_with_deterministic_ids_and_valid_schemas():
    batch = [msg(turn("a", i, "customer" if i % 2 == 0 else "agent", f"text {i}"))
             for i in range(4)]
    (result,), _ = run([batch])
    assert [e.seq for e in result.enriched] == [0, 1, 2, 3]
    assert [e.event_id for e in result.enriched] == [event_id("a", f"a:{i}") for i in range(4)]
    for e in result.enriched:
        doc = orjson.loads(orjson.dumps(e))
        validator("enriched_turn").validate(doc)
        assert abs(sum(doc["probs"].values()) - 1.0) < 1e-4
        assert -1 <= doc["score"] <= 1


def test_batch_runs_one_encode_call_and_one_head_call_per_wave():
    scorer = FakeScorer()
    batch = [msg(turn(c, i, text=f"{c}{i}")) for i in range(3) for c in ("a", "b", "c")]
    batch.append(msg(turn("d", 0)))
    run([batch], processor(scorer))
    assert scorer.encode_calls == [10]
    assert scorer.step_calls == [4, 3, 3]


def test_state_threads_the_same_alone_or_interleaved_and_across_batches():
    texts = ["hi", "hello, how can I help", "my order is late", "let me check", "awful", "ok"]
    alone = [msg(turn("x", i, "customer" if i % 2 == 0 else "agent", t))
             for i, t in enumerate(texts)]
    (r_alone,), _ = run([alone])
    mixed = []
    for i, t in enumerate(texts):
        mixed.append(msg(turn("x", i, "customer" if i % 2 == 0 else "agent", t)))
        mixed.append(msg(turn(f"other{i}", 0, text=f"noise {i}")))
    results, _ = run([mixed[:5], mixed[5:9], mixed[9:]])
    mixed_scores = {k: v for k, v in scores(results).items() if k[0] == "x"}
    assert mixed_scores == scores([r_alone])


def test_duplicates_are_skipped_within_and_across_batches():
    first = [msg(turn("a", 0)), msg(turn("a", 1, text="again")), msg(turn("a", 1, text="again"))]
    results, store = run([first, [msg(turn("a", 0)), msg(turn("a", 2))]])
    assert [e.seq for e in results[0].enriched] == [0, 1] and results[0].duplicates == 1
    assert [e.seq for e in results[1].enriched] == [2] and results[1].duplicates == 1
    assert ConversationState.loads(store.data["a"]).turns == 3


def test_duplicate_leaves_state_and_later_scores_unchanged():
    clean, _ = run([[msg(turn("a", i, text=f"t{i}")) for i in range(3)]])
    dup, _ = run([[msg(turn("a", 0, text="t0")), msg(turn("a", 1, text="t1"))],
                  [msg(turn("a", 1, text="t1")), msg(turn("a", 2, text="t2"))]])
    assert scores(dup) == scores(clean)


def test_out_of_order_turn_goes_to_dead_letters():
    results, _ = run([[msg(turn("a", 5))], [msg(turn("a", 3))]])
    (dl,) = results[1].dead_letters
    assert dl.reason == "out_of_order" and dl.conversation_id == "a"


def test_a_gap_in_seq_is_accepted_without_waiting():
    # seq 2..4 never arrive (a platform may drop system turns): 5 is applied at once
    results, store = run([[msg(turn("a", 0)), msg(turn("a", 1))], [msg(turn("a", 5))]])
    assert [e.seq for e in results[1].enriched] == [5] and not results[1].dead_letters
    assert ConversationState.loads(store.data["a"]).turns == 3


def test_end_of_conversation_then_late_turn():
    end = {"type": "conversation_end", "conversation_id": "a", "ts": "2026-11-25T10:00:00Z"}
    results, store = run([[msg(turn("a", 0)), msg(end), msg(turn("a", 1))], [msg(turn("a", 2))]])
    assert [e.seq for e in results[0].enriched] == [0] and results[0].ended == 1
    assert [d.reason for d in results[0].dead_letters] == ["conversation_ended"]
    assert [d.reason for d in results[1].dead_letters] == ["conversation_ended"]
    state = ConversationState.loads(store.data["a"])
    assert state.ended and state.tensors == {}


def test_negative_customer_turn_alerts_and_agent_turn_never_does():
    batch = [msg(turn("a", 0, "customer", "fine")), msg(turn("a", 1, "agent", "awful awful")),
             msg(turn("a", 2, "customer", "this is awful"))]
    (result,), _ = run([batch])
    assert result.enriched[1].score < -0.5  # the agent turn is scored negative ...
    (alert,) = result.alerts  # ... but only the customer turn alerts
    assert alert.seq == 2 and "negative_level" in alert.rules
    assert alert.alert_id == event_id("a", "a:2", kind="alert")
    validator("alert").validate(orjson.loads(orjson.dumps(alert)))


def test_dead_letter_keeps_original_bytes_and_validates():
    raw = b'\xff{"conversation_id": "a"'
    (result,), _ = run([[Message(raw, b"a", "chat.turns", 3, 42)]])
    (dl,) = result.dead_letters
    assert base64.b64decode(dl.original_b64) == raw and dl.partition == 3 and dl.offset == 42
    validator("dead_letter").validate(orjson.loads(orjson.dumps(dl)))


def test_process_does_not_mutate_what_it_loaded_so_retries_are_safe():
    store = Store()
    run([[msg(turn("a", 0))]], store=store)
    before = dict(store.data)
    proc = processor()
    first = asyncio.run(proc.process([msg(turn("a", 1))], store.load))
    second = asyncio.run(proc.process([msg(turn("a", 1))], store.load))
    assert store.data == before
    assert scores([first]) == scores([second])


def test_redelivery_after_a_restart_is_skipped_however_far_back():
    # 20 turns applied (offsets 0..19), then the consumer restarts from offset 2
    batch = [msg(turn("a", i, text=f"t{i}"), offset=i) for i in range(20)]
    results, store = run([batch, batch[2:]])
    assert results[1].duplicates == 18 and not results[1].dead_letters
    assert not results[1].enriched
    assert ConversationState.loads(store.data["a"]).turns == 20


def test_a_new_message_with_an_old_seq_is_out_of_order_not_a_redelivery():
    results, _ = run([[msg(turn("a", i), offset=i) for i in range(3)],
                      [msg({**turn("a", 1), "turn_id": "other"}, offset=7)]])
    assert [d.reason for d in results[1].dead_letters] == ["out_of_order"]


def test_echoed_text_can_be_redacted():
    proc = TurnProcessor(FakeScorer(), AlertRules(), model_name="fake", redact_pii=True)
    (result,), _ = run([[msg(turn("a", 0, text="write to bob@example.com"))]], proc)
    assert result.enriched[0].text == "write to [EMAIL]"


def test_state_tensors_carry_over_batches_and_topic_words_come_from_the_vocabulary():
    """Every state tensor the model declares is stored and fed back, across micro-batches."""
    first = [msg(turn("t", 0, text="I want a refund, refund now")),
             msg(turn("t", 1, "agent", text="thanks for waiting"))]
    second = [msg(turn("t", 2, text="this is awful"))]
    (r1, r2), store = run([first, second])
    state = store.load("t")
    assert state.tensor("n", np.int64, (1,)).tolist() == [3]
    assert state.tensor("bow", np.float32, (3,)).tolist() == [1.0, 2.0, 1.0]
    assert r1.enriched[0].topic_words == ["refund", "awful"]
    assert r2.enriched[0].topic_words == ["refund", "awful"]
    assert r2.enriched[0].label == "very_negative"


def test_no_topic_words_before_the_conversation_uses_a_vocabulary_word():
    (r1, r2), _ = run([[msg(turn("w", 0, text="hello there"))],
                       [msg(turn("w", 1, text="I want a refund"))]])
    assert r1.enriched[0].topic_words == []
    assert r2.enriched[0].topic_words[0] == "refund"


def test_explained_events_and_alerts_name_emotion_and_aspect():
    from tests.helpers import FakeExplainingScorer

    scorer = FakeExplainingScorer()
    batch = [msg(turn("x", 0, "customer", "hello, about the order")),
             msg(turn("x", 1, "agent", "sure")),
             msg(turn("x", 2, "customer", "this is awful, the refund never came")),
             msg(turn("y", 0, "customer", "awful awful the app"))]
    (result,), _ = run([batch], processor(scorer))
    assert scorer.explain_calls == [4]  # one call for the whole micro-batch
    by_turn = {(e.conversation_id, e.seq): e for e in result.enriched}
    assert by_turn[("x", 0)].emotions["labels"] == []
    assert by_turn[("x", 0)].aspects[0]["text"] == "order"
    angry = by_turn[("x", 2)]
    assert angry.emotions["labels"] == ["anger"]
    (aspect,) = angry.aspects
    assert angry.text[aspect["start"]:aspect["end"]] == "refund"
    assert result.alerts, "an awful customer turn alerts"
    for a in result.alerts:
        assert (a.emotion, a.aspect) == ("anger", by_turn[(a.conversation_id, a.seq)]
                                         .aspects[0]["text"])
        validator("alert").validate(orjson.loads(orjson.dumps(a)))
    for e in result.enriched:
        validator("enriched_turn").validate(orjson.loads(orjson.dumps(e)))


def test_without_explaining_models_the_fields_are_null():
    (result,), _ = run([[msg(turn("z", 0, "customer", "awful"))]])
    doc = orjson.loads(orjson.dumps(result.enriched[0]))
    assert doc["emotions"] is None and doc["aspects"] is None
    assert orjson.loads(orjson.dumps(result.alerts[0]))["emotion"] is None
    validator("enriched_turn").validate(doc)


def test_a_failed_explanation_fails_the_batch_for_a_retry():
    from tests.helpers import FakeExplainingScorer

    class Broken(FakeExplainingScorer):
        async def explain(self, encoded, texts):
            raise ConnectionError("triton away")

    try:
        run([[msg(turn("w", 0, "customer", "the thing"))]], processor(Broken()))
    except ConnectionError:
        pass
    else:
        raise AssertionError("the batch should fail so that it is retried")
