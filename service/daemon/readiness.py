"""The service manager's readiness protocol (systemd's sd_notify(3)), spoken without libsystemd.

When ``NOTIFY_SOCKET`` names a Unix datagram socket (systemd sets it for ``Type=notify`` units;
the test harness sets it too), ``notaryd serve`` sends ``READY=1`` with the address it listens on
once the control API accepts connections, and ``STOPPING=1`` when it begins to drain. Without
``NOTIFY_SOCKET`` both calls do nothing. A failed send is logged and ignored: readiness is a
courtesy to the supervisor and must never stop the daemon.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

ENVIRONMENT = "NOTIFY_SOCKET"


def notify_ready(host: str, port: int) -> None:
    _send(f"READY=1\nSTATUS=listening on {host}:{port}")


def notify_stopping() -> None:
    _send("STOPPING=1\nSTATUS=draining jobs")


def _send(message: str) -> None:
    address = os.environ.get(ENVIRONMENT, "")
    if not address:
        return
    if address.startswith("@"):  # Linux abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a full receiver drops the message instead of stalling the loop
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", os.environ[ENVIRONMENT], exc)
