"""The control API (aiohttp, JSON). Thin: validates input, then asks the scheduler.

Routes (a contract, see CONTRACT.md and ``openapi.py``)::

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
unknown ``/v1`` paths answer 401 without it). Errors are ``{"error": ..., "hint": ...}``.
Archive paths are resolved (symlinks included) before the allowed-roots check, so a link under
an allowed root cannot point the daemon at a file outside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .broker import Broker
from .job_options import JobOptions
from .jobs import TERMINAL_STATES, JobNotFound
from .metrics import DaemonMetrics
from .openapi import openapi_document
from .scheduler import DuplicateJob, JobFinished, RunRequest, Scheduler, SchedulerClosed
from .token import token_matches

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiConfig:
    token: str
    token_hint: str  # where the CLI finds the token, for the 401 hint
    allowed_roots: tuple[Path, ...]
    version: str
    heartbeat_seconds: float = 15.0


SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", DaemonMetrics)
BROKER = web.AppKey("broker", Broker)
CONFIG = web.AppKey("config", ApiConfig)


class ApiError(Exception):
    def __init__(self, status: int, error: str, hint: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.hint = hint


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
        return _error_response(404, str(exc), "`notaryd jobs` lists the jobs")
    except (DuplicateJob, JobFinished) as exc:
        return _error_response(409, str(exc))
    except SchedulerClosed as exc:
        return _error_response(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        hints = {404: "see GET /v1/openapi.json for the routes", 405: "see GET /v1/openapi.json"}
        return _error_response(exc.status, f"{exc.reason}: {request.method} {request.path}", hints.get(exc.status))


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/v1" or request.path.startswith("/v1/"):
        config = request.app[CONFIG]
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
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
    name = _optional_str(body, "name")
    webhook = _optional_str(body, "webhook")
    if webhook is not None and not webhook.startswith(("https://", "http://")):
        raise ApiError(400, f"'webhook' must be an http(s) URL, got {webhook!r}")
    skip_preflight = body.get("skip_preflight", False)
    if not isinstance(skip_preflight, bool):
        raise ApiError(400, "'skip_preflight' must be true or false")
    try:
        options = JobOptions.from_body(body)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    roots = request.app[CONFIG].allowed_roots
    path, size = await asyncio.to_thread(check_archive_path, raw_path, roots)
    job = await request.app[SCHEDULER].submit(
        RunRequest(path, name=name, webhook=webhook, skip_preflight=skip_preflight, options=options),
        size=size,
    )
    return web.json_response(job.snapshot(), status=201, headers={"Location": f"/v1/jobs/{job.id}"})


async def list_jobs(request: web.Request) -> web.Response:
    jobs = await request.app[SCHEDULER].recent()
    return web.json_response({"jobs": [job.snapshot() for job in jobs]})


async def get_job(request: web.Request) -> web.Response:
    job = await request.app[SCHEDULER].get(request.match_info["id"])
    return web.json_response(job.snapshot())


async def cancel_job(request: web.Request) -> web.Response:
    # Shielded: a client that hangs up must not leave a half-cancelled job behind.
    job = await asyncio.shield(request.app[SCHEDULER].cancel(request.match_info["id"]))
    return web.json_response(job.snapshot())


async def job_log(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    job = await scheduler.get(request.match_info["id"])
    if not job.state.terminal:
        raise ApiError(
            409,
            f"job {job.id} is still {job.state}; the notary log exists once the notary service has decided",
            f"wait with `notaryd job {job.id}` or `notaryd watch`, then ask again",
        )
    path = await scheduler.log_path(job)
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
    with broker.subscribe(job_id) as sub:  # subscribe first: no update falls between the two
        initial = [await scheduler.get(job_id)] if job_id else scheduler.jobs()
        await response.prepare(request)
        try:
            await response.write(b"retry: 2000\n\n")
            for job in initial:
                await response.write(_sse("job", job.snapshot()))
            if job_id and initial[0].state.terminal:
                return response
            while not sub.closed:
                batch = await sub.next_batch(heartbeat)
                if not batch:
                    await response.write(b": heartbeat\n\n")
                    continue
                for snapshot in batch:
                    await response.write(_sse("job", snapshot))
                if job_id and any(s["state"] in _TERMINAL_NAMES for s in batch):
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
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the application --------------------------------------------------------------------------


def make_app(
    *, scheduler: Scheduler, metrics_: DaemonMetrics, broker: Broker, config: ApiConfig
) -> web.Application:
    app = web.Application(middlewares=[_errors, _auth], client_max_size=64 * 1024)
    app[SCHEDULER] = scheduler
    app[METRICS] = metrics_
    app[BROKER] = broker
    app[CONFIG] = config
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs, allow_head=False)
    app.router.add_get("/v1/jobs/{id}", get_job, allow_head=False)
    app.router.add_delete("/v1/jobs/{id}", cancel_job)
    app.router.add_get("/v1/jobs/{id}/log", job_log, allow_head=False)
    app.router.add_get("/v1/events", events, allow_head=False)
    app.router.add_get("/v1/openapi.json", openapi, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
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


def check_archive_path(raw: str, allowed_roots: Sequence[Path]) -> tuple[Path, int]:
    """Resolve ``raw`` and check it is a readable, non-empty file under an allowed root.

    Returns (resolved path, size in bytes). Blocking (stat, open): call it off the loop.
    """
    given = Path(raw).expanduser()
    if not given.is_absolute():
        raise ApiError(400, f"path must be absolute, got {raw!r}", "the daemon does not know your working directory")
    resolved = Path(os.path.realpath(given))
    roots = [Path(os.path.realpath(root)) for root in allowed_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in allowed_roots) or "(none)"
        raise ApiError(
            403,
            f"{given} is outside the allowed roots ({shown})",
            "move the archive under one of them, or add its folder to NOTARYD_ALLOWED_ROOTS "
            "and restart the daemon",
        )
    if not resolved.exists():
        raise ApiError(400, f"{given}: no such file", "check the path; it must exist on the daemon's machine")
    if resolved.is_dir() and resolved.suffix.lower() == ".app":
        return resolved, 0  # a bundle: the pipeline zips it (uploader.bundle_zip)
    if resolved.is_dir():
        raise ApiError(
            400,
            f"{given} is a directory; give a .app bundle, or a .zip, .pkg or .dmg",
            f"zip it first: ditto -c -k --keepParent {given} {given}.zip",
        )
    if not resolved.is_file():
        raise ApiError(400, f"{given} is not a regular file")
    try:
        with open(resolved, "rb"):
            pass
        size = resolved.stat().st_size
    except PermissionError:
        raise ApiError(400, f"{given}: the daemon's user cannot read it", "fix its permissions") from None
    if size == 0:
        raise ApiError(400, f"{given} is empty")
    return resolved, size


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
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


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


_TERMINAL_NAMES = frozenset(str(state) for state in TERMINAL_STATES)
