"""Who may use the live page at ``/``: one-time login links, session cookies, CSRF tokens.

Like Jupyter's token login: ``notaryd open`` asks the daemon (with the API's bearer token) for a
login link; the first visit of it trades the link's one-time token for a session cookie
(HttpOnly, SameSite=Strict) and redirects to ``/``, so the token leaves the address bar. The page
then calls the control API with that cookie instead of the bearer token, which the browser never
sees.

Cookies are scoped to a host, not a port: every page served from another port of 127.0.0.1 is
*same-site* and its requests carry the cookie. So the cookie alone is never enough:

* it counts only for the page's own routes (``PAGE_ROUTES``), never to queue a new archive or
  mint login links;
* only for same-origin requests: a ``Sec-Fetch-Site`` other than ``same-origin`` or an
  ``Origin`` other than the daemon's own is refused;
* a request that changes something (cancel, resume) must also carry the session's CSRF token in
  ``X-CSRF-Token``, which the page reads from ``GET /ui/session`` (a same-origin read: another
  port cannot read the answer, unlike a cookie, which it could).

Tokens are kept only as SHA-256 digests (a lookup by digest leaks no timing about the token) and
in memory: a daemon restart logs every page out. Both stores are bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

LOGIN_LINK_SECONDS = 120.0
SESSION_SECONDS = 12 * 3600.0
MAX_LOGIN_LINKS = 32
MAX_SESSIONS = 64
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PREFIX = "notaryd-session-"

# (method, route template) the session cookie may reach; everything else needs the bearer token.
PAGE_ROUTES = frozenset({
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/log"),
    ("GET", "/v1/events"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("POST", "/v1/jobs/{id}/resume"),
})
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Session:
    csrf_token: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PageSessions:
    """One-time login tokens and the sessions they open; ``clock`` is wall-clock seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._links: OrderedDict[str, float] = OrderedDict()  # digest -> expiry
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # digest -> session

    def new_login_token(self) -> str:
        self._expire()
        token = secrets.token_urlsafe(32)
        self._links[_digest(token)] = self._clock() + LOGIN_LINK_SECONDS
        while len(self._links) > MAX_LOGIN_LINKS:
            self._links.popitem(last=False)  # the oldest link stops working
        return token

    def log_in(self, login_token: str) -> str | None:
        """A new session id for a valid, unused login token (which is used up); else None."""
        self._expire()
        if self._links.pop(_digest(login_token), None) is None:
            return None
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = Session(
            csrf_token=secrets.token_urlsafe(32), expires_at=self._clock() + SESSION_SECONDS
        )
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id

    def session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        self._expire()
        return self._sessions.get(_digest(session_id))

    def _expire(self) -> None:
        now = self._clock()
        for digest in [d for d, expiry in self._links.items() if expiry <= now]:
            del self._links[digest]
        for digest in [d for d, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[digest]


PAGE_SESSIONS = web.AppKey("page_sessions", PageSessions)


def cookie_name(request: web.BaseRequest) -> str:
    """Per port: two daemons on one host must not overwrite each other's session."""
    port = request.url.port or 80
    return f"{COOKIE_PREFIX}{port}"


def request_session(request: web.BaseRequest) -> Session | None:
    sessions = request.app.get(PAGE_SESSIONS) if isinstance(request, web.Request) else None
    if sessions is None:
        return None
    return sessions.session(request.cookies.get(cookie_name(request)))


def cross_origin_problem(request: web.BaseRequest) -> str | None:
    """Why this is not a same-origin browser request, or None."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"a {site} request cannot use the page's session"
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"http://{request.host}":
        return "a request from another origin cannot use the page's session"
    return None


@dataclass(frozen=True)
class CookieVerdict:
    allowed: bool
    problem: str | None = None  # why a request that carried a session was refused


def check_page_session(request: web.Request) -> CookieVerdict:
    """May this request (without a bearer token) use the page's session cookie?"""
    session = request_session(request)
    if session is None:
        return CookieVerdict(False)
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    if (request.method, template) not in PAGE_ROUTES:
        return CookieVerdict(False)
    if problem := cross_origin_problem(request):
        return CookieVerdict(False, problem)
    if request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "")
        if not presented or not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
            return CookieVerdict(False, f"missing or wrong {CSRF_HEADER}")
    return CookieVerdict(True)
