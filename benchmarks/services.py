"""The sink and the network shaper, each in its own process, started and stopped by the harness.

``SinkProcess`` runs ``python -m benchmarks.sink`` (the discarding S3 endpoint), over HTTPS
when given the files of ``benchmarks.tls``.
``LinkProcess`` runs ``python -m benchmarks.linkshaper`` (a TCP-level link: cap and round
trip, TLS passes through) in front of the sink.
``ShaperProcess`` runs the project's fault-injecting proxy
(``python -m service.emulator.faultproxy``) in front of the sink with one ``Shaping`` profile.
Both are context managers: the process is terminated, then killed, on exit, even on errors.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from benchmarks.linkshaper import Link
from benchmarks.tls import TlsFiles

REPO = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """A helper process did not start; the message names it and says where its log is."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode} at start-up; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on port {port} within 30 s; see {log}")


def _get_json(url: str, context: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, timeout=30, context=context) as response:
        return json.loads(response.read())


class _Process:
    what = "process"

    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        self.argv = argv
        self.log = log
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            _wait_for_port(self.port, self.proc, self.what, self.log)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class SinkProcess(_Process):
    """The sink; over HTTPS with a certificate from ``benchmarks.tls`` when ``tls`` is given."""

    what = "benchmark sink"

    def __init__(self, log: Path, port: int | None = None, tls: TlsFiles | None = None) -> None:
        port = port or _free_port()
        argv = [sys.executable, "-m", "benchmarks.sink", "--port", str(port)]
        if tls is not None:
            argv += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        super().__init__(argv, log, port)
        self.tls = tls
        self._context = tls.client_context() if tls is not None else None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path | None:
        """The CA file clients must trust to reach this sink (None: plain HTTP)."""
        return self.tls.ca_cert if self.tls is not None else None

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = _get_json(f"{self.url}/_sink/stats", self._context)
        return result

    def stored_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = _get_json(
                f"{self.url}/_sink/objects/{bucket}/{key}", self._context
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return result

    def cpu_seconds(self) -> float:
        """User+system CPU the sink has used so far (from /proc, clock ticks)."""
        import os

        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(frozen=True)
class Shaping:
    """One network condition. Rates are per request, in [0, 1]."""

    latency_ms: float = 0.0
    bandwidth_mbit: float = 0.0  # 0: uncapped
    reset_rate: float = 0.0  # connection reset mid-body
    error_rate: float = 0.0  # answered 500 / 503 / RequestTimeout instead of forwarded
    stall_rate: float = 0.0  # request accepted, then neither read nor answered
    stall_seconds: float = 0.0
    seed: int = 5

    def describe(self) -> str:
        bits = []
        if self.latency_ms:
            bits.append(f"{self.latency_ms:g} ms latency")
        if self.bandwidth_mbit:
            bits.append(f"{self.bandwidth_mbit:g} Mbit/s cap")
        if self.reset_rate:
            bits.append(f"{self.reset_rate:.0%} resets mid-body")
        if self.error_rate:
            bits.append(f"{self.error_rate:.0%} 500/503/RequestTimeout")
        if self.stall_rate:
            bits.append(f"{self.stall_rate:.0%} stalls of {self.stall_seconds:g} s")
        return ", ".join(bits) or "no shaping"


FAULTED_OPERATIONS = "UploadPart,CreateMultipartUpload,CompleteMultipartUpload"


def shaper_argv(shaping: Shaping, listen_port: int, upstream: str) -> list[str]:
    """Command line of the project's fault proxy for one profile.

    The 5xx share is split evenly between 500 InternalError, 503 SlowDown and 400
    RequestTimeout. Faults hit UploadPart, CreateMultipartUpload and CompleteMultipartUpload;
    latency is added to every request (once per request, not per round trip) and the cap applies
    to request bodies, shared by all connections.
    """
    argv = [
        sys.executable,
        "-m",
        "service.emulator.faultproxy",
        "--listen",
        f"127.0.0.1:{listen_port}",
        "--upstream",
        upstream,
        "--seed",
        str(shaping.seed),
        "--operations",
        FAULTED_OPERATIONS,
    ]
    if shaping.latency_ms:
        argv += ["--latency", f"{shaping.latency_ms / 1000:g}"]
    if shaping.bandwidth_mbit:
        argv += ["--bandwidth", f"{shaping.bandwidth_mbit * 1e6 / 8:g}"]
    if shaping.reset_rate:
        argv += ["--reset", f"{shaping.reset_rate:g}"]
    if shaping.error_rate:
        third = f"{shaping.error_rate / 3:g}"
        argv += ["--internal-error", third, "--slow-down", third, "--request-timeout", third]
    if shaping.stall_rate:
        argv += ["--stall", f"{shaping.stall_rate:g}", "--stall-seconds"]
        argv += [f"{shaping.stall_seconds:g}"]
    return argv


class ShaperProcess(_Process):
    what = "fault proxy (service.emulator.faultproxy)"

    def __init__(self, shaping: Shaping, upstream: str, log: Path) -> None:
        port = _free_port()
        super().__init__(shaper_argv(shaping, port, upstream), log, port)
        self.shaping = shaping

    def stats(self) -> dict[str, Any] | None:
        """The proxy's counters, when it exposes them; None otherwise."""
        try:
            result: dict[str, Any] = _get_json(f"{self.url}/__faultproxy/stats")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return result


class LinkProcess(_Process):
    """``benchmarks.linkshaper`` in front of ``sink``: the same URL scheme, the link's port."""

    what = "link shaper (benchmarks.linkshaper)"

    def __init__(self, link: Link, sink: SinkProcess, log: Path) -> None:
        port = _free_port()
        super().__init__(link.argv(port, sink.port), log, port)
        self.link = link
        self._scheme = "https" if sink.tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any] | None:
        """No counters of its own (it sees only ciphertext): wire bytes come from the sink."""
        return None
