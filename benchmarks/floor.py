"""The per-byte floor of any uploader on this machine: move a file into a loopback socket, no more.

A sender thread reads the file (in the page cache) into a reused buffer part by part and
``sendall``s it to a receiver thread that discards it: no HTTP, no checksum, no signing. Its
CPU time (``time.thread_time``, the sender thread only) per GiB is what every client here pays
at least for the two copies (page cache to buffer, buffer to socket) and, over TLS, for the
encryption as well (OpenSSL through ``ssl.SSLSocket``). ``sendfile`` is the same without the
user-space copy, the zero-copy lower bound for plain HTTP. RESULTS.md compares the targets
with these floors: a CPU target below the floor of the way a client sends cannot be met by
tuning that client.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.tls import TlsFiles

RECEIVE_BUFFER = 1024 * 1024


def _receiver(
    server: socket.socket, tls: TlsFiles | None, done: threading.Event, received: list[int]
) -> None:
    connection, _ = server.accept()
    if tls is not None:
        connection = tls.server_context().wrap_socket(connection, server_side=True)
    buffer = bytearray(RECEIVE_BUFFER)
    with connection:
        while count := connection.recv_into(buffer):
            received[0] += count
    done.set()


def _send(path: Path, part_size: int, mode: str, tls: TlsFiles | None) -> dict[str, float]:
    """One pass of ``path`` through a loopback socket; ``mode`` is "copy" or "sendfile"."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        done = threading.Event()
        received = [0]
        receiver = threading.Thread(
            target=_receiver, args=(server, tls, done, received), daemon=True
        )
        receiver.start()
        raw = socket.create_connection(server.getsockname())
        connection = raw
        if tls is not None:
            connection = tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        buffer = bytearray(part_size)
        view = memoryview(buffer)
        cpu_start, start = time.thread_time(), time.monotonic()
        with connection, open(path, "rb") as source:
            if mode == "sendfile":
                connection.sendfile(source)
            else:
                while read := source.readinto(buffer):
                    connection.sendall(view[:read])
            cpu = time.thread_time() - cpu_start
            connection.shutdown(socket.SHUT_WR)
            done.wait(timeout=600)
        wall = time.monotonic() - start
        receiver.join(timeout=10)
    size = path.stat().st_size
    if received[0] != size:
        raise RuntimeError(f"floor ({mode}): {received[0]} of {size} bytes arrived")
    return {"cpu_seconds_per_gib": cpu / (size / 2**30), "mib_per_second": size / wall / 2**20}


def run_floor(path: Path, part_size: int, tls: TlsFiles, repeats: int = 3) -> dict[str, Any]:
    """Best-of-``repeats`` floors: plain copy, plain sendfile, TLS copy."""
    with open(path, "rb") as warm:  # into the page cache, as for the uploads
        while warm.read(16 * 2**20):
            pass
    cases = {"copy": ("copy", None), "sendfile": ("sendfile", None), "tls_copy": ("copy", tls)}
    out: dict[str, Any] = {"bytes": path.stat().st_size, "part_size": part_size,
                           "repeats": repeats}
    for name, (mode, context) in cases.items():
        runs = [_send(path, part_size, mode, context) for _ in range(repeats)]
        out[name] = min(runs, key=lambda r: r["cpu_seconds_per_gib"])
    out["sendfile_available"] = hasattr(os, "sendfile")
    return out
