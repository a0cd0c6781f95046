"""The live page at ``/``: static assets, the login, and the page's two actions.

Routes (``register`` adds them to the control API's application; ``openapi_paths`` documents
them)::

    GET  /                       the page (static HTML: no job data, whoever asks)
    GET  /static/{name}          its script and style sheet (no inline script: the CSP forbids it)
    GET  /login?token=T          trades a one-time login token for the session cookie, 303 to /
    GET  /ui/session             {"version", "logged_in", "csrf_token"?}: what the page may do
    POST /v1/login-links         bearer token only: a new one-time login URL (``notaryd open``)
    POST /v1/jobs/{id}/cancel    cancel, as DELETE /v1/jobs/{id} (what a page can send)
    POST /v1/jobs/{id}/resume    queue a failed or cancelled job's archive again -> 201 new job

The page reads the jobs from the control API with its session cookie and follows
``GET /v1/events``; see ``page_sessions`` for what the cookie may reach. Every answer of these
routes carries a strict Content-Security-Policy and is never cached.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web

from .api_context import CONFIG, SCHEDULER, ApiError, Handler, check_archive_path
from .job_states import JobOutcome
from .page_sessions import (
    LOGIN_LINK_SECONDS,
    PAGE_SESSIONS,
    SESSION_SECONDS,
    PageSessions,
    cookie_name,
    cross_origin_problem,
    request_session,
)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the login URL carries a token
    "Cache-Control": "no-store",
}
ASSETS = {  # name -> content type; nothing else under /static is served
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
RESUMABLE = frozenset({JobOutcome.FAILED, JobOutcome.CANCELLED})
_asset_cache: dict[str, bytes] = {}


def register(app: web.Application, *, cancel_job: Handler) -> None:
    """The page's routes; ``cancel_job`` is the API's DELETE handler, also served as a POST."""
    app[PAGE_SESSIONS] = PageSessions()
    app.router.add_get("/", index, allow_head=False)
    app.router.add_get("/static/{name}", static_asset, allow_head=False)
    app.router.add_get("/login", login, allow_head=False)
    app.router.add_get("/ui/session", session_info, allow_head=False)
    app.router.add_post("/v1/login-links", login_link)
    app.router.add_post("/v1/jobs/{id}/cancel", cancel_job)
    app.router.add_post("/v1/jobs/{id}/resume", resume)


async def _asset(name: str) -> bytes:
    if name not in _asset_cache:
        files = resources.files("service.daemon") / "web" / name
        _asset_cache[name] = await asyncio.to_thread(files.read_bytes)
    return _asset_cache[name]


def _page_response(body: bytes, content_type: str, status: int = 200) -> web.Response:
    response = web.Response(body=body, status=status, headers=SECURITY_HEADERS)
    response.headers["Content-Type"] = content_type
    return response


async def index(request: web.Request) -> web.Response:
    return _page_response(await _asset("index.html"), ASSETS["index.html"])


async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "index.html":
        raise web.HTTPNotFound()
    return _page_response(await _asset(name), ASSETS[name])


async def login(request: web.Request) -> web.Response:
    session_id = request.app[PAGE_SESSIONS].log_in(request.query.get("token", ""))
    response = web.Response(status=303, headers=SECURITY_HEADERS)
    if session_id is None:
        response.headers["Location"] = "/?login=failed"
        return response
    response.headers["Location"] = "/"
    response.set_cookie(cookie_name(request), session_id, path="/", httponly=True,
                        samesite="Strict", max_age=int(SESSION_SECONDS))
    return response


async def session_info(request: web.Request) -> web.Response:
    session = request_session(request)
    body: dict[str, Any] = {"version": request.app[CONFIG].version, "logged_in": False}
    if session is not None and cross_origin_problem(request) is None:
        body.update(logged_in=True, csrf_token=session.csrf_token)
    response = web.json_response(body, headers=SECURITY_HEADERS)
    return response


async def login_link(request: web.Request) -> web.Response:
    # only with the bearer token: the page's cookie does not reach this route (PAGE_ROUTES)
    token = request.app[PAGE_SESSIONS].new_login_token()
    return web.json_response(
        {"url": f"http://{request.host}/login?token={token}",
         "expires_in_seconds": int(LOGIN_LINK_SECONDS)},
        status=201, headers={"Cache-Control": "no-store"},
    )


async def resume(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    job = await scheduler.get(request.match_info["id"])
    if job.state not in RESUMABLE:
        raise ApiError(
            409, f"job {job.id} is {job.state}; only a failed or cancelled job can be resumed",
            "an Invalid or Rejected archive needs a new build; submit that",
        )
    path, identity = await asyncio.to_thread(check_archive_path, str(job.path),
                                             request.app[CONFIG].allowed_roots)
    new = await scheduler.submit(
        path, name=job.name, webhook=job.webhook, skip_preflight=job.skip_preflight,
        options=job.options, size=identity.size if identity is not None else 0, identity=identity,
    )
    return web.json_response(new.snapshot().to_json(), status=201,
                             headers={"Location": f"/v1/jobs/{new.id}"})


def openapi_paths() -> dict[str, Any]:
    """These routes in the OpenAPI document (``openapi.py`` merges them in)."""

    def page(summary: str, content: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "security": [], "responses": {
            "200": {"description": summary, "content": {content: {"schema": {"type": "string"}}}}}}}

    def job_action(operation: str, summary: str, code: str) -> dict[str, Any]:
        return {"post": {
            "operationId": operation, "summary": summary,
            "description": "Bearer token, or the page's session cookie from the same origin "
                           "with its X-CSRF-Token.",
            "security": [{"bearer": []}, {}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {code: {"description": "The job.", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "401": {"description": "No credential."}, "403": {"description": "Cross-origin or no CSRF token."},
                "404": {"description": "No such job."}, "409": {"description": "Not in a state for this."}},
        }}

    return {
        "/": page("The live page (job data only after login).", "text/html"),
        "/static/{name}": page("The page's script and style sheet.", "text/plain"),
        "/login": {"get": {"summary": "Trade a one-time login token for the page's session cookie.",
                           "security": [], "responses": {"303": {"description": "To / (or /?login=failed)."}}}},
        "/ui/session": {"get": {"summary": "The page's session: version, logged_in, csrf_token.",
                                "security": [], "responses": {"200": {"description": "Session.", "content": {
                                    "application/json": {"schema": {"type": "object"}}}}}}},
        "/v1/login-links": {"post": {
            "operationId": "createLoginLink", "summary": "A one-time login URL for the live page.",
            "security": [{"bearer": []}],
            "responses": {"201": {"description": "{url, expires_in_seconds}", "content": {
                "application/json": {"schema": {"type": "object"}}}}, "401": {"description": "No token."}},
        }},
        "/v1/jobs/{id}/cancel": job_action("cancelJobByPost", "Cancel a job (as DELETE /v1/jobs/{id}).", "200"),
        "/v1/jobs/{id}/resume": job_action(
            "resumeJob", "Queue a failed or cancelled job's archive again.", "201"),
    }
