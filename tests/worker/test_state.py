import numpy as np

from worker.state import RECENT_TURN_IDS, ConversationState, expired


def test_roundtrip_keeps_hidden_state_exactly():
    s = ConversationState("c1")
    h = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    s.set_hidden(h)
    s.applied("t0", 0)
    back = ConversationState.loads(s.dumps())
    assert np.array_equal(back.hidden(128), h)
    assert back.last_seq == 0 and back.seen("t0") and back.turns == 1
    assert len(s.dumps()) < 1500  # a few hundred bytes per conversation


def test_new_state_is_zeros_and_recent_ids_are_bounded():
    s = ConversationState("c1")
    assert not s.hidden(8).any()
    for i in range(RECENT_TURN_IDS + 5):
        s.applied(f"t{i}", i)
    assert len(s.recent_turn_ids) == RECENT_TURN_IDS and s.seen(f"t{RECENT_TURN_IDS + 4}")
    assert not s.seen("t0")


def test_end_drops_model_state():
    s = ConversationState("c1")
    s.set_hidden(np.ones(4, np.float32))
    s.end()
    assert s.ended and s.h_b64 is None


def test_expiry_picks_idle_states_of_owned_partitions_only():
    def raw(cid: str, partition: int, updated_at: float) -> tuple[bytes, bytes]:
        s = ConversationState(cid)
        s.consume(partition, 5, updated_at)
        return cid.encode(), s.dumps()

    items = [raw("old-mine", 1, 100.0), raw("new-mine", 1, 950.0), raw("old-theirs", 2, 100.0)]
    assert expired(items, now=1000.0, idle_s=600.0, partitions={0, 1}) == [(b"old-mine", 1)]
