"""``notaryd serve``: wiring and lifecycle of the daemon, in the foreground.

Start: token -> database -> the jobs' shared HTTP session -> job registry (read by the
scheduler and the metrics) -> scheduler (resumes unfinished jobs) -> HTTP listener. Then wait for
SIGTERM or SIGINT. Stop (launchd sends SIGTERM and SIGKILLs after its 20 s ExitTimeOut; systemd
after TimeoutStopSec): refuse new jobs, let parts in flight finish for ``shutdown_grace`` seconds
(default 15), stop the jobs (each keeps its state for the next start), end the event streams,
close the listener and the database, exit 0. A second signal cuts the grace period short.

Never forks or daemonises: launchd/systemd supervise the process and collect stderr.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from service import exit_codes
from service.fleet.wiring import job_store_for, scheduler_for, session_traces
from service.serve_lock import holding_serve_lock
from service.settings import Settings
from uploader.bundle_zip import archive_dir
from uploader.errors import ConfigError, NotarydError
from uploader.notary.client import notary_session
from uploader.postgres import open_database
from uploader.throttle import Throttle

from .api import make_app
from .api_context import ApiConfig
from .broker import Broker
from .connections import ConnectionGuard, GuardedTCPSite, connection_cap
from .execution import Confinement, JobExecutor, RunnerFactory, Shared
from .flusher import Flusher
from .job_states import JobOutcome
from .logfmt import kv, use_logfmt
from .metrics import DaemonMetrics, notaryd_version
from .notify import JobNotifier
from .pipeline_runner import pipeline_runner_factory
from .readiness import notify_ready, notify_stopping
from .registry import JobRegistry
from .scheduler import Scheduler
from .slots import PartSlots
from .token import ensure_token, token_path

log = logging.getLogger(__name__)

# Seconds the HTTP listener waits for open requests once the jobs have stopped.
HTTP_SHUTDOWN_SECONDS = 2.0


RunnerFactoryBuilder = Callable[[Settings, Shared], RunnerFactory]


def default_runner_factory(settings: Settings, shared: Shared) -> RunnerFactory:
    # fails at start-up, with the fix, if the key is missing
    return pipeline_runner_factory(settings.notary_config(), shared)


async def serve(
    settings: Settings,
    *,
    build_runner_factory: RunnerFactoryBuilder = default_runner_factory,
    ready: Callable[[int], None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code. ``ready(port)`` is called once listening."""
    use_logfmt()
    signals = _Signals()  # from the start: a SIGTERM during start-up also stops cleanly
    try:
        with holding_serve_lock(
            settings.state_dir,
            busy=f"another notaryd is already serving the state directory {settings.state_dir}; "
            "stop it first (or give this one its own NOTARYD_STATE_DIR)",
        ):
            await _serve(settings, build_runner_factory, ready, signals)
    finally:
        signals.remove()
    log.info("notaryd stopped")
    return exit_codes.SUCCESS


async def _serve(
    settings: Settings,
    build_runner_factory: RunnerFactoryBuilder,
    ready: Callable[[int], None] | None,
    signals: _Signals,
) -> None:
    token = ensure_token(settings.api_token, settings.state_dir)
    notifier = JobNotifier.from_settings(settings)
    db = await open_database(settings.database_path, settings.database_url)
    notifier.bind(db)
    # every job's (notary API, logs, ticket lookups), closed after the jobs stopped
    session = notary_session(settings.api_url, settings.ticket_url, trace_configs=session_traces(db, settings))
    try:
        shared = Shared(
            db=db,
            part_slots=PartSlots(settings.max_parts_in_flight),
            throttle=Throttle(settings.bandwidth_limit) if settings.bandwidth_limit else None,
            session=session,
        )
        daemon = await _Daemon.assemble(settings, build_runner_factory(settings, shared), shared,
                                        notifier, token)
        await daemon.run(notifier, ready, signals)
    finally:
        await asyncio.shield(notifier.close())
        await asyncio.shield(session.close())
        await asyncio.shield(db.close())


