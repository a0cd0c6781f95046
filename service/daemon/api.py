"""The control API (aiohttp, JSON). Thin: validates input, then asks the scheduler.

Routes (a contract: the README's "Control API and metrics" and ``openapi.py``)::

    POST   /v1/jobs            {"path", "name"?, "webhook"?, "skip_preflight"?, "staple"?,
                                "force"?, "keep_archive"?} -> 201 job
    GET    /v1/jobs            {"jobs": [job, ...]} newest first
    GET    /v1/jobs/{id}       job
    DELETE /v1/jobs/{id}       cancels; aborts the multipart upload -> job
    GET    /v1/jobs/{id}/log   saved notary log + readable report (409 before it exists)
    GET    /v1/events          server-sent events (``?job=ID`` for one job)
    GET    /v1/openapi.json    OpenAPI 3.1
    GET    /healthz            no token
    GET    /metrics            no token; Prometheus text format

Every ``/v1`` request needs ``Authorization: Bearer <token>`` (checked before routing, so even
unknown ``/v1`` paths answer 401 without it). Every request must name the daemon in its
``Host`` header (an IP literal, ``localhost``, the NOTARYD_LISTEN host, or a name in
NOTARYD_ALLOWED_HOSTS): a web page that rebinds its own DNS name to 127.0.0.1 sends its own
name and is refused (421). When the daemon listens beyond loopback, ``/healthz`` and
``/metrics`` (no secrets) answer any Host, so Prometheus can scrape it by its DNS name. Errors are ``{"error": ..., "hint": ...}``: every malformed request gets a
JSON 4xx, and an unexpected failure a JSON 500 with no traceback (that goes to the log).
Archive paths are resolved (symlinks included) before the allowed-roots check, then opened once
without following links (``uploader.source_file``) and checked on the opened descriptor.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from uploader.source_file import MAX_PATH_CHARS

from . import live_page
from .api_context import (
    BROKER,
    CONFIG,
    METRICS,
    SCHEDULER,
    STREAMS_REFUSED,
    ApiConfig,
    ApiError,
    Handler,
    check_archive_path,
)
from .broker import Broker, StreamsFull
from .connections import ConnectionGuard
from .job_options import JobOptions
from .jobs import JobNotFound, job_name_problem
from .logfmt import Occasional
from .metrics import DaemonMetrics
from .openapi import openapi_document
from .page_sessions import check_page_session
from .scheduler import DuplicateJob, JobFinished, Scheduler, SchedulerClosed
from .snapshot import JobSnapshot
from .token import token_matches

log = logging.getLogger(__name__)

MAX_WEBHOOK_CHARS = 2048


#: Paths without secrets that answer any Host when the daemon listens beyond loopback.
PROBE_PATHS = frozenset({"/metrics", "/healthz"})

def _error_response(status: int, error: str, hint: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": error}
    if hint:
        body["hint"] = hint
    headers = {"WWW-Authenticate": 'Bearer realm="notaryd"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.error, exc.hint)
    except JobNotFound as exc:
        return _error_response(404, str(exc))  # its message already says where to look
    except (DuplicateJob, JobFinished) as exc:
        return _error_response(409, str(exc))
    except SchedulerClosed as exc:
        return _error_response(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        hints = {404: "see GET /v1/openapi.json for the routes", 405: "see GET /v1/openapi.json"}
        shown = request.path if len(request.path) <= 200 else request.path[:200] + "…"
        return _error_response(exc.status, f"{exc.reason}: {request.method} {shown}", hints.get(exc.status))
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # a bug: the client gets one line, the log gets the traceback
        log.exception("request failed %s", request.method)
        return _error_response(500, f"internal error ({type(exc).__name__})", "see the daemon log")


@web.middleware
async def _host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a Host the daemon does not go by: DNS rebinding (a web page whose name now
    resolves to 127.0.0.1) must not read /metrics or reach /v1."""
    host = request.headers.get("Host", "")
    config = request.app[CONFIG]
    probe = request.path in PROBE_PATHS and config.probes_answer_any_host
    if not probe and not host_allowed(host, config.host_names):
        shown = host if len(host) <= 100 else host[:100] + "…"
        return _error_response(
            421,
            f"this daemon does not answer to the Host {shown!r}",
            "connect to 127.0.0.1, localhost or the NOTARYD_LISTEN address, or add the name "
            "to NOTARYD_ALLOWED_HOSTS",
        )
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/v1" or request.path.startswith("/v1/"):
        config = request.app[CONFIG]
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            page = check_page_session(request)  # the live page's cookie: same origin, CSRF
            if page.allowed:
                return await handler(request)
            if page.problem:
                raise ApiError(403, page.problem, "reload the page at / (or log in: notaryd open)")
            raise ApiError(401, "missing API token", f"send 'Authorization: Bearer <token>'; {config.token_hint}")
        if not token_matches(config.token, presented.strip()):
            raise ApiError(401, "wrong API token", config.token_hint)
    return await handler(request)


