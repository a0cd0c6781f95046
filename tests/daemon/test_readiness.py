"""The service manager's readiness protocol, as systemd reads it: datagrams of KEY=value lines."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.daemon.readiness import notify_ready, notify_stopping


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket named in NOTIFY_SOCKET by path, as systemd does."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_ready_names_the_address_and_stopping_follows(manager: socket.socket) -> None:
    notify_ready("127.0.0.1", 43210)
    assert manager.recv(4096).decode().splitlines() == ["READY=1", "STATUS=listening on 127.0.0.1:43210"]
    notify_stopping()
    assert manager.recv(4096).decode().splitlines()[0] == "STOPPING=1"


def test_an_abstract_socket_is_named_with_an_at_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0notaryd-readiness-test")
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@notaryd-readiness-test")
        notify_ready("::1", 7780)
        assert b"READY=1" in sock.recv(4096)


def test_without_a_manager_nothing_is_sent_and_a_gone_one_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify_ready("127.0.0.1", 1)  # no socket, no error
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING):
        notify_stopping()
    assert "cannot notify the service manager" in caplog.text