@dataclass
class _Daemon:
    """The daemon's parts, wired: what ``serve`` runs between start and stop."""

    settings: Settings
    scheduler: Scheduler
    broker: Broker
    api: ApiConfig
    guard: ConnectionGuard
    descriptors: int
    http: web.AppRunner

    @classmethod
    async def assemble(cls, settings: Settings, runner_factory: RunnerFactory, shared: Shared,
                       notifier: JobNotifier, token: str) -> _Daemon:
        broker = Broker(max_subscribers=settings.max_event_streams)
        registry = JobRegistry(await job_store_for(shared.db, settings))
        metrics = DaemonMetrics(
            jobs=registry.jobs, stuck_after_seconds=settings.stuck_after,
            last_success_at=await registry.store.last_finished_at(JobOutcome.ACCEPTED),
        )
        executor = JobExecutor(
            runner_factory,
            Flusher(registry.store, broker),
            metrics=metrics,
            confinement=Confinement(settings.allowed_roots, [archive_dir(settings.work_dir_in_effect)]),
            on_job_end=notifier.job_ended,
        )
        scheduler = scheduler_for(settings, registry, executor, part_slots=shared.part_slots,
                                  metrics=metrics.registry)
        api = _api_config(settings, token)
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        guard = ConnectionGuard(connection_cap(descriptors))
        app = make_app(scheduler=scheduler, metrics_=metrics, broker=broker, config=api, guard=guard)
        http = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
        )
        return cls(settings, scheduler, broker, api, guard, descriptors, http)

    async def run(self, notifier: JobNotifier, ready: Callable[[int], None] | None,
                  signals: _Signals) -> None:
        settings, scheduler = self.settings, self.scheduler
        async with scheduler:
            await self.http.setup()
            try:
                port = await _listen(self.http, settings, self.guard)  # before resuming: a clash must not run jobs
                resumed = await scheduler.resume()
                await notifier.resume()  # notifications an earlier run did not deliver
                self._log_serving(port, len(resumed))
                notify_ready(settings.listen_host, port)
                if ready is not None:
                    ready(port)
                stop = await signals.first
                notify_stopping()
                log.info("stopping %s", kv(signal=stop, grace_seconds=settings.shutdown_grace))
                await scheduler.drain(settings.shutdown_grace, hurry=signals.second)
                log.info("control API connections %s", kv(
                    accepted=self.guard.accepted, evicted=self.guard.evicted,
                    header_timeouts=self.guard.timed_out, refused=self.guard.refused,
                ))
            finally:
                self.broker.close_all()
                await self.http.cleanup()

    def _log_serving(self, port: int, resumed: int) -> None:
        settings = self.settings
        log.info("notaryd serving %s", kv(
            listen=f"{settings.listen_host}:{port}", version=self.api.version,
            state_dir=settings.state_dir, resumed_jobs=resumed, max_jobs=settings.max_jobs,
            max_parts_in_flight=settings.max_parts_in_flight,
            bandwidth_limit=settings.bandwidth_limit, max_connections=self.guard.max_connections,
            max_event_streams=settings.max_event_streams, descriptor_limit=self.descriptors,
        ))
        if not _is_loopback(settings.listen_host):
            log.warning(
                "the control API is reachable from the network %s",
                kv(listen=settings.listen, hint="keep the API token secret, or listen on 127.0.0.1"),
            )


def _api_config(settings: Settings, token: str) -> ApiConfig:
    token_hint = (
        "the token is NOTARYD_API_TOKEN"
        if settings.api_token
        else f"the token is in {token_path(settings.state_dir)} (or set NOTARYD_API_TOKEN)"
    )
    return ApiConfig(
        token=token,
        token_hint=token_hint,
        allowed_roots=settings.allowed_roots,
        version=notaryd_version(),
        host_names=_host_names(settings.listen_host) | frozenset(settings.allowed_hosts),
        probes_answer_any_host=not _is_loopback(settings.listen_host),
    )


async def _listen(http: web.AppRunner, settings: Settings, guard: ConnectionGuard) -> int:
    site = GuardedTCPSite(
        http,
        settings.listen_host,
        settings.listen_port,
        guard=guard,
        reuse_address=True,
    )
    try:
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise NotarydError(
                f"cannot listen on {settings.listen}: the address is in use; is another notaryd "
                "running? Stop it or set NOTARYD_LISTEN to another HOST:PORT"
            ) from None
        raise ConfigError(f"cannot listen on {settings.listen} (NOTARYD_LISTEN): {exc}") from None
    # The bound port matters when NOTARYD_LISTEN asks for port 0.
    for address in http.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return settings.listen_port


class _Signals:
    """SIGTERM/SIGINT as futures: ``first`` stops the daemon, ``second`` cuts the grace short."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.first: asyncio.Future[str] = self._loop.create_future()
        self.second: asyncio.Future[None] = self._loop.create_future()
        for sig in self.SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig.name)

    def _on_signal(self, name: str) -> None:
        if not self.first.done():
            self.first.set_result(name)
        elif not self.second.done():
            self.second.set_result(None)

    def remove(self) -> None:
        for sig in self.SIGNALS:
            self._loop.remove_signal_handler(sig)
        for future in (self.first, self.second):
            future.cancel()


def _host_names(listen_host: str) -> frozenset[str]:
    """Names the API answers to besides IP literals and localhost: the listen host, and the
    machine's own name when it listens beyond loopback (never a name a web page controls)."""
    names = {listen_host.lower().strip("[]")}
    if not _is_loopback(listen_host):
        names.add(socket.gethostname().lower())
    return frozenset(names)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
