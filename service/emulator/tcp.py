"""Socket-level misbehaviour shared by the emulator's servers."""

from __future__ import annotations

import contextlib
import socket
import struct

from aiohttp import web


def reset_connection(request: web.BaseRequest) -> None:
    """Drop the client's connection with a TCP RST (SO_LINGER 0, then close), like a middlebox."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
