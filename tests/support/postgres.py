"""A throwaway PostgreSQL cluster per test run, for the fleet store (uploader/postgres).

Debian's ``postgresql`` package (scripts/install-system-deps.sh) gives ``initdb`` and ``pg_ctl``
under /usr/lib/postgresql/<version>/bin. The cluster lives in a temporary folder and listens only
on a Unix socket in that folder (no TCP port at all: nothing to collide with, nothing off
loopback); tests get one database each (``CREATE DATABASE`` from ``template0``). The server
refuses to run as root: as root the cluster is made and run by the ``postgres`` user (setpriv).
Durability is switched off (``fsync=off``): the data is thrown away, and a crash-safe ``COMMIT``
is the server's business, not this suite's.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from uploader.database import Database

PORT = 5432  # names the socket file in the private folder; no TCP listener
SUPERUSER = "notaryd"
OpenDb = Callable[..., Awaitable[Database]]  # the ``open_db`` fixture: opens the test's store


def bindir() -> Path | None:
    """The newest installed server's binaries, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable  # True: fsync and synchronous commit on (benchmarks)
        self.root = Path(tempfile.mkdtemp(prefix="notaryd-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._bin = bindir()

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={PORT}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                       "--init-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "LC_ALL": "C"}, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            pytest.fail(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> None:
        if self._bin is None:
            pytest.skip("PostgreSQL is not installed (scripts/install-system-deps.sh installs it)")
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self._bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        assert self._bin is not None
        options = f"-p {PORT} -k {self.root} -c listen_addresses='' -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", options, *extra, action)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server is back when it returns."""
        self._pg_ctl("restart", "-m", "fast")

    def create_database(self) -> str:
        """A new empty database (from ``template0``); its URL."""
        assert self._bin is not None
        name = database_name()
        result = subprocess.run([str(self._bin / "createdb"), "-h", str(self.root), "-p", str(PORT),
                                 "-U", SUPERUSER, "-T", "template0", name],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            pytest.fail(f"createdb failed: {result.stderr.strip()}")
        return self.url(name)

    def stop(self) -> None:
        if self._bin is not None and (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def database_name() -> str:
    return f"t_{secrets.token_hex(6)}"
