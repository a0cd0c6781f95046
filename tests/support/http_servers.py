"""A real HTTP server on loopback whose answers a test scripts, for the outside world's end of a
notification, a redirect or a ticket lookup.

It runs in its own thread, so it serves a test's event loop, a daemon process and a CLI process
alike. ``answer(request)`` decides each answer; every request is recorded, and ``wait_for``
blocks (bounded) until the recorded requests satisfy a condition.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ScriptedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Callable[[Request], Answer], host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.answer = answer
        self.requests: list[Request] = []
        self.answers: list[int] = []  # the status of each answer, in the order of ``requests``
        self._changed = threading.Condition()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, condition: Callable[[list[Request]], bool], *, within: float,
                 what: str) -> list[Request]:
        """The requests so far, once ``condition`` holds for them; fails after ``within`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(list(self.requests)), timeout=within):
                raise AssertionError(f"no {what} within {within} s; got {self.requests!r}")
            return list(self.requests)

    def _record(self, request: Request) -> Answer:
        answer = self.answer(request)
        with self._changed:
            self.requests.append(request)
            self.answers.append(answer.status)
            self._changed.notify_all()
        return answer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ScriptedServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server._record(
            Request(self.command, self.path, dict(self.headers.items()), body))
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def scripted_server(answer: Callable[[Request], Answer] = lambda _: Answer(),
                    host: str = "127.0.0.1") -> Iterator[ScriptedServer]:
    server = ScriptedServer(answer, host)
    thread = threading.Thread(target=server.serve_forever, name="scripted-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
