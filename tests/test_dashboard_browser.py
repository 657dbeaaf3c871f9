"""The live dashboard in a real headless browser (Debian's chromium, driven by Playwright),
fed by the real worker: the demo's conversations appear, an alert shows within 2 s of its
event, chat text renders as text. Screenshots go to .devstack/screenshots/."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from devstack.procs import STATE_DIR
from devstack.replay import conversation_messages, pick_dialogues, replay
from tests.conftest import send
from tests.helpers import turn

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# a closed network: no background connections, no sandbox as root
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = STATE_DIR / "screenshots"
# records when each alert entered the page, by the page's own clock
WATCH_ALERTS = """
window.__alertSeen = {};
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.dataset && n.dataset.alertId && !(n.dataset.alertId in window.__alertSeen)) {
      window.__alertSeen[n.dataset.alertId] = Date.now();
    }
  }
}).observe(document, {childList: true, subtree: true});
"""
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & "ok"'
ANGRY = ["This is the worst service I have ever had. I want a full refund right now.",
         "Unbelievable. Nobody answers, I am furious and I am cancelling everything.",
         "You people are useless. Refund me today or I will report you."]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def dashboard(stack) -> str:
    return stack.start_dashboard()


def off_loop(fn, *args):  # type: ignore[no-untyped-def]
    """Run `fn` in a thread: Playwright's sync API holds an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def snapshot(url: str) -> dict:
    with urllib.request.urlopen(url + "api/snapshot", timeout=5) as r:
        return orjson.loads(r.read())


# the words the page shows for each alert rule (dashboard/static/app.js RULES)
RULE_WORDS = {"negative_level": "unhappy", "negative_sentiment": "complaint",
              "negative_streak": "negative streak", "sharp_drop": "sharp drop"}


def test_conversations_alerts_and_hostile_text(stack, outputs, dashboard, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(WATCH_ALERTS)
    page.goto(dashboard)
    page.wait_for_selector("#feed.up", timeout=30_000)

    # the demo's conversations, through the real worker
    dialogues = pick_dialogues(3, seed=5)
    messages = [conversation_messages(d, prefix="dash-") for d in dialogues]
    off_loop(asyncio.run, replay(stack.bootstrap, stack.settings.topic_turns, messages, speed=0))
    for d in dialogues:
        page.wait_for_selector(f'#conversations tr[data-conversation-id="dash-{d.id}"]',
                               timeout=60_000)

    # an angry customer after an agent's greeting: the worker raises alerts
    cid = "dash-angry"
    angry = [turn(cid, 0, "agent", "Hello, how can I help you today?")]
    angry += [turn(cid, i + 1, "customer" if i % 2 == 0 else "agent", text)
              for i, text in enumerate([ANGRY[0], "I am sorry to hear that.", ANGRY[1],
                                        "Let me check.", ANGRY[2]])]
    hostile = turn("dash-hostile", 0, "customer", HOSTILE)
    off_loop(send, stack.bootstrap, stack.settings.topic_turns,
             [(d["conversation_id"].encode(), orjson.dumps(d)) for d in [*angry, hostile]])
    alerts = outputs.wait("alerts", lambda d: d["conversation_id"] == cid, 1, timeout=60)

    # each alert is on the page within 2 s of the worker producing it
    by_id = {a["alert_id"]: a for a in snapshot(dashboard)["alerts"]}
    for a in alerts:
        page.wait_for_selector(f'#alerts li[data-alert-id="{a["alert_id"]}"]', timeout=10_000)
        seen_ms = page.evaluate("(id) => window.__alertSeen[id]", a["alert_id"])
        raised_ms = by_id[a["alert_id"]]["raised_ms"]
        assert seen_ms - raised_ms <= 2000, f"alert shown {seen_ms - raised_ms} ms after"
        shown = page.locator(f'#alerts li[data-alert-id="{a["alert_id"]}"]').text_content()
        for why in (a["emotion"], a["aspect"]):  # "anger · refund" when the turn has them
            assert why is None or why in shown
        rules = page.locator(f'#alerts li[data-alert-id="{a["alert_id"]}"] .rules')
        assert rules.text_content() == " + ".join(RULE_WORDS[r] for r in a["rules"])
        assert rules.get_attribute("title") == ", ".join(a["rules"])
    page.wait_for_timeout(300)  # the risk-sorted table refreshes every 250 ms
    assert page.locator("#conversations tbody tr").first.get_attribute(
        "data-conversation-id") in {a["conversation_id"] for a in snapshot(dashboard)["alerts"]}
    page.screenshot(path=str(SHOTS / "dashboard.png"))

    # one conversation's turns on click; hostile text is text, nothing of it runs
    page.click('#conversations tr[data-conversation-id="dash-hostile"]', timeout=30_000)
    page.wait_for_selector("#turns li")
    shown = page.locator("#turns li .text").first.text_content()
    assert shown == HOSTILE
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#turns script, #turns img, #alerts script, #alerts img").count() == 0
    page.click(f'#conversations tr[data-conversation-id="{cid}"]')
    page.wait_for_function("() => document.querySelectorAll('#turns li').length >= 6")
    assert "satisfaction" in page.locator("#turns li").nth(1).text_content()
    events = outputs.select("enriched", lambda d: d["conversation_id"] == cid)
    if any(e["emotions"]["labels"] for e in events):
        assert page.locator("#turns li .why", has_text="emotions:").count() >= 1
    marks = sum(len(e["aspects"]) for e in events)
    assert page.locator("#turns li mark").count() == marks  # each aspect term marked
    page.screenshot(path=str(SHOTS / "conversation.png"))
    assert not errors
    page.close()


def test_the_page_reconnects_to_its_stream(stack, dashboard, browser):
    """A dropped event stream (the dashboard restarted) comes back with a fresh snapshot."""
    page = browser.new_page()
    page.goto(dashboard)
    page.wait_for_selector("#feed.up", timeout=30_000)
    stack.dashboard.stop()
    page.wait_for_selector("#feed.down", timeout=10_000)
    port = stack.dashboard.web_port
    t0 = time.monotonic()
    stack.start_dashboard(port)
    page.wait_for_selector("#feed.up", timeout=30_000)  # EventSource retries by itself
    page.wait_for_selector("#conversations tbody tr", timeout=30_000)
    assert time.monotonic() - t0 < 30
    page.close()
