"""`python -m devstack reliability`: its pure parts (fuzz generator, soak schedule, metrics
parsing, report merging) and the smoke run end to end on the real processes, so the command
cannot rot. The smoke run checks that every figure is measured and that no part loses or
changes a turn."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from collections import Counter, defaultdict

import orjson
import pytest

from devstack import fuzz
from devstack.reliability import (
    SoakSchedule,
    growth_pct,
    markdown,
    merge,
    metric,
    summary,
)
from training.data import Dialogue, Utterance
from training.paths import ROOT
from worker.ingest import parse

KEYS = ("kill9_restarts", "turns_in", "turns_missing", "score_mismatches", "alerts_missing",
        "fuzz_inputs", "crashes", "bad_not_in_dlq", "valid_not_enriched", "soak_minutes",
        "soak_conversations", "rss_growth_pct")


def test_fuzz_messages_are_unique_and_cover_every_reason():
    t = fuzz.build(seed=3, n_bad=1200, conversations=9, turns=15, prefix="t-", faulted=9)
    values = [v for _, v in t.traffic] + [v for _, v, _ in t.faults]
    bad_values = [v for _, v, _ in t.bad]
    assert len(set(bad_values)) == len(bad_values) == 1200  # traceable by original bytes
    assert len(t.traffic) == 1200 + len(t.valid)  # every bad message is sent once
    assert set(bad_values) <= set(values)
    reasons = Counter(t.expected_dlq.values())
    assert set(reasons) == {"invalid_utf8", "invalid_json", "not_an_object", "missing_field",
                            "unexpected_field", "wrong_type", "invalid_value", "unknown_role",
                            "too_large", "key_mismatch", "out_of_order", "conversation_ended"}
    assert reasons["out_of_order"] == reasons["conversation_ended"] == 3
    # valid turns keep their conversation's order in the traffic
    order = defaultdict(list)
    for key, value in t.traffic:
        if key.startswith(b"t-ok-"):
            order[key].append(orjson.loads(value)["seq"])
    assert all(seqs == sorted(seqs) for seqs in order.values())


@pytest.mark.parametrize("i", range(fuzz.KINDS))
def test_each_fuzz_kind_is_rejected_with_its_reason_by_the_ingest_code(i):
    key, value, reason = fuzz.bad_message(random.Random(i), i)
    got = parse(value, key, 65536)
    assert getattr(got, "reason", None) == reason, got


def dialogues(n: int, turns: int) -> list[Dialogue]:
    return [Dialogue(f"d{i}", tuple(Utterance("customer" if t % 2 == 0 else "agent", f"t{t}")
                                    for t in range(turns))) for i in range(n)]


def test_soak_schedule_keeps_every_slot_live_at_a_steady_pace():
    s = SoakSchedule(dialogues(5, 6), slots=20, seed=1, abandon_every=4)
    sent = [s.next() for _ in range(20 * 30)]
    by_cid: dict[str, list[dict]] = defaultdict(list)
    for n, (key, doc) in enumerate(sent):
        assert key == doc["conversation_id"].encode()
        assert doc["conversation_id"].startswith(f"soak-{n % 20}-")  # slot = n % slots
        by_cid[doc["conversation_id"]].append(doc)
    for cid, docs in by_cid.items():
        seqs = [d["seq"] for d in docs if "seq" in d]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), cid
        ends = [d for d in docs if d.get("type") == "conversation_end"]
        assert len(ends) <= 1 and (not ends or docs[-1] is ends[0])
    assert s.started == len(by_cid) and s.abandoned == s.started // 4
    assert s.turns + s.ended == len(sent)
    # first conversations start at a random turn, so they do not all end together
    assert len({docs[0]["seq"] for cid, docs in by_cid.items() if cid.endswith("-0")}) > 1


def test_metric_parser_sums_matching_series():
    text = "\n".join(['# HELP chat_consumer_lag lag', '# TYPE chat_consumer_lag gauge',
                      'chat_consumer_lag{partition="0",topic="t"} 3.0',
                      'chat_consumer_lag{partition="1",topic="t"} 4.0',
                      'chat_dead_letters_total{reason="too_large"} 2.0',
                      'chat_messages_in_total 10.0', 'chat_messages_in_created 1.7e9'])
    assert metric(text, "chat_consumer_lag") == 7.0
    assert metric(text, "chat_consumer_lag", partition="1") == 4.0
    assert metric(text, "chat_messages_in_total") == 10.0
    assert metric(text, "chat_dead_letters_total", reason="invalid_json") is None
    assert growth_pct(100.0, 103.0) == 3.0 and growth_pct(None, 1.0) is None


def test_parts_run_separately_merge_into_one_report(tmp_path):
    path = tmp_path / "rel.json"
    merge(path, {"soak": {"command": "c1", "soak_minutes": 30.2, "soak_conversations": 1000,
                          "rss_growth_pct": 1.5, "crashes": 0, "samples": []},
                 "machine": {"cpu_count": 2}})
    r = merge(path, {"fuzz": {"command": "c2", "fuzz_inputs": 10, "bad_not_in_dlq": 0,
                              "valid_not_enriched": 0, "crashes": 0}})
    assert r["soak"]["command"] == "c1" and r["fuzz"]["command"] == "c2"
    assert r["soak_minutes"] == 30.2 and r["fuzz_inputs"] == 10 and r["crashes"] == 0
    assert r["kill9_restarts"] is None  # not run yet
    assert set(KEYS) <= set(summary(r))
    md = path.with_suffix(".md").read_text()
    assert "| rss_growth_pct | 1.50 |" in md and "Command: `c2`" in md
    assert markdown(r) == md


@pytest.mark.integration
def test_smoke_reliability_run_measures_every_figure(tmp_path):
    stem = tmp_path / "rel"
    subprocess.run([sys.executable, "-m", "devstack", "reliability", "--smoke", "--out",
                    str(stem)], check=True, cwd=ROOT, capture_output=True, timeout=600)
    r = json.loads(stem.with_suffix(".json").read_text())
    assert set(KEYS) <= set(r)
    assert all(r[k] is not None for k in KEYS)
    assert r["kill9_restarts"] == 1 and r["turns_in"] > 0 and r["crashes"] == 0
    assert r["rebalances"] == 1 and r["rebalance_turns_missing"] == 0
    assert r["rebalance_score_mismatches"] == 0
    t = r["triton_outage"]
    assert t["not_ready_seen"] and t["recovered_ready_after_s"] is not None
    assert t["turns_missing"] == t["score_mismatches"] == t["alerts_missing"] == 0
    assert t["triton_retries"]["transient"] > 0
    f = r["fuzz"]
    assert f["fuzz_inputs"] > 200 and f["bad_not_in_dlq"] == f["wrong_reason"] == 0
    assert f["valid_not_enriched"] == f["valid_enriched_twice"] == 0
    s = r["soak"]
    assert s["turns_missing"] == 0 and s["rss_growth_pct"] is not None
    assert len(s["samples"]) >= 3 and all(x["consumer_lag"] is None or x["consumer_lag"] >= 0
                                          for x in s["samples"])
    assert s["table_max_after_warmup"] <= 2 * s["soak_conversations"]  # bounded
    b = r["broker_restart"]
    assert b["worker_exits"] == 0 and b["outputs_resumed_after_s"] is not None
    assert r["turns_missing"] == r["score_mismatches"] == r["alerts_missing"] == 0
    assert b["turns_missing"] == b["score_mismatches"] == b["alerts_missing"] == 0
    md = stem.with_suffix(".md").read_text()
    assert "| turns_missing |" in md and "python -m devstack reliability --smoke" in md


def test_dlq_digest_matches_original_bytes():
    # the fuzz part traces DLQ entries by a digest of their original bytes
    from devstack.reliability import digest

    raw = b"\xff\xfe123"
    entry = {"original_b64": base64.b64encode(raw).decode()}
    assert digest(base64.b64decode(entry["original_b64"])) == digest(raw)
