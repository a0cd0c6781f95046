"""Running the daemon as a real process on loopback, and talking to it like a client would."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any, ClassVar

BIN = Path(sys.executable).parent
NOTARYD = BIN / "notaryd"
FAKE_SERVE = Path(__file__).with_name("fake_serve.py")


def ensure_notaryd_installed() -> None:
    if not NOTARYD.exists():
        subprocess.run(
            [str(BIN / "pip"), "install", "-e", str(Path(__file__).resolve().parents[2]), "--no-deps", "-q"],
            check=True,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.port = free_port()
        self.fake = fake
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root / "home"),
            "NOTARYD_STATE_DIR": str(self.state_dir),
            "NOTARYD_LISTEN": f"127.0.0.1:{self.port}",
            "NOTARYD_ALLOWED_ROOTS": str(self.archives),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.nofile: int | None = None  # RLIMIT_NOFILE of the process, like launchd's plist
        Daemon.live.append(self)

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Daemon:
        ensure_notaryd_installed()
        cmd = [sys.executable, str(FAKE_SERVE)] if self.fake else [str(NOTARYD), "serve"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        log.close()
        if self.nofile is not None:  # at once: start-up opens only a handful of descriptors
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                status, _ = self.request("GET", "/healthz", token=None)
                if status == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"daemon did not come up in {timeout} s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
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

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it contains ``text`` (the daemon listens before it logs its start-up)."""
        deadline = time.monotonic() + timeout
        while text not in (current := self.log()):
            assert time.monotonic() < deadline, f"{text!r} never appeared in the log:\n{current}"
            time.sleep(0.05)
        return current

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
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.1)

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(NOTARYD), *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
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
        path = self.archives / name
        with open(path, "wb") as f:
            f.write(os.urandom(min(size, 1 << 20)))
            if size > 1 << 20:
                f.truncate(size)
        return path