# -- handlers ---------------------------------------------------------------------------------


async def create_job(request: web.Request) -> web.Response:
    body = await _json_object(request)
    allowed = ("path", "name", "webhook", "skip_preflight", *JobOptions.names())
    unknown = set(body) - set(allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}", f"allowed: {', '.join(allowed)}")
    raw_path = body.get("path")
    if not isinstance(raw_path, str) or not raw_path:
        raise ApiError(400, "'path' is required: the absolute path of a .app, .zip, .pkg or .dmg")
    if "\0" in raw_path or len(raw_path) > MAX_PATH_CHARS:
        raise ApiError(400, f"'path' must be at most {MAX_PATH_CHARS} characters without NUL bytes")
    name = _optional_str(body, "name")
    if name is not None and (problem := job_name_problem(name)):
        raise ApiError(400, problem)
    webhook = _optional_str(body, "webhook")
    if webhook is not None and (
        not webhook.startswith(("https://", "http://"))
        or len(webhook) > MAX_WEBHOOK_CHARS
        or not webhook.isprintable()
    ):
        shown = webhook if len(webhook) <= 100 else webhook[:100] + "…"
        raise ApiError(400, f"'webhook' must be an http(s) URL of at most {MAX_WEBHOOK_CHARS} characters, got {shown!r}")
    skip_preflight = body.get("skip_preflight", False)
    if not isinstance(skip_preflight, bool):
        raise ApiError(400, "'skip_preflight' must be true or false")
    try:
        options = JobOptions.from_body(body)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    roots = request.app[CONFIG].allowed_roots
    path, identity = await asyncio.to_thread(check_archive_path, raw_path, roots)
    job = await request.app[SCHEDULER].submit(
        path, name=name, webhook=webhook, skip_preflight=skip_preflight, options=options,
        size=identity.size if identity is not None else 0,
        identity=identity,
    )
    return web.json_response(job.snapshot().to_json(), status=201, headers={"Location": f"/v1/jobs/{job.id}"})


async def list_jobs(request: web.Request) -> web.Response:
    jobs = await request.app[SCHEDULER].recent()
    return web.json_response({"jobs": [job.snapshot().to_json() for job in jobs]})


async def get_job(request: web.Request) -> web.Response:
    job = await request.app[SCHEDULER].get(request.match_info["id"])
    return web.json_response(job.snapshot().to_json())


async def cancel_job(request: web.Request) -> web.Response:
    # Shielded: a client that hangs up must not leave a half-cancelled job behind.
    job = await asyncio.shield(request.app[SCHEDULER].cancel(request.match_info["id"]))
    return web.json_response(job.snapshot().to_json())


