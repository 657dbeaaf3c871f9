"""The dashboard process against a real broker that restarts: its feed reconnects by itself,
reads back what the new broker holds and goes on; /healthz says when the link is down."""

from __future__ import annotations

import sys
import time
import urllib.request

import orjson
import pytest

from devstack.broker import Tansu, create_worker_topics
from devstack.procs import Server, free_port
from tests.conftest import send
from tests.dashboard.test_board import alert, turn
from worker.settings import Settings

pytestmark = pytest.mark.integration


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as r:
        return orjson.loads(r.read())


def until(check, timeout: float = 45.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not true after {timeout}s")


def shown(snap: dict) -> tuple[list[str], int]:
    """The conversation ids and the number of alerts on the board."""
    return [c["id"] for c in snap["conversations"]], len(snap["alerts"])


def publish(bootstrap: str, settings: Settings, *docs: dict) -> None:
    enriched = [d for d in docs if "event_id" in d and "alert_id" not in d]
    alerts = [d for d in docs if "alert_id" in d]
    send(bootstrap, settings.topic_enriched,
         [(d["conversation_id"].encode(), orjson.dumps(d)) for d in enriched])
    send(bootstrap, settings.topic_alerts,
         [(d["conversation_id"].encode(), orjson.dumps(d)) for d in alerts])


def test_the_feed_survives_a_broker_restart():
    settings = Settings()
    broker = Tansu(free_port()).start()
    port = free_port()
    dash = Server("dashboard-restart", [sys.executable, "-m", "dashboard"], env={
        "CHAT_BROKER": f"kafka://{broker.bootstrap}", "DASH_PORT": str(port)})
    base = f"http://127.0.0.1:{port}/"
    try:
        create_worker_topics(broker.bootstrap, settings)
        dash.start()
        until(lambda: get(base + "healthz")["connected"])
        publish(broker.bootstrap, settings, turn("before", 0, -0.5), alert("before", 0))
        # both topics read before the broker goes (Tansu keeps nothing)
        until(lambda: shown(get(base + "api/snapshot")) == (["before"], 1))

        broker.stop()  # Tansu keeps nothing: the new broker starts empty
        until(lambda: not get(base + "healthz")["connected"], timeout=20)
        broker.start()
        create_worker_topics(broker.bootstrap, settings)
        until(lambda: get(base + "healthz")["connected"])
        publish(broker.bootstrap, settings, turn("after", 0, -0.5))
        until(lambda: "after" in [c["id"] for c in get(base + "api/snapshot")["conversations"]])
        snap = get(base + "api/snapshot")
        assert {c["id"] for c in snap["conversations"]} == {"before", "after"}
        assert len(snap["alerts"]) == 1  # nothing lost, nothing doubled
    finally:
        dash.stop()
        broker.stop()
