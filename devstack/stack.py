"""Bring up the embedded local default: Tansu + tritonserver + the worker, all on 127.0.0.1."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass, field

from devstack.broker import Tansu, create_worker_topics
from devstack.procs import STATE_DIR, Server, free_port, port_open
from devstack.triton import Triton
from worker.settings import Settings

DASHBOARD_PORT = 8090


@dataclass
class Stack:
    broker: Tansu
    triton: Triton
    settings: Settings
    workers: list[Server] = field(default_factory=list)
    dashboard: Server | None = None

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def worker_env(self, **overrides: str) -> dict[str, str]:
        env = {"CHAT_BROKER": f"kafka://{self.bootstrap}", "CHAT_BROKER_PROFILE": "tansu",
               "CHAT_TRITON_URL": self.triton.grpc_url,
               "CHAT_PARTITIONS": str(self.settings.partitions)}
        env.update(overrides)
        return env

    def start_worker(self, name: str = "worker", **overrides: str) -> Server:
        """Start one worker process and wait until Faust reports it ready (web /ready)."""
        port = free_port()
        env = self.worker_env(CHAT_WEB_PORT=str(port),
                              CHAT_DATA_DIR=str(STATE_DIR / "data" / name), **overrides)
        server = Server(name, [sys.executable, "-m", "worker"], env=env).start()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready/", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        server.wait_until(ready, timeout=120)
        server.web_port = port
        self.workers.append(server)
        return server

    def start_dashboard(self, port: int | None = None, **overrides: str) -> str:
        """Start the dashboard on 127.0.0.1; return its URL once it answers."""
        port = port or (DASHBOARD_PORT if not port_open(DASHBOARD_PORT) else free_port())
        env = self.worker_env(DASH_PORT=str(port), DASH_HOST="127.0.0.1", **overrides)
        server = Server("dashboard", [sys.executable, "-m", "dashboard"], env=env).start()
        url = f"http://127.0.0.1:{port}/"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        server.wait_until(ready, timeout=60)
        server.web_port = port
        self.dashboard = server
        return url

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
        for w in self.workers:
            w.stop()
        self.triton.stop()
        self.broker.stop()


def start_stack(settings: Settings | None = None, workers: int = 1) -> Stack:
    settings = settings or Settings(broker_profile="tansu")
    broker = Tansu().start()
    try:
        triton = Triton().start()
    except Exception:
        broker.stop()
        raise
    stack = Stack(broker, triton, settings)
    try:
        create_worker_topics(broker.bootstrap, settings)
        for i in range(workers):
            stack.start_worker(f"worker-{i}" if i else "worker")
    except Exception:
        stack.stop()
        raise
    return stack