async def job_log(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    job = await scheduler.get(request.match_info["id"])
    if not job.terminal:
        raise ApiError(
            409,
            f"job {job.id} is still {job.state}; the notary log exists once the notary service has decided",
            f"wait with `notaryd job {job.id}` or `notaryd watch`, then ask again",
        )
    path = await scheduler.log_path(job)
    if job.submission_id is None and job.report:  # preflight's findings: nothing was submitted
        return web.json_response({"job_id": job.id, "submission_id": None, "notary_status": None,
                                  "log_path": None, "log": None, "summary": None,
                                  "report": job.report})
    if path is None or job.submission_id is None:
        raise ApiError(
            404,
            f"job {job.id} ended {job.state} without a notary log" + (f": {job.error}" if job.error else ""),
        )
    try:
        doc = await asyncio.to_thread(_read_json, path)
    except (OSError, ValueError) as exc:
        raise ApiError(404, f"job {job.id}: cannot read its saved notary log {path}: {exc}") from None
    from uploader.notary.logreport import parse_log, render_report, to_json

    report = parse_log(doc) if isinstance(doc, dict) else None
    return web.json_response(
        {
            "job_id": job.id,
            "submission_id": job.submission_id,
            "notary_status": job.notary_status,
            "log_path": str(path),
            "log": doc,
            "summary": to_json(report) if report else None,
            "report": job.report or (render_report(report) if report else ""),
        }
    )


async def events(request: web.Request) -> web.StreamResponse:
    scheduler, broker = request.app[SCHEDULER], request.app[BROKER]
    heartbeat = request.app[CONFIG].heartbeat_seconds
    job_id = request.query.get("job")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        subscription = broker.subscribe(job_id)
    except StreamsFull as full:
        request.app[STREAMS_REFUSED].happened(max_event_streams=full.limit)
        raise ApiError(429, str(full), "close an event stream you do not need (`notaryd watch`, "
                       "`submit --wait`), or raise NOTARYD_MAX_EVENT_STREAMS") from None
    with subscription as sub:  # subscribe first: no update falls between the two
        initial = [await scheduler.get(job_id)] if job_id else scheduler.jobs()
        await response.prepare(request)
        try:
            await response.write(b"retry: 2000\n\n")
            for job in initial:
                await response.write(_sse("job", job.snapshot()))
            if job_id and initial[0].terminal:
                return response
            while not sub.closed:
                batch = await sub.next_batch(heartbeat)
                if not batch:
                    await response.write(b": heartbeat\n\n")
                    continue
                for snapshot in batch:
                    await response.write(_sse("job", snapshot))
                if job_id and any(snapshot.terminal for snapshot in batch):
                    break  # a one-job stream ends with the job
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
    return response


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[CONFIG].version))


async def healthz(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    status = "draining" if scheduler.closed else "ok"
    counts: dict[str, int] = {}
    for job in scheduler.jobs():
        counts[str(job.state)] = counts.get(str(job.state), 0) + 1
    return web.json_response(
        {"status": status, "version": request.app[CONFIG].version, "jobs": counts},
        status=503 if scheduler.closed else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    metrics_ = request.app[METRICS]
    body = metrics_.render() + await asyncio.to_thread(metrics_.render_process)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the application --------------------------------------------------------------------------


def make_app(
    *,
    scheduler: Scheduler,
    metrics_: DaemonMetrics,
    broker: Broker,
    config: ApiConfig,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    middlewares = [_errors, _host_check, _auth]
    if guard is not None:  # outermost: a request is in progress from before any other check
        middlewares.insert(0, guard.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[SCHEDULER] = scheduler
    app[METRICS] = metrics_
    app[BROKER] = broker
    app[CONFIG] = config
    app[STREAMS_REFUSED] = Occasional(log, "event streams at their cap; refusing new ones")
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs, allow_head=False)
    app.router.add_get("/v1/jobs/{id}", get_job, allow_head=False)
    app.router.add_delete("/v1/jobs/{id}", cancel_job)
    app.router.add_get("/v1/jobs/{id}/log", job_log, allow_head=False)
    app.router.add_get("/v1/events", events, allow_head=False)
    app.router.add_get("/v1/openapi.json", openapi, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    live_page.register(app, cancel_job=cancel_job)
    return app


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(METHOD, path template) of every registered route, for the OpenAPI check."""
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if template is not None:
            found.append((route.method, str(template)))
    return found


# -- input checks -----------------------------------------------------------------------------


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """Is ``host`` (a Host header: name or IP literal, optional port) one the daemon goes by?

    IP literals are always fine: DNS rebinding needs a *name* the attacker controls.
    """
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower().rstrip(".")
    if not name:
        return False
    if name == "localhost" or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        async with asyncio.timeout(request.app[CONFIG].body_timeout_seconds):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(408, "the request body did not arrive in time", "send the whole body at once") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the request body is not valid JSON", 'send e.g. {"path": "/Users/me/App.zip"}') from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", 'send e.g. {"path": "/Users/me/App.zip"}')
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"'{key}' must be a non-empty string")
    return value


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _sse(event: str, snapshot: JobSnapshot) -> bytes:
    data = json.dumps(snapshot.to_json(), separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n".encode()
