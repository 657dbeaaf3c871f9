"""Start a local server process with its log kept, wait until it is healthy, stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("CHAT_DEVSTACK_DIR", ROOT / ".devstack"))


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1, never one this process was given before: the kernel may hand
    the same ephemeral port to two binds in a row, and Triton refuses HTTP == metrics port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Server:
    """One child process: its own process group, log file under .devstack/logs/."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name, self.argv = name, argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or ROOT
        self.log_path = STATE_DIR / "logs" / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.web_port: int | None = None  # a worker's health/metrics port

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        log.close()
        return self

    def wait_until(self, healthy: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"log: {self.log_path}\n{self.tail()}")
            if healthy():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s; log: {self.log_path}\n"
                           f"{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if not self.running:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
