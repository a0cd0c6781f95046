"""Fault-injecting HTTP reverse proxy for S3: the tests' hostile network and the benchmarks' shaper.

Theory of operation. Clients sign requests for the proxy's ``host:port``; the proxy forwards
method, raw path+query and every end-to-end header untouched (the ``Host`` header included,
so SigV4 signatures verify upstream) and streams both bodies chunk by chunk: memory per
request is bounded by aiohttp's stream buffer (~64 KiB), never a whole part.

Per request, in this order:

1. ``latency_seconds`` of added delay (every request: it models the link).
2. ExpiredToken: once ``expired_token`` is set, or ``expired_token_after_seconds`` have passed
   since the plan was set, *every* request answers 400 ExpiredToken (credentials expire for
   all operations, not just the faulted ones).
3. If the operation is one of ``plan.operations`` (default: UploadPart) and it is past the
   first ``clean_first`` such requests, one seeded draw picks at most one fault:

   =================  ==========================================================================
   reset              read a random fraction of the body, then abort with TCP RST (SO_LINGER 0)
   internal_error     500 InternalError
   slow_down          503 SlowDown
   request_timeout    400 RequestTimeout
   stall              neither read nor answer for ``stall_seconds``, then RST
   mid_body_stall     read a random fraction of the body, then stall as above
   expect_hang        never send ``100 Continue`` to ``Expect: 100-continue`` (a client that waits
                      for it hangs), RST after ``stall_seconds``; without Expect, same as stall
   lost_response      forward to upstream (the operation takes effect), then RST instead of
                      answering: the client cannot know it succeeded
   =================  ==========================================================================

   Error answers are S3 XML bodies. To an ``Expect: 100-continue`` request they are sent at
   once with ``Connection: close`` (the body is never sent, as with S3); otherwise the body is
   read and discarded first, so the client reads the answer rather than a broken pipe.
   An **outage** window overrides the draw: once ``outage_after_bytes`` of request bodies have
   been received (e.g. 30 % of the file), for ``outage_seconds`` every selected request reads a
   random fraction of its body and is reset (counted as ``outage`` and ``reset``), like a link
   that died.
4. Otherwise the request is forwarded.

``bandwidth_bytes_per_second`` caps the rate at which request bodies are read from clients,
with one token bucket shared by all connections (responses are not shaped). Each request's
draws come from ``random.Random`` seeded with the plan's seed, the request's target (method,
path, part number) and how many times that target was asked for before: the n-th attempt at
part 7 meets the same fault on every run, whatever order concurrent parts arrive in, so a
concurrent client's waste is as repeatable as a sequential one's.

Stats: requests by operation and by outcome, request-body bytes received from clients (what
the client put on the wire, to compare with an uploader's own byte counters), bytes forwarded
upstream, response-body bytes sent back.

Control endpoints (never S3 paths: bucket names cannot contain ``_``):
``GET /__faultproxy/stats`` (JSON) and ``PUT /__faultproxy/plan`` (JSON FaultPlan fields,
merged into the current plan).

Ways to run it:

* ``async with FaultProxy(upstream_url, plan) as proxy: ... proxy.url ...`` (on the caller's loop);
* ``with FaultProxyThread(upstream_url, plan) as proxy:`` (own loop in a thread, for sync code);
* ``python -m service.emulator.faultproxy --upstream URL --listen 127.0.0.1:0 --reset 0.2``
  prints its URL on the first stdout line and its final stats as JSON on exit (SIGTERM/SIGINT).

Concurrency: a FaultProxy lives on one event loop. ``set_plan`` and ``stats`` may be called
from any thread (FaultProxyThread relies on that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import json
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from service.emulator.tcp import reset_connection
from uploader.errors import ConfigError

CONTROL_PREFIX = "/__faultproxy/"

#: Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's; Expect is
#: answered by the proxy itself (and is not in SigV4's signed headers).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Headers aiohttp's client would add on its own; the upstream must see only the client's.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

_CHUNK_BYTES = 256 * 1024
# Socket shape under a bandwidth cap: Ethernet's MSS and a small window (see
# FaultProxy._make_sockets_link_like).
_LINK_MSS_BYTES = 1460
_LINK_RECEIVE_BUFFER_BYTES = 64 * 1024


class Operation(enum.StrEnum):
    UPLOAD_PART = "UploadPart"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    PUT_OBJECT = "PutObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    OTHER = "Other"


def classify(method: str, path: str, query: Mapping[str, str]) -> Operation:
    """Name the S3 operation of a path-style request from its method, path and query."""
    in_object = path.strip("/").count("/") >= 1  # "/bucket/key..." rather than "/bucket"
    if "uploadId" in query:
        if method == "PUT" and "partNumber" in query:
            return Operation.UPLOAD_PART
        return {
            "POST": Operation.COMPLETE_MULTIPART_UPLOAD,
            "GET": Operation.LIST_PARTS,
            "DELETE": Operation.ABORT_MULTIPART_UPLOAD,
        }.get(method, Operation.OTHER)
    if method == "POST" and "uploads" in query:
        return Operation.CREATE_MULTIPART_UPLOAD
    if in_object and not query:
        return {
            "PUT": Operation.PUT_OBJECT,
            "GET": Operation.GET_OBJECT,
            "HEAD": Operation.HEAD_OBJECT,
        }.get(method, Operation.OTHER)
    return Operation.OTHER


class Fault(enum.StrEnum):
    RESET = "reset"
    INTERNAL_ERROR = "internal_error"
    SLOW_DOWN = "slow_down"
    REQUEST_TIMEOUT = "request_timeout"
    STALL = "stall"
    MID_BODY_STALL = "mid_body_stall"
    EXPECT_HANG = "expect_hang"
    LOST_RESPONSE = "lost_response"


# Outcomes counted in ProxyStats.outcomes besides the Fault values.
FORWARDED = "forwarded"
EXPIRED_TOKEN = "expired_token"
UPSTREAM_ERROR = "upstream_error"
CLIENT_GONE = "client_gone"
OUTAGE = "outage"

# (status, S3 code, message) of each error answer.
_S3_ERRORS: dict[str, tuple[int, str, str]] = {
    Fault.INTERNAL_ERROR: (
        500,
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    Fault.SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
    Fault.REQUEST_TIMEOUT: (
        400,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within "
        "the timeout period. Idle connections will be closed.",
    ),
    EXPIRED_TOKEN: (400, "ExpiredToken", "The provided token has expired."),
    UPSTREAM_ERROR: (502, "InternalError", "The fault proxy could not reach the upstream server."),
}

DEFAULT_OPERATIONS = frozenset({Operation.UPLOAD_PART})


@dataclass(frozen=True)
class FaultPlan:
    """What the proxy does to requests. Probabilities are per selected request; sum ≤ 1."""

    reset: float = 0.0
    internal_error: float = 0.0
    slow_down: float = 0.0
    request_timeout: float = 0.0
    stall: float = 0.0
    mid_body_stall: float = 0.0
    expect_hang: float = 0.0
    lost_response: float = 0.0
    stall_seconds: float = 600.0
    latency_seconds: float = 0.0
    bandwidth_bytes_per_second: float | None = None
    expired_token: bool = False
    expired_token_after_seconds: float | None = None
    outage_after_bytes: int | None = None
    outage_seconds: float = 0.0
    operations: frozenset[Operation] = DEFAULT_OPERATIONS
    clean_first: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for fault, probability in self.fault_probabilities().items():
            if not 0.0 <= probability <= 1.0:
                raise ConfigError(f"FaultPlan.{fault}: probability {probability} is not in [0, 1]")
        total = sum(self.fault_probabilities().values())
        if total > 1.0 + 1e-9:
            raise ConfigError(f"FaultPlan: fault probabilities add up to {total:g}; at most 1")
        if self.stall_seconds <= 0:
            raise ConfigError("FaultPlan.stall_seconds must be > 0")
        if self.latency_seconds < 0:
            raise ConfigError("FaultPlan.latency_seconds must be ≥ 0")
        if self.bandwidth_bytes_per_second is not None and self.bandwidth_bytes_per_second <= 0:
            raise ConfigError("FaultPlan.bandwidth_bytes_per_second must be > 0 (or None: no cap)")
        if self.outage_seconds < 0 or (self.outage_after_bytes or 0) < 0:
            raise ConfigError("FaultPlan.outage_after_bytes and outage_seconds must be ≥ 0")
        if self.clean_first < 0:
            raise ConfigError("FaultPlan.clean_first must be ≥ 0")
        # Accept plain strings (from JSON / the command line) and normalise to Operation.
        object.__setattr__(self, "operations", frozenset(Operation(o) for o in self.operations))

    def fault_probabilities(self) -> dict[Fault, float]:
        return {fault: float(getattr(self, fault.value)) for fault in Fault}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultPlan | None = None) -> FaultPlan:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"FaultPlan: unknown field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return dataclasses.replace(base or cls(), **data)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["operations"] = sorted(self.operations)
        return data


@dataclass(frozen=True)
class ProxyStats:
    """A consistent snapshot of the proxy's counters."""

    operations: Mapping[str, int] = field(default_factory=dict)
    outcomes: Mapping[str, int] = field(default_factory=dict)
    request_body_bytes_received: int = 0
    request_body_bytes_forwarded: int = 0
    response_body_bytes_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": dict(self.operations),
            "outcomes": dict(self.outcomes),
            "request_body_bytes_received": self.request_body_bytes_received,
            "request_body_bytes_forwarded": self.request_body_bytes_forwarded,
            "response_body_bytes_sent": self.response_body_bytes_sent,
        }


