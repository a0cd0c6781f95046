"""A local emulator of Apple's Notary REST API (``/notary/v2``) plus its upload bucket.

Behaviour follows the reference note on the notary API (observed, not just documented):

* ``POST /notary/v2/submissions`` → ``{"data": {"type": "newSubmissions", "id", "attributes":
  {awsAccessKeyId, awsSecretAccessKey, awsSessionToken, bucket, object}}, "meta": {}}``; the
  credentials are STS-like (``ASIA…`` + session token), last ``credential_lifetime_seconds``
  (12 h by default) and may write only ``prod/<role id>:<submission id>`` in the bucket.
* ``GET /notary/v2/submissions[/{id}[/logs]]``: ids match case-insensitively; status strings are
  ``In Progress`` / ``Accepted`` / ``Invalid`` / ``Rejected``; the history holds the team's 100
  newest, newest first; logs answer 404 ``submissionsLog`` until a verdict exists, then a
  pre-signed, expiring ``developerLogUrl`` served by the emulator at ``/logs-download/...``,
  which refuses requests that also carry an Authorization header (as S3 does), a bad signature
  or an expired URL.
* JSON is served as ``application/octet-stream``; errors are JSON:API with string ``status``;
  authentication failures are the plain-text ``Unauthenticated`` + ``Request ID`` body.
* JWTs: ES256 with a registered ``kid``, ``iss`` equal to the key's issuer, ``aud``
  ``appstoreconnect-v1``, ``exp - iat`` ≤ 20 min + tolerance, ``iat`` not in the future beyond the
  leeway, not expired, no ``sub: "user"`` (individual keys cannot notarise).
* Processing starts when the object lands (``PutObject``/``CompleteMultipartUpload`` through
  ``S3Front``): the emulator streams the stored object back, hashes it and looks for verdict
  markers off the event loop, waits ``processing_delay_seconds`` and then settles the verdict
  (``VerdictRule``s; Accepted otherwise) unless the submission is stuck.
* Tickets (``tickets``, ``service.emulator.tickets``): the stapling lookup at ``ticket_url``
  serves tickets only for signatures in accepted uploads, ``NOT_FOUND`` for a while first.
* Faults (``Faults``, mutable at run time): agreement 403, ``FORBIDDEN.MISSING_PROVIDER``, 429
  ``RATE_LIMIT`` and 5xx bursts (by count or until a time), connection resets on status polls,
  stuck submissions, an hourly per-key request budget.

Counters for tests: ``submissions`` (every submission created), ``requests[(endpoint, code)]``,
``token_stats``, ``auth_failures`` (why each 401 was given), ``s3.requests``.

Everything runs on one event loop; ``BackgroundEmulator`` runs it on a thread for synchronous
callers (subprocess tests, ``notaryd demo``). Times are Unix seconds from the injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.emulator.s3front import Backend, Grant, S3Front
from service.emulator.tcp import reset_connection
from service.emulator.tickets import LOOKUP_PATH, TicketDesk
from uploader.constants import CREDENTIAL_LIFETIME_SECONDS, DEFAULT_REGION

log = logging.getLogger(__name__)
T = TypeVar("T")

IN_PROGRESS = "In Progress"
ACCEPTED = "Accepted"
INVALID = "Invalid"
REJECTED = "Rejected"

AUDIENCE = "appstoreconnect-v1"
INVALID_MARKER = b"NOTARY-EMULATOR:INVALID"
REJECTED_MARKER = b"NOTARY-EMULATOR:REJECTED"

AGREEMENT_TITLE = "A required agreement is missing or has expired."
AGREEMENT_DETAIL = (
    "This request requires an in-effect agreement that has not been signed or has expired. "
    "Ensure your team has signed the necessary legal agreements and that they are not expired."
)
_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")
_COMMON_HEADERS = {
    "Server": "daiquiri/3.0.0",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
}


def _default_issues() -> tuple[Mapping[str, Any], ...]:
    doc = "https://developer.apple.com/documentation/security/resolving-common-notarization-issues"
    return (
        {
            "severity": "error",
            "code": None,
            "path": "app.zip/App.app/Contents/MacOS/App",
            "message": "The binary is not signed with a valid Developer ID certificate.",
            "docUrl": doc + "#3087721",
            "architecture": "x86_64",
        },
        {
            "severity": "error",
            "code": None,
            "path": "app.zip/App.app/Contents/MacOS/App",
            "message": "The binary is not signed with a valid Developer ID certificate.",
            "docUrl": doc + "#3087721",
            "architecture": "arm64",
        },
        {
            "severity": "error",
            "code": None,
            "path": "app.zip/App.app/Contents/MacOS/App",
            "message": "The executable does not have the hardened runtime enabled.",
            "docUrl": doc + "#3087724",
            "architecture": "arm64",
        },
    )


@dataclass(frozen=True)
class VerdictRule:
    """Gives a submission a non-Accepted verdict when its name or uploaded bytes match.

    ``name_glob`` is an fnmatch pattern on the submission name; ``content_marker`` a byte string
    found anywhere in the uploaded object. A rule with both needs both; the first match wins.
    """

    status: str = INVALID
    name_glob: str | None = None
    content_marker: bytes | None = None
    status_code: int = 4000
    status_summary: str = "Archive contains critical validation errors"
    issues: tuple[Mapping[str, Any], ...] = field(default_factory=_default_issues)

    def matches(self, name: str, markers_found: frozenset[bytes]) -> bool:
        if self.name_glob is None and self.content_marker is None:
            return False
        if self.name_glob is not None and not fnmatch.fnmatchcase(name, self.name_glob):
            return False
        return self.content_marker is None or self.content_marker in markers_found


DEFAULT_RULES: tuple[VerdictRule, ...] = (
    VerdictRule(status=INVALID, content_marker=INVALID_MARKER),
    VerdictRule(
        status=REJECTED,
        content_marker=REJECTED_MARKER,
        status_code=7000,
        status_summary="Team is not yet configured for notarization. Please contact Developer "
        "Programs Support at developer.apple.com under the topic Development and Technical / "
        "Other Development or Technical Questions.",
        issues=(),
    ),
)


@dataclass(frozen=True)
class EmulatorConfig:
    bucket: str = "notary-submissions-prod"
    role_id: str = "AROAEMULATORNOTARYD01"
    region: str = DEFAULT_REGION
    credential_lifetime_seconds: float = CREDENTIAL_LIFETIME_SECONDS
    processing_delay_seconds: float = 2.0
    log_url_lifetime_seconds: float = 3 * 3600
    jwt_max_lifetime_seconds: float = 20 * 60
    jwt_lifetime_tolerance_seconds: float = 60.0
    clock_leeway_seconds: float = 60.0
    history_limit: int = 100
    hourly_request_limit: int | None = None  # per key id; None: unlimited
    inspect_uploads: bool = True  # hash the stored object and look for verdict markers
    rules: tuple[VerdictRule, ...] = DEFAULT_RULES


@dataclass
class Faults:
    """Injected misbehaviour; change fields at any time (from the emulator's loop thread).

    Burst counters are consumed one per matching request; ``*_until`` fields are clock times
    before which every matching request fails. ``endpoints`` limits the 429/5xx faults to the
    named endpoints (``submit``, ``status``, ``logs``, ``history``); None means all.
    """

    agreement_missing: bool = False
    missing_provider: bool = False
    rate_limit_next: int = 0
    rate_limit_until: float = 0.0
    retry_after_seconds: int | None = None
    server_error_next: int = 0
    server_error_until: float = 0.0
    server_error_status: int = 503
    reset_status_next: int = 0
    reset_status_until: float = 0.0
    endpoints: frozenset[str] | None = None
    stuck_next: int = 0  # the next N submissions created never leave "In Progress"
    stuck_name_glob: str | None = None


@dataclass
class TeamKey:
    key_id: str
    issuer_id: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    path: Path | None = None  # where make_team_key wrote the private key


@dataclass
class EmulatedSubmission:
    id: str
    name: str
    sha256: str
    issuer_id: str
    key_id: str
    created_at: float
    grant: Grant
    webhook: str | None = None
    status: str = IN_PROGRESS
    stuck: bool = False
    landed_at: float | None = None
    uploaded_sha256: str | None = None
    uploaded_bytes: int | None = None
    completed_at: float | None = None
    log: dict[str, Any] | None = None
    pending: tuple[str, dict[str, Any]] | None = None  # verdict held back while stuck
    processing: bool = False

    @property
    def object(self) -> str:
        return self.grant.key


@dataclass
class TokenStats:
    accepted: int = 0
    distinct: int = 0
    max_lifetime_seconds: float = 0.0  # largest exp - iat accepted
    max_age_seconds: float = 0.0  # largest now - iat seen on an accepted token
    _seen: set[str] = field(default_factory=set, repr=False)


TEAM = web.RequestKey("team", TeamKey)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def backend_for(server: Any) -> Backend:
    """``Backend`` for a started ``service.emulator.seaweed.SeaweedServer``."""
    return Backend(
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
    )


class NotaryEmulator:
    """The notary API on ``api_url`` and its upload bucket on ``s3_endpoint_url`` (loopback)."""

    def __init__(
        self,
        backend: Backend,
        *,
        config: EmulatorConfig | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        s3_port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.faults = faults or Faults()
        self.host = host
        self._api_port = api_port
        self._s3_port = s3_port
        self._clock = clock
        self.keys: dict[str, TeamKey] = {}
        self.submissions: dict[str, EmulatedSubmission] = {}
        self._by_object: dict[str, str] = {}
        self._grants: dict[str, Grant] = {}
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.token_stats = TokenStats()
        self.auth_failures: list[str] = []
        self._budget: dict[str, collections.deque[float]] = {}
        self._log_secret = secrets.token_bytes(32)
        self._webhook_key = ec.generate_private_key(ec.SECP256R1())
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []
        self.s3 = S3Front(
            backend,
            self._grant_for,
            self._on_landed,
            region=self.config.region,
            virtual_host_buckets=[self.config.bucket],
            clock=clock,
        )
        self.tickets = TicketDesk(clock)
        self.app = self._make_api_app()
        self.api_port = 0
        self.s3_port = 0

    def __repr__(self) -> str:
        return (
            f"<NotaryEmulator api_url={self.api_url if self.api_port else None!r} "
            f"submissions={len(self.submissions)}>"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/notary/v2"

    @property
    def ticket_url(self) -> str:
        return f"{self.base_url}{LOOKUP_PATH}"

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    async def start(self) -> NotaryEmulator:
        await self.s3.create_bucket(self.config.bucket)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            self.api_port = await self._serve(self.app, self._api_port)
            self.s3_port = await self._serve(self.s3.app, self._s3_port)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        address = runner.addresses[0]
        return int(address[1])

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.s3._close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> NotaryEmulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- keys ---------------------------------------------------------------------------------

    def register_key(
        self, key_id: str, issuer_id: str, public_key: ec.EllipticCurvePublicKey
    ) -> TeamKey:
        team_key = TeamKey(key_id=key_id, issuer_id=issuer_id, public_key=public_key)
        self.keys[key_id] = team_key
        return team_key

    def make_team_key(
        self, directory: Path, *, key_id: str | None = None, issuer_id: str | None = None
    ) -> TeamKey:
        """Generate a P-256 team key, write ``AuthKey_<KEYID>.p8`` (0600) and register it.

        Writes a small file synchronously: call before serving traffic or via to_thread.
        """
        key_id = key_id or "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10)
        )
        issuer_id = issuer_id or str(uuid.uuid4())
        private_key = ec.generate_private_key(ec.SECP256R1())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"AuthKey_{key_id}.p8"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        team_key = self.register_key(key_id, issuer_id, private_key.public_key())
        team_key.path = path
        return team_key

    # -- submissions ----------------------------------------------------------------------------

    @property
    def submissions_created(self) -> int:
        return len(self.submissions)

    def release(self, submission_id: str) -> None:
        """Un-stick a submission; its verdict follows at once if processing had finished."""
        submission = self.submissions[submission_id.lower()]
        submission.stuck = False
        if submission.pending is not None:
            status, doc = submission.pending
            submission.pending = None
            self._settle(submission, status, doc)

    def _grant_for(self, access_key_id: str) -> Grant | None:
        return self._grants.get(access_key_id)

    def _on_landed(self, bucket: str, key: str) -> None:
        submission_id = self._by_object.get(key)
        if bucket != self.config.bucket or submission_id is None:
            return
        submission = self.submissions[submission_id]
        submission.landed_at = self._clock()
        if submission.status != IN_PROGRESS or submission.processing:
            return  # an overwrite after the verdict does not re-trigger processing
        submission.processing = True
        self._spawn(self._process(submission))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        async def run() -> None:
            await coroutine

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("emulator task failed", exc_info=task.exception())

    async def _process(self, submission: EmulatedSubmission) -> None:
        started = time.monotonic()
        markers: frozenset[bytes] = frozenset()
        try:
            if self.config.inspect_uploads:
                markers = await self._inspect(submission)
            delay = self.config.processing_delay_seconds - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            status, doc = self._verdict(submission, markers)
            if status == ACCEPTED:
                await self.tickets.learn(submission.id, submission.name,
                                         self.s3.read_object(self.config.bucket, submission.object))
        finally:
            submission.processing = False
        if submission.stuck:
            submission.pending = (status, doc)
            return
        self._settle(submission, status, doc)

    async def _inspect(self, submission: EmulatedSubmission) -> frozenset[bytes]:
        """Hash the stored object and find verdict markers, hashing off the event loop."""
        wanted = [rule.content_marker for rule in self.config.rules if rule.content_marker]
        overlap = max((len(m) for m in wanted), default=1) - 1
        digest = hashlib.sha256()
        found: set[bytes] = set()
        tail = b""
        size = 0

        def scan(chunk: bytes, tail: bytes) -> bytes:
            digest.update(chunk)
            window = tail + chunk
            for marker in wanted:
                if marker in window:
                    found.add(marker)
            return window[-overlap:] if overlap else b""

        async for chunk in self.s3.read_object(self.config.bucket, submission.object):
            size += len(chunk)
            tail = await asyncio.to_thread(scan, chunk, tail)
        submission.uploaded_sha256 = digest.hexdigest()
        submission.uploaded_bytes = size
        return frozenset(found)

    def _verdict(
        self, submission: EmulatedSubmission, markers: frozenset[bytes]
    ) -> tuple[str, dict[str, Any]]:
        rule = next((r for r in self.config.rules if r.matches(submission.name, markers)), None)
        now = self._clock()
        doc: dict[str, Any] = {
            "logFormatVersion": 1,
            "jobId": submission.id,
            "status": rule.status if rule else ACCEPTED,
            "statusSummary": rule.status_summary if rule else "Ready for distribution",
            "statusCode": rule.status_code if rule else 0,
            "archiveFilename": submission.name,
            "uploadDate": _iso(submission.landed_at or now),
            "sha256": submission.uploaded_sha256 or submission.sha256,
            "ticketContents": None,
            "issues": [dict(issue) for issue in rule.issues] if rule and rule.issues else None,
        }
        if rule is None:
            doc["ticketContents"] = [
                {
                    "path": f"{submission.name}/Contents/MacOS/App",
                    "digestAlgorithm": "SHA-256",
                    "cdhash": hashlib.sha1(submission.id.encode()).hexdigest(),
                    "arch": arch,
                }
                for arch in ("x86_64", "arm64")
            ]
        return str(doc["status"]), doc

    def _settle(self, submission: EmulatedSubmission, status: str, doc: dict[str, Any]) -> None:
        submission.status = status
        submission.log = doc
        submission.completed_at = self._clock()
        self.tickets.publish(submission.id)
        if submission.webhook:
            self._spawn(self._notify(submission))

    async def _notify(self, submission: EmulatedSubmission) -> None:
        assert submission.webhook is not None and self._session is not None
        payload = json.dumps(
            {
                "completed_time": _iso(submission.completed_at or self._clock()),
                "event": "processing-complete",
                "start_time": _iso(submission.created_at),
                "submission_id": submission.id,
                "team_id": submission.issuer_id,
            }
        )
        signature = self._webhook_key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        public_pem = self._webhook_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = {
            "payload": payload,
            "signature": base64.b64encode(signature).decode(),
            "cert_chain": base64.b64encode(public_pem).decode(),
        }
        try:
            async with self._session.post(submission.webhook, json=body) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("webhook for %s failed: %s", submission.id, error)

    # -- the HTTP API ---------------------------------------------------------------------------

    def _make_api_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/notary/v2/submissions", self._submit, name="submit")
        app.router.add_get("/notary/v2/submissions", self._history, name="history")
        app.router.add_get("/notary/v2/submissions/{id}", self._status, name="status")
        app.router.add_get("/notary/v2/submissions/{id}/logs", self._logs, name="logs")
        app.router.add_get("/logs-download/{path:.+}", self._download_log, name="log_download")
        app.router.add_post(LOOKUP_PATH, self.tickets.handle, name="ticket_lookup")
        return app

    @web.middleware
    async def _gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Authentication, faults and counting around every API call."""
        endpoint = request.match_info.route.name or "other"
        if endpoint in ("log_download", "ticket_lookup"):  # no Bearer token on these
            response = await handler(request)
        elif endpoint == "other":
            response = web.Response(status=404, text="", headers=_COMMON_HEADERS)
        else:
            try:
                request[TEAM] = self._authenticate(request.headers.get("Authorization", ""))
            except _Refused as refused:
                self.auth_failures.append(refused.reason)
                response = _unauthenticated()
            else:
                response = self._fault_response(request, endpoint) or await handler(request)
        self.requests[(endpoint, str(response.status))] += 1
        return response

    def _authenticate(self, authorization: str) -> TeamKey:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token.strip():
            raise _Refused("no Bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise _Refused(f"malformed token: {error}") from None
        if header.get("alg") != "ES256":
            raise _Refused(f"alg {header.get('alg')!r} is not ES256")
        team_key = self.keys.get(str(header.get("kid")))
        if team_key is None:
            raise _Refused(f"unknown kid {header.get('kid')!r}")
        try:
            claims = jwt.decode(
                token,
                team_key.public_key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                options={
                    "require": ["iat", "exp", "aud"],
                    "verify_exp": False,  # checked below against the emulator's clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as error:
            raise _Refused(f"token rejected: {error}") from None
        if claims.get("sub") == "user":
            raise _Refused("individual key (sub=user) cannot use the notary service")
        if claims.get("iss") != team_key.issuer_id:
            raise _Refused(f"iss {claims.get('iss')!r} does not own kid {team_key.key_id!r}")
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        now = self._clock()
        leeway = self.config.clock_leeway_seconds
        lifetime = expires_at - issued_at
        limit = self.config.jwt_max_lifetime_seconds + self.config.jwt_lifetime_tolerance_seconds
        if lifetime > limit:
            raise _Refused(f"token lifetime {lifetime:g} s exceeds {limit:g} s")
        if issued_at > now + leeway:
            raise _Refused(f"iat {issued_at:g} is in the future (now {now:g})")
        if expires_at <= now - leeway:
            raise _Refused(f"token expired at {expires_at:g} (now {now:g})")
        stats = self.token_stats
        stats.accepted += 1
        if token not in stats._seen:
            stats._seen.add(token)
            stats.distinct += 1
        stats.max_lifetime_seconds = max(stats.max_lifetime_seconds, lifetime)
        stats.max_age_seconds = max(stats.max_age_seconds, now - issued_at)
        return team_key

    def _fault_response(self, request: web.Request, endpoint: str) -> web.StreamResponse | None:
        faults, now = self.faults, self._clock()
        if faults.agreement_missing:
            return _json_error(
                403,
                "FORBIDDEN.REQUIRED_AGREEMENTS_MISSING_OR_EXPIRED",
                AGREEMENT_TITLE,
                AGREEMENT_DETAIL,
            )
        if faults.missing_provider:
            return _json_error(
                403,
                "FORBIDDEN.MISSING_PROVIDER",
                "This provider does not exist.",
                "This provider does not exist.",
                links={"see": "/landing"},
            )
        applies = faults.endpoints is None or endpoint in faults.endpoints
        if applies and (faults.rate_limit_next > 0 or now < faults.rate_limit_until):
            faults.rate_limit_next = max(0, faults.rate_limit_next - 1)
            return self._rate_limited()
        if not self._within_budget(request[TEAM].key_id, now):
            return self._rate_limited()
        if applies and (faults.server_error_next > 0 or now < faults.server_error_until):
            faults.server_error_next = max(0, faults.server_error_next - 1)
            return web.Response(status=faults.server_error_status, headers=_COMMON_HEADERS)
        if endpoint == "status" and (
            faults.reset_status_next > 0 or now < faults.reset_status_until
        ):
            faults.reset_status_next = max(0, faults.reset_status_next - 1)
            reset_connection(request)
            return web.Response(status=599)  # never delivered: the connection is gone
        return None

    def _rate_limited(self) -> web.Response:
        headers = {}
        if self.faults.retry_after_seconds is not None:
            headers["Retry-After"] = str(self.faults.retry_after_seconds)
        return _json_error(
            429,
            "RATE_LIMIT",
            "Too many requests",
            "Exceeded hourly limit of requests. Try again later.",
            headers=headers,
        )

    def _within_budget(self, key_id: str, now: float) -> bool:
        limit = self.config.hourly_request_limit
        if limit is None:
            return True
        window = self._budget.setdefault(key_id, collections.deque())
        while window and window[0] <= now - 3600:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    async def _submit(self, request: web.Request) -> web.Response:
        team: TeamKey = request[TEAM]
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return _json_error(
                400, "PARAMETER_ERROR.INVALID", "Invalid request", "Body is not JSON"
            )
        if not isinstance(body, dict):
            return _json_error(
                400, "PARAMETER_ERROR.INVALID", "Invalid request", "Body is not an object"
            )
        name, digest = body.get("submissionName"), body.get("sha256")
        if not isinstance(name, str) or not name:
            return _json_error(
                400,
                "PARAMETER_ERROR.REQUIRED",
                "A required parameter is missing",
                "submissionName is required",
            )
        if not isinstance(digest, str) or not _SHA256.match(digest):
            return _json_error(
                400,
                "PARAMETER_ERROR.INVALID",
                "A parameter has an invalid value",
                "sha256 must be 64 hexadecimal characters",
            )
        webhook = None
        for notification in body.get("notifications") or []:
            if not isinstance(notification, dict) or notification.get("channel") != "webhook":
                return _json_error(
                    400,
                    "PARAMETER_ERROR.INVALID",
                    "A parameter has an invalid value",
                    "notifications[].channel must be 'webhook'",
                )
            webhook = str(notification.get("target") or "") or None
        submission = self._create(team, name, digest.lower(), webhook)
        grant = submission.grant
        return _json(
            {
                "data": {
                    "type": "newSubmissions",
                    "id": submission.id,
                    "attributes": {
                        "awsAccessKeyId": grant.access_key_id,
                        "awsSecretAccessKey": grant.secret_access_key,
                        "awsSessionToken": grant.session_token,
                        "bucket": grant.bucket,
                        "object": grant.key,
                    },
                },
                "meta": {},
            }
        )

    def _create(
        self, team: TeamKey, name: str, sha256: str, webhook: str | None
    ) -> EmulatedSubmission:
        submission_id = str(uuid.uuid4())
        now = self._clock()
        grant = Grant(
            access_key_id="ASIA"
            + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16)),
            secret_access_key=base64.b64encode(secrets.token_bytes(30)).decode(),
            session_token=base64.b64encode(secrets.token_bytes(300)).decode(),
            bucket=self.config.bucket,
            key=f"prod/{self.config.role_id}:{submission_id}",
            expires_at=now + self.config.credential_lifetime_seconds,
        )
        stuck = self.faults.stuck_next > 0 or (
            self.faults.stuck_name_glob is not None
            and fnmatch.fnmatchcase(name, self.faults.stuck_name_glob)
        )
        self.faults.stuck_next = max(0, self.faults.stuck_next - 1)
        submission = EmulatedSubmission(
            id=submission_id,
            name=name,
            sha256=sha256,
            issuer_id=team.issuer_id,
            key_id=team.key_id,
            created_at=now,
            grant=grant,
            webhook=webhook,
            stuck=stuck,
        )
        self.submissions[submission_id] = submission
        self._by_object[grant.key] = submission_id
        self._grants[grant.access_key_id] = grant
        return submission

    def _find(self, request: web.Request) -> EmulatedSubmission | None:
        submission = self.submissions.get(request.match_info["id"].lower())
        if submission is None or submission.issuer_id != request[TEAM].issuer_id:
            return None
        return submission

    async def _status(self, request: web.Request) -> web.Response:
        submission = self._find(request)
        if submission is None:
            return _not_found("submissions", request.match_info["id"])
        return _json({"data": _submission_resource(submission), "meta": {}})

    async def _history(self, request: web.Request) -> web.Response:
        issuer = request[TEAM].issuer_id
        # dicts keep insertion (= creation) order, so reversed() is newest first
        mine = [s for s in reversed(self.submissions.values()) if s.issuer_id == issuer]
        newest = mine[: self.config.history_limit]
        return _json({"data": [_submission_resource(s) for s in newest], "meta": {}})

    async def _logs(self, request: web.Request) -> web.Response:
        submission = self._find(request)
        if submission is None:
            return _not_found("submissions", request.match_info["id"])
        if submission.log is None:
            return _not_found("submissionsLog", request.match_info["id"], verb="for")
        return _json(
            {
                "data": {
                    "type": "submissionsLog",
                    "id": submission.id,
                    "attributes": {"developerLogUrl": self._presign(submission)},
                },
                "meta": {},
            }
        )

    def _presign(self, submission: EmulatedSubmission) -> str:
        path = f"/logs-download/prod/{submission.id}/developer_log.json"
        expires = int(self._clock() + self.config.log_url_lifetime_seconds)
        query = {
            "AWSAccessKeyId": "ASIA" + submission.grant.access_key_id[4:],
            "Signature": self._log_signature(path, expires),
            "x-amz-security-token": base64.b64encode(secrets.token_bytes(24)).decode(),
            "Expires": str(expires),
        }
        return f"{self.base_url}{quote(path)}?{urlencode(query)}"

    def _log_signature(self, path: str, expires: int) -> str:
        mac = hmac.new(self._log_secret, f"GET\n{path}\n{expires}".encode(), hashlib.sha256)
        return base64.b64encode(mac.digest()).decode()

    async def _download_log(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            return _s3_xml_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        path = request.path
        try:
            expires = int(request.query.get("Expires", ""))
        except ValueError:
            return _s3_xml_error(
                403, "AccessDenied", "Query-string authentication requires Expires"
            )
        expected = self._log_signature(path, expires)
        if not hmac.compare_digest(expected, request.query.get("Signature", "")):
            return _s3_xml_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self._clock() > expires:
            return _s3_xml_error(403, "AccessDenied", "Request has expired")
        match = re.fullmatch(r"/logs-download/prod/([0-9a-f-]{36})/developer_log\.json", path)
        submission = self.submissions.get(match.group(1)) if match else None
        if submission is None or submission.log is None:
            return _s3_xml_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(
            body=json.dumps(submission.log, indent=2).encode(), content_type="application/json"
        )


class BackgroundEmulator:
    """Runs a ``NotaryEmulator`` on its own event loop in a daemon thread (for sync callers).

    ``call(fn)`` runs ``fn(emulator)`` on the emulator's loop thread and returns its result, so
    faults and counters can be changed or read safely from another thread.
    """

    def __init__(self, factory: Callable[[], NotaryEmulator]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._emulator: NotaryEmulator | None = None

    @property
    def emulator(self) -> NotaryEmulator:
        if self._emulator is None:
            raise RuntimeError("BackgroundEmulator is not started")
        return self._emulator

    def start(self, timeout_seconds: float = 60.0) -> NotaryEmulator:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="notary-emulator", daemon=True
        )
        self._thread.start()

        async def start() -> NotaryEmulator:
            return await self._factory().start()

        try:
            self._emulator = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout_seconds)
        except BaseException:
            self.stop()
            raise
        return self._emulator

    def call(self, fn: Callable[[NotaryEmulator], T], timeout_seconds: float = 30.0) -> T:
        async def run() -> T:
            return fn(self.emulator)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_seconds)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._emulator is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._emulator.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        self._loop = self._thread = self._emulator = None

    def __enter__(self) -> NotaryEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- response helpers ------------------------------------------------------------------------


def _iso(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _submission_resource(submission: EmulatedSubmission) -> dict[str, Any]:
    return {
        "attributes": {
            "createdDate": _iso(submission.created_at),
            "name": submission.name,
            "status": submission.status,
        },
        "id": submission.id,
        "type": "submissions",
    }


def _json(
    doc: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(doc).encode(),
        content_type="application/octet-stream",
        headers={**_COMMON_HEADERS, **(headers or {})},
    )


def _json_error(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    links: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {
        "id": _request_id(),
        "status": str(status),
        "code": code,
        "title": title,
        "detail": detail,
    }
    if links:
        error["links"] = dict(links)
    return _json({"errors": [error]}, status, {"Connection": "close", **(headers or {})})


def _not_found(resource_type: str, resource_id: str, verb: str = "with") -> web.Response:
    return _json_error(
        404,
        "NOT_FOUND",
        "The specified resource does not exist",
        f"There is no resource of type '{resource_type}' {verb} id '{resource_id}'",
    )


def _unauthenticated() -> web.Response:
    return web.Response(
        status=401,
        text=f"Unauthenticated\n\nRequest ID: {_request_id()}.0.0\n",
        content_type="text/plain",
        headers={**_COMMON_HEADERS, "Connection": "close"},
    )


def _s3_xml_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


def _request_id() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]
