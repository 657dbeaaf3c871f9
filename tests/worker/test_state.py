import numpy as np

from worker.state import RECENT_TURN_IDS, ConversationState, expired


def test_roundtrip_keeps_model_state_exactly():
    s = ConversationState("c1")
    rng = np.random.default_rng(0)
    h = rng.standard_normal(256).astype(np.float32)
    memory = rng.standard_normal((32, 256)).astype(np.float32)
    bow = np.zeros(2000, np.float32)
    bow[[3, 70, 1999]] = [1, 4, 2]
    length = np.array([7], np.int64)
    s.set_tensors({"h": h, "memory": memory, "bow": bow, "memory_len": length})
    s.applied("t0", 0)
    back = ConversationState.loads(s.dumps())
    assert np.array_equal(back.tensor("h", np.float32, (256,)), h)
    assert np.array_equal(back.tensor("memory", np.float32, (32, 256)), memory)
    assert np.array_equal(back.tensor("bow", np.float32, (2000,)), bow)
    assert np.array_equal(back.tensor("memory_len", np.int64, (1,)), length)
    assert back.last_seq == 0 and back.seen("t0") and back.turns == 1
    assert len(ConversationState("c2", tensors={"bow": s.tensors["bow"]}).dumps()) < 600


def test_new_state_is_zeros_and_recent_ids_are_bounded():
    s = ConversationState("c1")
    assert not s.tensor("h", np.float32, (8,)).any()
    for i in range(RECENT_TURN_IDS + 5):
        s.applied(f"t{i}", i)
    assert len(s.recent_turn_ids) == RECENT_TURN_IDS and s.seen(f"t{RECENT_TURN_IDS + 4}")
    assert not s.seen("t0")


def test_end_drops_model_state():
    s = ConversationState("c1")
    s.set_tensors({"h": np.ones(4, np.float32)})
    s.end()
    assert s.ended and s.tensors == {}


def test_expiry_picks_idle_states_of_owned_partitions_only():
    def raw(cid: str, partition: int, updated_at: float) -> tuple[bytes, bytes]:
        s = ConversationState(cid)
        s.consume(partition, 5, updated_at)
        return cid.encode(), s.dumps()

    items = [raw("old-mine", 1, 100.0), raw("new-mine", 1, 950.0), raw("old-theirs", 2, 100.0)]
    assert expired(items, now=1000.0, idle_s=600.0, partitions={0, 1}) == [(b"old-mine", 1)]