class _Counters:
    """Mutable counters behind a lock (snapshots may be taken from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.received = 0
        self.forwarded = 0
        self.sent = 0

    def add(self, *, received: int = 0, forwarded: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.received += received
            self.forwarded += forwarded
            self.sent += sent

    def count(self, operation: Operation | None = None, outcome: str | None = None) -> None:
        with self._lock:
            if operation is not None:
                self.operations[operation.value] += 1
            if outcome is not None:
                self.outcomes[str(outcome)] += 1

    def snapshot(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                operations=dict(self.operations),
                outcomes=dict(self.outcomes),
                request_body_bytes_received=self.received,
                request_body_bytes_forwarded=self.forwarded,
                response_body_bytes_sent=self.sent,
            )


class TokenBucket:
    """Bandwidth cap shared by all connections: ``rate`` bytes/s, bursts up to ``burst`` bytes.

    ``consume(n)`` may drive the balance negative (a chunk larger than the burst) and then
    sleeps the debt off; callers queue FIFO on a lock, so connections share the rate fairly.
    One event loop only.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def consume(self, amount: int) -> None:
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= amount
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


class _ClientGone(Exception):
    """The client closed its connection while we were reading its body or answering."""


class _Dropped(Exception):
    """We reset the client's connection on purpose; the outcome is already counted."""


