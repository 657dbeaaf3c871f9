"""Bad input mixed into valid traffic, one generator for the CI fuzz test
(tests/test_fuzz.py) and the full reliability run (`python -m devstack reliability`).

Every bad message is unique (so it can be traced to its DLQ entry by its original bytes) and
comes with the reason the worker must give it. Valid conversations get protocol faults too: a
producer's duplicate (skipped, no DLQ entry, no second event), a late old turn (`out_of_order`)
and a turn after the end event (`conversation_ended`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import orjson

ODD_TEXT = ["I 💔 this app 😡😡", "\u200bhidden\u200b zero width", "مرحبا، طلبي متأخر",
            "Ünïcödé ñ façade — “quotes”", "tab\tand newline\nin text", "🙂" * 50]
KINDS = 12  # bad_message cycles through this many kinds


def turn(cid: str, seq: int, role: str = "customer", text: str = "hello", **extra) -> dict:
    return {"conversation_id": cid, "turn_id": f"{cid}:{seq}", "seq": seq, "role": role,
            "text": text, "ts": "2026-11-25T10:00:00Z", **extra}


def bad_message(rng: random.Random, i: int, prefix: str = "fz-") -> tuple[bytes, bytes, str]:
    """(key, value, expected DLQ reason); each value is unique so it can be traced."""
    cid = f"{prefix}bad-{i % 40}"
    good = turn(cid, 1000 + i, text=f"bad {i}")
    kind = i % KINDS
    if kind == 0:
        return cid.encode(), b"\xff\xfe" + str(i).encode(), "invalid_utf8"
    if kind == 1:
        return cid.encode(), f'{{"conversation_id": "{cid}", "n": {i}'.encode(), "invalid_json"
    if kind == 2:
        return cid.encode(), orjson.dumps([i, "list"]), "not_an_object"
    if kind == 3:
        dropped = rng.choice(["turn_id", "role", "ts"])
        doc = {k: v for k, v in good.items() if k != dropped}
        return cid.encode(), orjson.dumps(doc), "missing_field"
    if kind == 4:
        return cid.encode(), orjson.dumps({**good, f"extra{i}": True}), "unexpected_field"
    if kind == 5:
        return cid.encode(), orjson.dumps({**good, "seq": str(i)}), "wrong_type"
    if kind == 6:
        return cid.encode(), orjson.dumps({**good, "seq": rng.choice([-i - 1, 10**9 + i])}), \
            "invalid_value"
    if kind == 7:
        return cid.encode(), orjson.dumps({**good, "role": f"bot{i}"}), "unknown_role"
    if kind == 8:
        return cid.encode(), orjson.dumps({**good, "text": ""}), "invalid_value"
    if kind == 9:
        return cid.encode(), orjson.dumps({**good, "text": "x" * 200_000}), "too_large"
    if kind == 10:
        raw = orjson.dumps(good)[:-1] + b', "ctrl": "\x01\x02"}'  # raw control characters
        return cid.encode(), raw, "invalid_json"
    return b"another-key", orjson.dumps(good), "key_mismatch"


@dataclass
class FuzzTraffic:
    traffic: list[tuple[bytes, bytes]]  # valid turns in order with bad messages between them
    faults: list[tuple[bytes, bytes, str | None]]  # sent after `traffic`; None: no DLQ entry
    valid: list[dict]  # the valid turns: each must have exactly one enriched event
    bad: list[tuple[bytes, bytes, str]] = field(default_factory=list)

    @property
    def expected_dlq(self) -> dict[bytes, str]:
        """Original bytes -> the reason the DLQ entry must carry."""
        return {value: reason for _, value, reason in self.bad + self.faults if reason}

    @property
    def messages(self) -> int:
        return len(self.traffic) + len(self.faults)


def protocol_faults(cids: list[str], texts: dict[str, str]) -> list[tuple[bytes, bytes,
                                                                          str | None]]:
    """Faults on valid conversations, cycling through three kinds: a duplicate of turn 3 (the
    same bytes a producer would resend), a late turn with an old seq and a new turn_id, and an
    end event followed by a turn."""
    out: list[tuple[bytes, bytes, str | None]] = []
    for n, cid in enumerate(cids):
        key = cid.encode()
        if n % 3 == 0:
            out.append((key, orjson.dumps(turn(cid, 3, "agent", texts[f"{cid}:3"])), None))
        elif n % 3 == 1:
            out.append((key, orjson.dumps({**turn(cid, 2), "turn_id": f"{cid}:late"}),
                        "out_of_order"))
        else:
            out.append((key, orjson.dumps({"type": "conversation_end", "conversation_id": cid,
                                           "ts": "2026-11-25T10:00:00Z"}), None))
            out.append((key, orjson.dumps(turn(cid, 99)), "conversation_ended"))
    return out


def build(seed: int, n_bad: int, conversations: int, turns: int = 15, prefix: str = "fz-",
          faulted: int | None = None) -> FuzzTraffic:
    """`conversations` valid conversations of `turns` turns (every 5th turn odd Unicode), with
    `n_bad` bad messages spread between them (about 3 after each valid turn, the rest at the
    end), and protocol faults on the first `faulted` conversations (default 3)."""
    assert turns >= 5, "protocol faults use turns 2 and 3"
    rng = random.Random(seed)
    valid = []
    for c in range(conversations):
        cid = f"{prefix}ok-{c}"
        for seq in range(turns):
            text = rng.choice(ODD_TEXT) if seq % 5 == 4 else f"turn {seq} of {cid}"
            valid.append(turn(cid, seq, "customer" if seq % 2 == 0 else "agent", text))
    bad = [bad_message(rng, i, prefix) for i in range(n_bad)]
    traffic: list[tuple[bytes, bytes]] = []
    bad_iter = iter(bad)
    for doc in valid:
        traffic.append((doc["conversation_id"].encode(), orjson.dumps(doc)))
        traffic += [b[:2] for b in (next(bad_iter, None) for _ in range(3)
                                    if rng.random() < 0.95) if b is not None]
    traffic += [b[:2] for b in bad_iter]
    cids = [f"{prefix}ok-{c}" for c in range(min(conversations, 3 if faulted is None
                                                 else faulted))]
    texts = {v["turn_id"]: v["text"] for v in valid}
    return FuzzTraffic(traffic, protocol_faults(cids, texts), valid, bad)
