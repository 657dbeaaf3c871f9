"""Run the dashboard: `python -m dashboard [--flags]`. Its own settings read DASH_<NAME> (and
flags); the broker, credentials and topics are the worker's CHAT_* settings."""

from __future__ import annotations

import sys

import structlog
from aiohttp import web

from dashboard.settings import DashboardSettings
from dashboard.web import create_app
from worker import logs
from worker.settings import Settings

log = structlog.get_logger("dashboard")


def main(argv: list[str] | None = None) -> None:
    dash = DashboardSettings(_cli_parse_args=sys.argv[1:] if argv is None else argv,
                             _cli_prog_name="python -m dashboard", _cli_kebab_case=True)
    dash.check()
    settings = Settings()
    logs.configure(settings.log_level)
    app = create_app(settings, dash)
    log.info("dashboard_start", url=f"http://{dash.host}:{dash.port}/", broker=settings.broker,
             auth="token" if dash.token else "none (loopback)")
    web.run_app(app, host=dash.host, port=dash.port, print=None, access_log=None,
                shutdown_timeout=2.0)


if __name__ == "__main__":
    main()