def _s3_error_body(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


def _expects_continue(request: web.BaseRequest) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


def _body_length(request: web.BaseRequest) -> int | None:
    for name in ("x-amz-decoded-content-length", "Content-Length"):
        with contextlib.suppress(KeyError, ValueError):
            return int(request.headers[name])
    return None


class FaultProxy:
    """The proxy server on the running event loop. ``async with`` starts and stops it."""

    def __init__(
        self,
        upstream_url: str,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = URL(upstream_url)
        self._host = host
        self._port = port
        self._counters = _Counters()
        self._plan = FaultPlan()
        self._plan_since = time.monotonic()
        self._attempts: dict[str, int] = {}  # request target -> times seen under this seed
        self._selected_seen = 0
        self._outage_since: float | None = None
        self._bucket: TokenBucket | None = None
        self._listen_socket: socket.socket | None = None
        self._link_like_sockets = False
        self._runner: web.ServerRunner | None = None
        self._session: ClientSession | None = None
        self._bound_port: int | None = None
        self.set_plan(plan or FaultPlan())

    def __repr__(self) -> str:
        return f"<FaultProxy {self._bound_port or 'stopped'} -> {self.upstream} {self._plan}>"

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    @property
    def stats(self) -> ProxyStats:
        return self._counters.snapshot()

    def set_plan(self, plan: FaultPlan) -> None:
        """Switch to ``plan`` for requests arriving from now on; re-seeds the RNG when the
        seed changes. Callable from any thread."""
        if plan.seed != self._plan.seed or self._selected_seen == 0:
            self._attempts = {}
        rate = plan.bandwidth_bytes_per_second
        if rate is None:
            self._bucket = None
        elif self._bucket is None or self._bucket.rate != rate:
            # A 50 ms burst (at least one read chunk) keeps the cap smooth at any rate.
            self._bucket = TokenBucket(rate, burst=max(float(_CHUNK_BYTES), rate / 20))
            self._make_sockets_link_like()
        if plan.expired_token_after_seconds != self._plan.expired_token_after_seconds:
            self._plan_since = time.monotonic()
        self._plan = plan

    def expire_credentials(self) -> None:
        """From now on every request answers 400 ExpiredToken."""
        self.set_plan(dataclasses.replace(self._plan, expired_token=True))

    def _make_sockets_link_like(self) -> None:
        """Give connections accepted from now on a WAN-like MSS and a small receive buffer.

        Why: loopback's 64 KiB MSS and auto-tuned buffers let a client hand megabytes to
        its kernel at once, so a capped client would see its body "sent" instantly and then
        wait seconds for the answer, which no real link does. With a 1460-byte MSS and a
        64 KiB receive window, the sender's own buffers stay small and its writes follow
        the cap. Options are inherited from the listening socket at accept time, so
        connections opened before the first cap keep loopback behaviour; once set, they
        stay for the proxy's lifetime (harmless for uncapped throughput up to ~1 GB/s).
        """
        sock = self._listen_socket
        if sock is None or self._link_like_sockets:
            return
        with contextlib.suppress(OSError):  # best effort: not every platform allows both
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, _LINK_MSS_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _LINK_RECEIVE_BUFFER_BYTES)
        self._link_like_sockets = True

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=None, sock_connect=10, sock_read=300),
            auto_decompress=False,
            cookie_jar=DummyCookieJar(),
        )
        server = web.Server(self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            self._listen_socket = sock
            if self._plan.bandwidth_bytes_per_second is not None:
                self._make_sockets_link_like()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise
        self._bound_port = int(sock.getsockname()[1])
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            if session is not None:
                await session.close()
            if self._listen_socket is not None:
                self._listen_socket.close()
                self._listen_socket = None
            self._link_like_sockets = False
            self._bound_port = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- request handling --------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        plan = self._plan
        operation = classify(request.method, request.path, request.query)
        self._counters.count(operation=operation)
        rng = self._rng_for(request, plan.seed)
        fault = self._choose_fault(operation, plan, rng.random())
        fraction = rng.random()

        if plan.latency_seconds:
            await asyncio.sleep(plan.latency_seconds)
        if plan.expired_token or (
            plan.expired_token_after_seconds is not None
            and time.monotonic() - self._plan_since >= plan.expired_token_after_seconds
        ):
            return await self._answer_error(request, EXPIRED_TOKEN)
        try:
            if fault is None:
                return await self._forward(request)
            return await self._inject(request, fault, fraction, plan)
        except _ClientGone:
            self._counters.count(outcome=CLIENT_GONE)
        except _Dropped:
            pass
        return web.Response(status=499)  # never reaches the client: its socket is gone

    def _in_outage(self, plan: FaultPlan) -> bool:
        if plan.outage_after_bytes is None or not plan.outage_seconds:
            return False
        now = time.monotonic()
        if self._outage_since is None:
            if self._counters.snapshot().request_body_bytes_received < plan.outage_after_bytes:
                return False
            self._outage_since = now
        return now - self._outage_since < plan.outage_seconds

    def _rng_for(self, request: web.BaseRequest, seed: int) -> random.Random:
        target = f"{request.method} {request.path} {request.query.get('partNumber', '')}"
        attempt = self._attempts.get(target, 0)
        self._attempts[target] = attempt + 1
        return random.Random(f"{seed}|{target}|{attempt}")

    def _choose_fault(self, operation: Operation, plan: FaultPlan, draw: float) -> Fault | None:
        if operation not in plan.operations:
            return None
        self._selected_seen += 1
        if self._in_outage(plan):
            self._counters.count(outcome=OUTAGE)
            return Fault.RESET
        if self._selected_seen <= plan.clean_first:
            return None
        for fault, probability in plan.fault_probabilities().items():
            if draw < probability:
                return fault
            draw -= probability
        return None

    async def _inject(
        self, request: web.BaseRequest, fault: Fault, fraction: float, plan: FaultPlan
    ) -> web.StreamResponse:
        if fault in (Fault.INTERNAL_ERROR, Fault.SLOW_DOWN, Fault.REQUEST_TIMEOUT):
            return await self._answer_error(request, fault)
        if fault is Fault.LOST_RESPONSE:
            await self._forward(request, answer=False)
            self._counters.count(outcome=fault)
            reset_connection(request)
            raise _Dropped
        if fault in (Fault.RESET, Fault.MID_BODY_STALL):
            await self._send_continue(request)
            length = _body_length(request) or 0
            await self._drain(request, limit=int(length * fraction))
        self._counters.count(outcome=fault)
        if fault is not Fault.RESET:  # every kind of stall: hold the connection silently
            await asyncio.sleep(plan.stall_seconds)
        reset_connection(request)
        raise _Dropped

    async def _send_continue(self, request: web.BaseRequest) -> None:
        if _expects_continue(request) and request.writer is not None:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _read_body(
        self, request: web.BaseRequest, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        """The client's body in chunks, at most ``limit`` bytes, shaped by the bandwidth cap."""
        remaining = limit
        while remaining is None or remaining > 0:
            try:
                chunk = await request.content.readany()
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                raise _ClientGone from error
            if not chunk:
                if request.content.exception() is not None:
                    raise _ClientGone
                return
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            if self._bucket is not None:
                await self._bucket.consume(len(chunk))
            self._counters.add(received=len(chunk))
            yield chunk

    async def _drain(self, request: web.BaseRequest, limit: int | None = None) -> None:
        async for _ in self._read_body(request, limit):
            pass

    async def _answer_error(self, request: web.BaseRequest, kind: str) -> web.StreamResponse:
        status, code, message = _S3_ERRORS[kind]
        self._counters.count(outcome=kind)
        request_id = secrets.token_hex(8).upper()
        headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id}
        if _expects_continue(request):
            # Answer before "100 Continue": the client sends no body; the connection is
            # in an undefined state afterwards, so close it.
            headers["Connection"] = "close"
            force_close = True
        else:
            await self._drain(request)
            force_close = False
        response = web.Response(
            status=status,
            body=_s3_error_body(code, message, request.path, request_id),
            headers=headers,
        )
        if force_close:
            response.force_close()
        return response

    def _upstream_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                headers.add(name, value)
        return headers

    async def _forward(
        self, request: web.BaseRequest, *, answer: bool = True
    ) -> web.StreamResponse:
        assert self._session is not None
        await self._send_continue(request)
        # The raw path and query exactly as the client signed them: no re-quoting.
        url = URL(str(self.upstream.origin()) + request.raw_path, encoded=True)
        body = self._forwarded_body(request) if request.body_exists else None
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                url,
                headers=self._upstream_headers(request),
                data=body,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as upstream:
                if not answer:
                    await upstream.read()
                    return web.Response(status=499)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK_BYTES):
                    await response.write(chunk)
                    self._counters.add(sent=len(chunk))
                await response.write_eof()
        except _ClientGone:
            raise
        except (ClientError, OSError) as error:
            client_gone = request.transport is None or request.transport.is_closing()
            if client_gone or response is not None:
                # Nothing sensible can be said any more: half an answer is already out.
                reset_connection(request)
                raise _ClientGone from error
            return await self._answer_error(request, UPSTREAM_ERROR)
        self._counters.count(outcome=FORWARDED)
        return response

    async def _forwarded_body(self, request: web.BaseRequest) -> AsyncIterator[bytes]:
        async for chunk in self._read_body(request):
            yield chunk
            self._counters.add(forwarded=len(chunk))

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        name = request.path[len(CONTROL_PREFIX) :]
        if name == "stats" and request.method == "GET":
            return web.json_response(self.stats.to_json())
        if name == "plan" and request.method == "GET":
            return web.json_response(self._plan.to_json())
        if name == "plan" and request.method == "PUT":
            try:
                self.set_plan(FaultPlan.from_json(await request.json(), base=self._plan))
            except (ConfigError, TypeError, ValueError) as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response(self._plan.to_json())
        return web.json_response({"error": f"unknown control endpoint {request.path}"}, status=404)


