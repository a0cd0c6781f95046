"""Fault-injecting HTTP reverse proxy for S3: the tests' hostile network and the benchmarks' shaper.

Requests pass through ``relay`` (streamed, headers untouched, SigV4 intact); what happens to
each is decided by ``faultplan.FaultDraws`` under the current ``FaultPlan``. Per request, in
this order:

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
   An **outage** window overrides the draw (counted as ``outage`` and ``reset``).
4. Otherwise the request is forwarded.

``bandwidth_bytes_per_second`` caps the rate at which request bodies are read from clients,
with one ``uploader.throttle.Throttle`` shared by all connections (served in arrival order).

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
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from yarl import URL

from service.emulator.background import AsyncStartable, LoopThread, Startable
from service.emulator.faultplan import (
    CLIENT_GONE,
    EXPIRED_TOKEN,
    FORWARDED,
    OUTAGE,
    UPSTREAM_ERROR,
    Fault,
    FaultDraws,
    FaultPlan,
    classify,
)
from service.emulator.faultproxy_args import argument_parser, plan_from_args
from service.emulator.relay import (
    CHUNK_BYTES,
    ClientGone,
    ProxyStats,
    Relay,
    Traffic,
    UpstreamUnreachable,
    expects_continue,
)
from service.emulator.responses import s3_error
from service.emulator.tcp import reset_connection
from uploader.errors import ConfigError
from uploader.throttle import Throttle

CONTROL_PREFIX = "/__faultproxy/"

# Socket shape under a bandwidth cap: Ethernet's MSS and a small window (see
# FaultProxy._make_sockets_link_like).
_LINK_MSS_BYTES = 1460
_LINK_RECEIVE_BUFFER_BYTES = 64 * 1024

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


class _Dropped(Exception):
    """We reset the client's connection on purpose; the outcome is already counted."""


def _body_length(request: web.BaseRequest) -> int | None:
    for name in ("x-amz-decoded-content-length", "Content-Length"):
        with contextlib.suppress(KeyError, ValueError):
            return int(request.headers[name])
    return None


