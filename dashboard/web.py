"""The dashboard's HTTP side (aiohttp): the page, a JSON snapshot, one conversation's turns,
and a server-sent event stream of updates. Token authentication when one is configured."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from dashboard.board import Board
from dashboard.feed import Feed, Hub
from dashboard.settings import DashboardSettings
from worker.settings import Settings

STATIC = Path(__file__).parent / "static"
COOKIE = "dash_token"
OPEN_PATHS = {"/healthz", "/login"}
# the page loads only its own script and style: injected markup could not run even if some
# text were ever rendered as HTML (it is not: the page sets textContent only)
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}

BOARD = web.AppKey("board", Board)
FEED = web.AppKey("feed", Feed)
HUB = web.AppKey("hub", Hub)
DASH = web.AppKey("dash", DashboardSettings)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _authorised(request: web.Request, token: str) -> bool:
    given = request.cookies.get(COOKIE, "")
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth.removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def guard(request: web.Request, handler):  # type: ignore[no-untyped-def]
    dash = request.app[DASH]
    token = dash.token.get_secret_value() if dash.token else ""
    if token and request.path not in OPEN_PATHS and not _authorised(request, token):
        return web.Response(status=401, text="unauthorised: open /login?token=... once\n",
                            headers={"WWW-Authenticate": "Bearer"})
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


async def login(request: web.Request) -> web.Response:
    """Trade a token in the URL for an HttpOnly cookie, so the event stream can use it."""
    dash = request.app[DASH]
    token = dash.token.get_secret_value() if dash.token else ""
    given = request.query.get("token", "")
    if token and not hmac.compare_digest(given.encode(), token.encode()):
        return web.Response(status=401, text="wrong token\n")
    response = web.Response(status=302, headers={"Location": "/"})
    response.set_cookie(COOKIE, given, httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def snapshot(request: web.Request) -> web.Response:
    return _json({**request.app[BOARD].snapshot(), "status": request.app[FEED].status()})


async def conversation(request: web.Request) -> web.Response:
    detail = request.app[BOARD].detail(request.match_info["cid"])
    return _json(detail) if detail else _json({"error": "unknown conversation"}, 404)


async def healthz(request: web.Request) -> web.Response:
    return _json(request.app[FEED].status())


async def events(request: web.Request) -> web.StreamResponse:
    """Snapshot first, then every update, until the browser goes or falls too far behind."""
    hub = request.app[HUB]
    queue = hub.join()
    try:
        async with sse_response(request, headers=HEADERS, ping_interval=10) as stream:
            snap = {**request.app[BOARD].snapshot(), "status": request.app[FEED].status()}
            await stream.send(orjson.dumps(snap).decode(), event="snapshot")
            while stream.is_connected():
                item = await queue.get()
                if item is None:
                    break
                name, data = item
                await stream.send(orjson.dumps(data).decode(), event=name)
        return stream
    finally:
        hub.leave(queue)


def create_app(settings: Settings, dash: DashboardSettings,
               consume: bool = True) -> web.Application:
    """The app; `consume=False` leaves the Kafka feed off (the board is filled by hand)."""
    app = web.Application(middlewares=[guard])
    board = Board(dash.max_conversations, dash.max_turns, dash.max_alerts, dash.ttl_s)
    hub = Hub(dash.client_queue)
    app[BOARD], app[HUB], app[DASH] = board, hub, dash
    app[FEED] = Feed(settings, board, hub, dash.group_id, dash.ttl_s)
    app.router.add_get("/", index)
    app.router.add_get("/login", login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/conversations/{cid}", conversation)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", STATIC)
    if consume:
        app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application):  # type: ignore[no-untyped-def]
    feed = app[FEED]
    tasks = [asyncio.create_task(feed.run()), asyncio.create_task(feed.expire_forever())]
    yield
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
