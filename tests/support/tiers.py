"""The three test tiers, how a test's tier is found, and the check that it tells the truth.

* ``unit``: in-process logic (fake clocks, the in-memory S3, SQLite in a temp dir); no network
  socket, no child process. Seconds for the whole tier.
* ``integration``: real servers on loopback (SeaweedFS, the notary emulator, HTTP servers).
* ``process``: real child processes (``notaryd serve`` killed with SIGKILL, the CLI, Prometheus,
  systemd-analyze ...).

A test's tier is the highest of what it declares (``pytestmark = pytest.mark.process``) and what
its fixtures imply (``seaweed`` makes it integration, ``daemon`` makes it process). While a test
body runs, :func:`watched` notes what its tier forbids, and the test fails naming the marker
to add: a declared tier cannot drift from what the test really does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any

TIERS = ("unit", "integration", "process")  # fastest first

INTEGRATION_FIXTURES = frozenset({"seaweed", "emulator", "notary", "postgres"})
PROCESS_FIXTURES = frozenset({"daemon", "real_daemon", "secret_service"})


def tier_of(declared: Iterable[str], fixtures: Iterable[str]) -> str:
    used = set(fixtures)
    found = set(declared) & set(TIERS)
    if used & PROCESS_FIXTURES:
        found.add("process")
    if used & INTEGRATION_FIXTURES:
        found.add("integration")
    return max(found, key=TIERS.index, default="unit")


@contextlib.contextmanager
def watched(tier: str) -> Iterator[list[str]]:
    """Within the block, lists what the tier forbids as ``"needed tier: what"`` (and lets it
    happen, so a library's error handling cannot hide it): a unit test may not open a network
    socket, and no test below the process tier may start a child process."""
    seen: list[str] = []
    if tier == "process":
        yield seen
        return
    patches: list[tuple[Any, str, Any]] = []

    def watch(owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        patches.append((owner, name, original))
        setattr(owner, name, wrap(original))

    def child(original: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            seen.append("process: it starts a child process")
            return original(*args, **kwargs)
        return recorded

    watch(subprocess.Popen, "__init__", child)
    watch(os, "fork", child)
    watch(os, "posix_spawn", child)
    if tier == "unit":
        def network(original: Any) -> Any:
            def recorded(self: socket.socket, address: Any, *rest: Any) -> Any:
                if self.family in (socket.AF_INET, socket.AF_INET6):
                    seen.append(f"integration: it opens a network socket ({address!r})")
                return original(self, address, *rest)
            return recorded

        for name in ("bind", "connect", "connect_ex"):
            watch(socket.socket, name, network)
    try:
        yield seen
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def violation(tier: str, seen: list[str]) -> str | None:
    """The failure message for what :func:`watched` saw, naming the marker the test needs."""
    if not seen:
        return None
    needed, what = max((line.split(": ", 1) for line in seen), key=lambda pair: TIERS.index(pair[0]))
    return (f"a {tier} test, but {what}: mark it `pytest.mark.{needed}` "
            "(or its module: pytestmark = pytest.mark." + needed + "; see tests/support/tiers.py)")