class FaultProxyThread:
    """A FaultProxy on its own event loop in a background thread, for synchronous callers."""

    def __init__(self, upstream_url: str, plan: FaultPlan | None = None, **kwargs: Any) -> None:
        self._proxy = FaultProxy(upstream_url, plan, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self._proxy.url

    @property
    def stats(self) -> ProxyStats:
        return self._proxy.stats

    @property
    def plan(self) -> FaultPlan:
        return self._proxy.plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Apply ``plan``; returns once the proxy's loop has switched to it."""
        if self._loop is not None and threading.current_thread() is not self._thread:
            self._loop.call_soon_threadsafe(self._proxy.set_plan, plan)
            # Wait until the loop has applied it, so the next request sees the new plan.
            done = threading.Event()
            self._loop.call_soon_threadsafe(done.set)
            done.wait(5)
        else:
            self._proxy.set_plan(plan)

    def expire_credentials(self) -> None:
        self.set_plan(dataclasses.replace(self._proxy.plan, expired_token=True))

    def start(self) -> FaultProxyThread:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FaultProxyThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        from service.runtime import run

        try:
            run(self._serve())
        except BaseException as error:  # surfaced to start()'s caller
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._proxy:
            self._ready.set()
            await self._stop.wait()


# -- command line ----------------------------------------------------------------------


def _parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:0"
        )
    return host, int(port)


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.emulator.faultproxy",
        description="Fault-injecting reverse proxy in front of an S3 server. Prints its URL on "
        "the first line of stdout, its final stats as JSON on exit (SIGTERM/SIGINT).",
    )
    parser.add_argument(
        "--upstream", required=True, help="S3 server URL, e.g. http://127.0.0.1:8333"
    )
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0), help="HOST:PORT")
    for fault in Fault:
        parser.add_argument(
            f"--{fault.value.replace('_', '-')}",
            dest=fault.value,
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability of {fault.value} per selected request",
        )
    parser.add_argument("--stall-seconds", type=float, default=600.0)
    parser.add_argument("--latency", type=float, default=0.0, help="added seconds per request")
    parser.add_argument("--bandwidth", type=float, default=None, help="request-body cap, bytes/s")
    parser.add_argument("--expired-token-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument(
        "--operations",
        default=",".join(sorted(DEFAULT_OPERATIONS)),
        help=f"comma-separated operations faults apply to: {', '.join(o.value for o in Operation)}",
    )
    parser.add_argument("--outage-after-bytes", type=int, default=None, metavar="BYTES",
                        help="start a total outage once this many body bytes were received")
    parser.add_argument("--outage-seconds", type=float, default=0.0,
                        help="how long the outage lasts")
    parser.add_argument("--clean-first", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def plan_from_args(args: argparse.Namespace) -> FaultPlan:
    try:
        operations = frozenset(
            Operation(o.strip()) for o in args.operations.split(",") if o.strip()
        )
    except ValueError as error:
        raise ConfigError(f"--operations: {error}") from error
    return FaultPlan(
        **{fault.value: getattr(args, fault.value) for fault in Fault},
        stall_seconds=args.stall_seconds,
        latency_seconds=args.latency,
        bandwidth_bytes_per_second=args.bandwidth,
        expired_token_after_seconds=args.expired_token_after,
        outage_after_bytes=args.outage_after_bytes,
        outage_seconds=args.outage_seconds,
        operations=operations,
        clean_first=args.clean_first,
        seed=args.seed,
    )


async def _serve_until_signalled(args: argparse.Namespace, plan: FaultPlan) -> ProxyStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, port = args.listen
    async with FaultProxy(args.upstream, plan, host=host, port=port) as proxy:
        print(proxy.url, flush=True)
        await stop.wait()
        return proxy.stats


def main(argv: list[str] | None = None) -> int:
    from service.runtime import run

    args = _argument_parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
    except ConfigError as error:
        print(f"faultproxy: {error}", file=sys.stderr)
        return 2
    stats = run(_serve_until_signalled(args, plan))
    print(json.dumps(stats.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