class FaultProxy(AsyncStartable):
    """The proxy server on the running event loop. ``async with`` starts and stops it.

    ``clock`` (monotonic seconds) times the expiry and outage windows and the bandwidth cap;
    ``sleep`` waits out latency, stalls and the cap (tests pass fakes for both).
    """

    def __init__(
        self,
        upstream_url: str,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.upstream = URL(upstream_url)
        self._host = host
        self._port = port
        self._traffic = Traffic()
        self._relay = Relay(self.upstream, self._traffic)
        self._clock = clock
        self._sleep = sleep
        self._draws = FaultDraws(clock=clock)
        self._listen_socket: socket.socket | None = None
        self._link_like_sockets = False
        self._runner: web.ServerRunner | None = None
        self._bound_port: int | None = None
        self.set_plan(plan or FaultPlan())

    def __repr__(self) -> str:
        return f"<FaultProxy {self._bound_port or 'stopped'} -> {self.upstream} {self.plan}>"

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def plan(self) -> FaultPlan:
        return self._draws.plan

    @property
    def stats(self) -> ProxyStats:
        return self._traffic.snapshot()

    def set_plan(self, plan: FaultPlan) -> None:
        """Switch to ``plan`` for requests arriving from now on; re-seeds the RNG when the
        seed changes. Callable from any thread."""
        rate = plan.bandwidth_bytes_per_second
        throttle = self._relay.throttle
        if rate is None:
            self._relay.throttle = None
        elif throttle is None or throttle.rate != rate:
            # A 50 ms burst (at least one read chunk) keeps the cap smooth at any rate.
            self._relay.throttle = Throttle(
                rate,
                burst_bytes=max(float(CHUNK_BYTES), rate / 20),
                clock=self._clock,
                async_sleep=self._sleep,
            )
            self._make_sockets_link_like()
        self._draws.set_plan(plan)

    def expire_credentials(self) -> None:
        """From now on every request answers 400 ExpiredToken."""
        self.set_plan(dataclasses.replace(self.plan, expired_token=True))

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
        """Listen (port 0: any free port, see ``url``); returns once connections are accepted."""
        await self._relay.open()
        server = web.Server(self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # Our own listening socket, so the link-like options can be set on it before accept.
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            self._listen_socket = sock
            if self.plan.bandwidth_bytes_per_second is not None:
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
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            await self._relay.close()
            if self._listen_socket is not None:
                self._listen_socket.close()
                self._listen_socket = None
            self._link_like_sockets = False
            self._bound_port = None

    # -- request handling --------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        plan = self.plan
        operation = classify(request.method, request.path, request.query)
        self._traffic.count(operation=operation)
        draw = self._draws.draw(
            request.method,
            request.path,
            request.query.get("partNumber", ""),
            operation,
            self._traffic.snapshot().request_body_bytes_received,
        )
        if draw.outage:
            self._traffic.count(outcome=OUTAGE)
        if plan.latency_seconds:
            await self._sleep(plan.latency_seconds)
        if self._draws.expired():
            return await self._answer_error(request, EXPIRED_TOKEN)
        try:
            if draw.fault is None:
                return await self._forward(request)
            return await self._inject(request, draw.fault, draw.fraction, plan)
        except ClientGone:
            self._traffic.count(outcome=CLIENT_GONE)
        except _Dropped:
            pass
        return web.Response(status=499)  # never reaches the client: its socket is gone

    async def _inject(
        self, request: web.BaseRequest, fault: Fault, fraction: float, plan: FaultPlan
    ) -> web.StreamResponse:
        if fault in (Fault.INTERNAL_ERROR, Fault.SLOW_DOWN, Fault.REQUEST_TIMEOUT):
            return await self._answer_error(request, fault)
        if fault is Fault.LOST_RESPONSE:
            await self._forward(request, answer=False)
            self._traffic.count(outcome=fault)
            reset_connection(request)
            raise _Dropped
        if fault in (Fault.RESET, Fault.MID_BODY_STALL):
            await self._relay.send_continue(request)
            length = _body_length(request) or 0
            await self._relay.drain(request, limit=int(length * fraction))
        self._traffic.count(outcome=fault)
        if fault is not Fault.RESET:  # every kind of stall: hold the connection silently
            await self._sleep(plan.stall_seconds)
        reset_connection(request)
        raise _Dropped

    async def _forward(
        self, request: web.BaseRequest, *, answer: bool = True
    ) -> web.StreamResponse:
        try:
            response = await self._relay.forward(request, answer=answer)
        except UpstreamUnreachable:
            return await self._answer_error(request, UPSTREAM_ERROR)
        if response is None:
            return web.Response(status=499)  # the caller drops the connection instead
        self._traffic.count(outcome=FORWARDED)
        return response

    async def _answer_error(self, request: web.BaseRequest, kind: str) -> web.StreamResponse:
        status, code, message = _S3_ERRORS[kind]
        self._traffic.count(outcome=kind)
        response = s3_error(status, code, message, resource=request.path)
        if expects_continue(request):
            # Answer before "100 Continue": the client sends no body; the connection is
            # in an undefined state afterwards, so close it.
            response.headers["Connection"] = "close"
            response.force_close()
        else:
            await self._relay.drain(request)
        return response

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        name = request.path[len(CONTROL_PREFIX) :]
        if name == "stats" and request.method == "GET":
            return web.json_response(self.stats.to_json())
        if name == "plan" and request.method == "GET":
            return web.json_response(self.plan.to_json())
        if name == "plan" and request.method == "PUT":
            try:
                self.set_plan(FaultPlan.from_json(await request.json(), base=self.plan))
            except (ConfigError, TypeError, ValueError) as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response(self.plan.to_json())
        return web.json_response({"error": f"unknown control endpoint {request.path}"}, status=404)


class FaultProxyThread(Startable):
    """A FaultProxy on its own event loop in a background thread, for synchronous callers."""

    def __init__(self, upstream_url: str, plan: FaultPlan | None = None, **kwargs: Any) -> None:
        self._proxy = FaultProxy(upstream_url, plan, **kwargs)
        self._thread = LoopThread("faultproxy")

    def start(self) -> FaultProxyThread:
        """Start the proxy; returns once it accepts connections."""
        self._thread.start_serving(self._proxy.start(), 60)
        return self

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the proxy, once started."""
        return self._proxy.url

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # not started
            self._thread.run(self._proxy.stop(), 30)
        self._thread.stop()

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._proxy.plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Apply ``plan``; returns once the proxy's loop has switched to it."""
        self._thread.call(lambda: self._proxy.set_plan(plan), 5)

    def expire_credentials(self) -> None:
        self.set_plan(dataclasses.replace(self._proxy.plan, expired_token=True))

    @property
    def stats(self) -> ProxyStats:
        """What the proxy saw and did so far (safe from any thread)."""
        return self._proxy.stats


# -- command line (service/emulator/faultproxy_args.py) ---------------------------------


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

    args = argument_parser().parse_args(argv)
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
