"""The per-byte floor of any uploader on this machine: move a file into a loopback socket, no more.

A sender thread reads the file (in the page cache) part by part into 8 buffers in turn (as a
client with 8 parts in flight) and ``sendall``s it to a receiver thread that discards it: no
HTTP, no checksum, no signing. Each copy runs twice: into ``bytearray``s, as a plain Python
client reads, and into page-aligned buffers (``uploader.buffers``), as notaryd reads. Its
CPU time (``time.thread_time``, the sender thread only) per GiB is what every client here pays
at least for the two copies (page cache to buffer, buffer to socket) and, over TLS, for the
encryption as well (OpenSSL through ``ssl.SSLSocket``). ``sendfile`` is the same without the
user-space copy, the zero-copy lower bound for plain HTTP. RESULTS.md compares the targets
with these floors: a CPU target below the floor of the way a client sends cannot be met by
tuning that client.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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


BUFFERS_IN_TURN = 8


def _buffers(kind: str, part_size: int) -> list[Any]:
    if kind == "aligned":
        from uploader.buffers import page_aligned

        return [page_aligned(part_size) for _ in range(BUFFERS_IN_TURN)]
    return [bytearray(part_size) for _ in range(BUFFERS_IN_TURN)]


def _send(path: Path, part_size: int, mode: str, tls: TlsFiles | None,
          buffers: str = "bytearray") -> dict[str, float]:
    """One pass of ``path`` through a loopback socket; ``mode`` is "copy" or "sendfile",
    ``buffers`` "bytearray" or "aligned"."""
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
        views = [memoryview(buffer) for buffer in _buffers(buffers, part_size)]
        cpu_start, start = time.thread_time(), time.monotonic()
        with connection, open(path, "rb", buffering=0) as source:
            if mode == "sendfile":
                connection.sendfile(source)
            else:
                turn = 0
                while read := source.readinto(views[turn % BUFFERS_IN_TURN]):
                    connection.sendall(views[turn % BUFFERS_IN_TURN][:read])
                    turn += 1
            cpu = time.thread_time() - cpu_start
            connection.shutdown(socket.SHUT_WR)
            done.wait(timeout=600)
        wall = time.monotonic() - start
        receiver.join(timeout=10)
    size = path.stat().st_size
    if received[0] != size:
        raise RuntimeError(f"floor ({mode}): {received[0]} of {size} bytes arrived")
    return {"cpu_seconds_per_gib": cpu / (size / 2**30), "mib_per_second": size / wall / 2**20}


# name: (mode, over TLS, buffers)
CASES = {"copy": ("copy", False, "bytearray"), "copy_aligned": ("copy", False, "aligned"),
         "sendfile": ("sendfile", False, "bytearray"),
         "tls_copy": ("copy", True, "bytearray"), "tls_copy_aligned": ("copy", True, "aligned")}


def run_floor(path: Path, part_size: int, tls: TlsFiles, repeats: int = 3) -> dict[str, Any]:
    """Best-of-``repeats`` floors: plain copy, plain sendfile, TLS copy (copies into
    bytearrays and into page-aligned buffers).

    Each pass runs in a fresh interpreter, as an uploader's first buffers do: where malloc puts
    a bytearray depends on what the process freed before (the first 16 MiB ones are mmap'd and
    start 16 bytes into a page; later ones may come from the heap, elsewhere in a page), and
    that offset decides how fast the kernel copies into it."""
    with open(path, "rb") as warm:  # into the page cache, as for the uploads
        while warm.read(16 * 2**20):
            pass
    out: dict[str, Any] = {"bytes": path.stat().st_size, "part_size": part_size,
                           "repeats": repeats}
    for name in CASES:
        runs = [_fresh_pass(name, path, part_size, tls) for _ in range(repeats)]
        out[name] = min(runs, key=lambda r: r["cpu_seconds_per_gib"])
    out["sendfile_available"] = hasattr(os, "sendfile")
    return out


def _fresh_pass(name: str, path: Path, part_size: int, tls: TlsFiles) -> dict[str, float]:
    argv = [sys.executable, "-m", "benchmarks.floor", name, str(path), str(part_size),
            *(str(p) for p in (tls.ca_cert, tls.server_cert, tls.server_key))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


if __name__ == "__main__":  # one pass: CASE PATH PART_SIZE CA_CERT SERVER_CERT SERVER_KEY
    case, source, size, *tls_paths = sys.argv[1:]
    mode, over_tls, kind = CASES[case]
    files = TlsFiles(*(Path(p) for p in tls_paths)) if over_tls else None
    print(json.dumps(_send(Path(source), int(size), mode, files, kind)))
