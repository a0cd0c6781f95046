"""The fleet's settings, checked: ``NOTARYD_WORKER_NAME`` and ``NOTARYD_LEASE_SECONDS``."""

from __future__ import annotations

import socket

DEFAULT_LEASE_SECONDS = 30.0
MAX_NAME = 128


def default_worker_name() -> str:
    """This host's name: every ``notaryd serve`` pointed at one database is a worker of one fleet."""
    return socket.gethostname() or "notaryd"


def worker_name(raw: object) -> str:
    text = str(raw).strip()
    if not text or len(text) > MAX_NAME or not text.isprintable():
        raise ValueError(f"must be a printable name of 1 to {MAX_NAME} characters")
    return text


def lease_seconds(raw: object) -> float:
    seconds = float(str(raw))
    if not 3 <= seconds <= 3600:
        raise ValueError(f"must be from 3 to 3600 seconds, got {raw}")
    return seconds
