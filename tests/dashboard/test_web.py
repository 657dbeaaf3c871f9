"""The dashboard's HTTP side: authentication, headers, the snapshot and the event stream."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dashboard.settings import DashboardSettings
from dashboard.web import BOARD, FEED, create_app
from tests.dashboard.test_board import alert, turn
from worker.settings import Settings


def run(dash: DashboardSettings, check) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        app = create_app(Settings(), dash, consume=False)
        app[BOARD].add_turn(turn("c1", 0, -0.5, text="<script>alert(1)</script>"))
        async with TestClient(TestServer(app)) as client:
            await check(client, app)

    asyncio.run(go())


def test_open_on_loopback_without_a_token():
    async def check(client, app):  # type: ignore[no-untyped-def]
        r = await client.get("/api/snapshot")
        assert r.status == 200
        body = await r.json()
        assert body["conversations"][0]["id"] == "c1"
        assert "script-src" not in r.headers["Content-Security-Policy"]  # 'self' only
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
        page = await client.get("/")
        assert page.status == 200 and "app.js" in await page.text()

    run(DashboardSettings(), check)


def test_a_token_guards_every_page_and_the_stream():
    async def check(client, app):  # type: ignore[no-untyped-def]
        for path in ("/", "/api/snapshot", "/api/conversations/c1", "/events",
                     "/static/app.js"):
            assert (await client.get(path)).status == 401, path
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/login?token=wrong", allow_redirects=False)).status == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/api/snapshot", headers=bearer)).status == 200
        r = await client.get("/login?token=s3cret", allow_redirects=False)
        assert r.status == 302 and "HttpOnly" in r.headers["Set-Cookie"]
        assert (await client.get("/api/snapshot")).status == 200  # the cookie now

    run(DashboardSettings(token="s3cret"), check)


def test_outside_loopback_a_token_is_required():
    with pytest.raises(SystemExit, match="DASH_TOKEN"):
        DashboardSettings(host="0.0.0.0").check()
    DashboardSettings(host="0.0.0.0", token="t").check()
    DashboardSettings(host="::1").check()
    DashboardSettings(host="localhost").check()


def test_the_stream_sends_a_snapshot_then_updates():
    async def check(client, app):  # type: ignore[no-untyped-def]
        r = await client.get("/events")
        assert r.headers["Content-Type"].startswith("text/event-stream")

        async def next_event() -> tuple[str, dict]:
            name, data = "", b""
            while True:
                line = (await r.content.readline()).rstrip(b"\r\n")
                if line.startswith(b"event:"):
                    name = line.split(b":", 1)[1].strip().decode()
                elif line.startswith(b"data:"):
                    data = line.split(b":", 1)[1].strip()
                elif not line and name:
                    return name, orjson.loads(data)

        name, snap = await asyncio.wait_for(next_event(), 5)
        assert name == "snapshot" and snap["conversations"][0]["id"] == "c1"
        feed = app[FEED]
        raised_ms = int(time.time() * 1000)
        feed.apply("chat.alerts", orjson.dumps(alert("c1", 0)), raised_ms)
        feed.apply("chat.turns.enriched", b"{not json")  # skipped, not fatal
        name, update = await asyncio.wait_for(next_event(), 5)
        assert name == "alert" and update["alert"]["raised_ms"] == raised_ms
        assert update["alert"]["text"] == "<script>alert(1)</script>"  # data, escaped by page
        r.close()

    run(DashboardSettings(), check)


def test_a_browser_that_falls_behind_is_cut_loose():
    from dashboard.feed import Hub

    hub = Hub(size=2)
    q = hub.join()
    for i in range(3):
        hub.publish("turn", {"i": i})
    assert q not in hub.clients
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[-1] is None  # its stream ends and the page reconnects from a snapshot
