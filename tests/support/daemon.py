"""Running the daemon as a real process on loopback, and talking to it like a client would.

The daemon listens on port 0 and says which port it got through the service manager's
readiness protocol (``NOTIFY_SOCKET``, see service/daemon/readiness.py): no port is guessed.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.waiting import until

BIN = Path(sys.executable).parent
NOTARYD = BIN / "notaryd"
FAKE_SERVE = Path(__file__).resolve().parents[1] / "daemon" / "fake_serve.py"


def notaryd() -> str:
    """The installed ``notaryd`` console script (``make test`` installs it; tests never do)."""
    if not NOTARYD.exists():
        pytest.fail(f"{NOTARYD} is missing: install the package first (`make .venv/.installed-stamp`)")
    return str(NOTARYD)


class ServiceManager:
    """The manager's end of the readiness protocol: a datagram socket named in NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.address = f"@notaryd-test-{secrets.token_hex(8)}"  # abstract: no path-length limit
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.bind("\0" + self.address[1:])
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next message as its ``KEY=value`` fields, or None if none came within ``timeout``."""
        readable, _, _ = select.select([self.socket], [], [], timeout)
        if not readable:
            return None
        datagram = self.socket.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in datagram.splitlines() if "=" in line)
        self.messages.append(fields)
        return fields

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float, log: Callable[[], str]) -> int:
        """The port ``proc`` listens on, from its READY=1 message; fails if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(timeout=0.1)
            if message and message.get("READY") == "1":
                return int(message["STATUS"].rsplit(":", 1)[1])
            if proc.poll() is not None:
                raise RuntimeError(f"notaryd serve exited with {proc.returncode}:\n{log()}")
        proc.kill()
        proc.wait()
        raise RuntimeError(f"notaryd serve did not say READY=1 in {timeout} s:\n{log()}")

    def drain(self) -> list[dict[str, str]]:
        while self.receive(0) is not None:
            pass
        return self.messages

    def close(self) -> None:
        self.socket.close()


class Daemon:
    """``notaryd serve`` (or the fake-pipeline variant) as a subprocess in its own temp world.

    Every instance is listed in ``Daemon.live`` so an autouse fixture can stop whatever a test
    left running, even when the test failed half-way.
    """

    live: ClassVar[list[Daemon]] = []

    def __init__(self, root: Path, *, fake: bool = True, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.archives = root / "archives"
        self.state_dir = root / "state"
        self.archives.mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        self.fake = fake
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root / "home"),
            "NOTARYD_STATE_DIR": str(self.state_dir),
            "NOTARYD_LISTEN": "127.0.0.1:0",
            "NOTARYD_ALLOWED_ROOTS": str(self.archives),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.listen = self.env["NOTARYD_LISTEN"]  # what each start asks for; port 0: any free one
        self.port: int | None = None  # where the running daemon listens, from its READY message
        self.manager: ServiceManager | None = None
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.nofile: int | None = None  # RLIMIT_NOFILE of the process, like launchd's plist
        Daemon.live.append(self)

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Daemon:
        """Starts the process and returns once it says it is ready (READY=1 on NOTIFY_SOCKET)."""
        cmd = [sys.executable, str(FAKE_SERVE)] if self.fake else [notaryd(), "serve"]
        if self.manager is not None:
            self.manager.close()
        self.manager = ServiceManager()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        env = {**self.env, "NOTARYD_LISTEN": self.listen, "NOTIFY_SOCKET": self.manager.address}
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        log.close()
        if self.nofile is not None:  # at once: start-up opens only a handful of descriptors
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.starts += 1
        self.port = self.manager.wait_ready(self.proc, timeout, self.log)
        self.env["NOTARYD_LISTEN"] = f"127.0.0.1:{self.port}"  # for clients run with self.env
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.close()
            self.manager = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- client --------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self.env.get("NOTARYD_API_TOKEN") or (self.state_dir / "api-token").read_text().strip()

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = "default", timeout: float = 30
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(raw)
        return response.status, raw.decode(errors="replace")

    def submit(self, path: Path, **fields: Any) -> dict[str, Any]:
        status, job = self.request("POST", "/v1/jobs", {"path": str(path), **fields})
        assert status == 201, job
        return dict(job)

    def job(self, job_id: str) -> dict[str, Any]:
        status, job = self.request("GET", f"/v1/jobs/{job_id}")
        assert status == 200, job
        return dict(job)

    def wait_for(self, job_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        """The job once it is in one of ``states``."""
        return until(lambda: job if (job := self.job(job_id))["state"] in states else None,
                     within=timeout, what=f"job {job_id} in {states}", detail=lambda: self.log()[-4000:])

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [notaryd(), *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        )

    def events(self, query: str = "", timeout: float = 30) -> Generator[tuple[str, str], None, None]:
        """(event, data) pairs of ``GET /v1/events``: first ("open", "") once connected, then
        ("job", json) per event and ("heartbeat", "") per heartbeat comment."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/v1/events" + query, headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("Content-Type", "").startswith("text/event-stream")
            yield "open", ""
            event, data = "", ""
            while True:
                line = response.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith(": heartbeat"):
                    yield "heartbeat", ""
                elif text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:"):
                    data = text[5:].strip()
                elif not text and event:
                    yield event, data
                    event, data = "", ""
        finally:
            conn.close()

    def archive(self, name: str, size: int = 100_000) -> Path:
        """A file under the allowed root: 1 MiB of random bytes at most, then a sparse tail."""
        path = self.archives / name
        with open(path, "wb") as f:
            f.write(os.urandom(min(size, 1 << 20)))
            if size > 1 << 20:
                f.truncate(size)
        return path
