"""The routes and handlers of the emulated Notary REST API (``/notary/v2``).

* ``POST /notary/v2/submissions`` → ``{"data": {"type": "newSubmissions", "id", "attributes":
  {awsAccessKeyId, awsSecretAccessKey, awsSessionToken, bucket, object}}, "meta": {}}``.
* ``GET /notary/v2/submissions[/{id}[/logs]]``: a team sees only its own submissions; the
  history holds its ``history_limit`` newest, newest first; logs answer 404 ``submissionsLog``
  until a verdict exists, then a pre-signed ``developerLogUrl`` (``presign``).
* ``/logs-download/...`` (the signed log) and the ticket lookup take no bearer token.

Every other call passes the gate first: authentication (``auth``; a 401 is plain text), then
the injected faults (``faults``); each answer is counted in ``requests[(endpoint, status)]``.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from service.emulator.auth import Refused, TeamKey, TeamKeys
from service.emulator.config import EmulatorConfig
from service.emulator.faults import FaultPolicy
from service.emulator.presign import DOWNLOAD_PREFIX, LogLinks
from service.emulator.responses import (
    NOTARY_HEADERS,
    invalid_parameter,
    iso_time,
    json_document,
    missing_parameter,
    not_found,
    unauthenticated,
)
from service.emulator.submissions import EmulatedSubmission, Submissions
from service.emulator.tickets import LOOKUP_PATH, TicketDesk

TEAM = web.RequestKey("team", TeamKey)
_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")
_NO_BEARER_TOKEN = frozenset({"log_download", "ticket_lookup"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def submission_resource(submission: EmulatedSubmission) -> dict[str, Any]:
    return {
        "attributes": {
            "createdDate": iso_time(submission.created_at),
            "name": submission.name,
            "status": str(submission.status),
        },
        "id": submission.id,
        "type": "submissions",
    }


class NotaryApi:
    """The aiohttp application of the notary API; ``base_url()`` is where it is served."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        keys: TeamKeys,
        policy: FaultPolicy,
        submissions: Submissions,
        log_links: LogLinks,
        tickets: TicketDesk,
        clock: Callable[[], float],
        base_url: Callable[[], str],
    ) -> None:
        self.config = config
        self._keys = keys
        self._policy = policy
        self._submissions = submissions
        self._log_links = log_links
        self._clock = clock
        self._base_url = base_url
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/notary/v2/submissions", self._submit, name="submit")
        app.router.add_get("/notary/v2/submissions", self._history, name="history")
        app.router.add_get("/notary/v2/submissions/{id}", self._status, name="status")
        app.router.add_get("/notary/v2/submissions/{id}/logs", self._logs, name="logs")
        app.router.add_get(DOWNLOAD_PREFIX + "{path:.+}", log_links.download, name="log_download")
        app.router.add_post(LOOKUP_PATH, tickets.handle, name="ticket_lookup")
        self.app = app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication, faults and counting around every API call."""
        endpoint = request.match_info.route.name or "other"
        if endpoint in _NO_BEARER_TOKEN:
            response = await handler(request)
        elif endpoint == "other":
            response = web.Response(status=404, text="", headers=NOTARY_HEADERS)
        else:
            response = await self._authenticated(request, endpoint, handler)
        self.requests[(endpoint, str(response.status))] += 1
        return response

    async def _authenticated(
        self, request: web.Request, endpoint: str, handler: Handler
    ) -> web.StreamResponse:
        try:
            team = self._keys.authenticate(request.headers.get("Authorization", ""))
        except Refused:
            return unauthenticated()
        request[TEAM] = team
        injected = self._policy.draw(endpoint, team.key_id, self._clock())
        if injected is not None:
            return self._policy.answer(injected, request)
        return await handler(request)

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return invalid_parameter("Body is not JSON", title="Invalid request")
        if not isinstance(body, dict):
            return invalid_parameter("Body is not an object", title="Invalid request")
        name, digest = body.get("submissionName"), body.get("sha256")
        if not isinstance(name, str) or not name:
            return missing_parameter("submissionName is required")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            return invalid_parameter("sha256 must be 64 hexadecimal characters")
        webhook = None
        for notification in body.get("notifications") or []:
            if not isinstance(notification, dict) or notification.get("channel") != "webhook":
                return invalid_parameter("notifications[].channel must be 'webhook'")
            webhook = str(notification.get("target") or "") or None
        team = request[TEAM]
        submission = self._submissions.create(
            name=name,
            sha256=digest.lower(),
            issuer_id=team.issuer_id,
            key_id=team.key_id,
            webhook=webhook,
            stuck=self._policy.takes_stuck(name),
            now=self._clock(),
        )
        grant = submission.grant
        attributes = {
            "awsAccessKeyId": grant.access_key_id,
            "awsSecretAccessKey": grant.secret_access_key,
            "awsSessionToken": grant.session_token,
            "bucket": grant.bucket,
            "object": grant.key,
        }
        return json_document(
            {
                "data": {"type": "newSubmissions", "id": submission.id, "attributes": attributes},
                "meta": {},
            }
        )

    def _mine(self, request: web.Request) -> EmulatedSubmission | None:
        return self._submissions.owned(request.match_info["id"], request[TEAM].issuer_id)

    async def _status(self, request: web.Request) -> web.Response:
        submission = self._mine(request)
        if submission is None:
            return not_found("submissions", request.match_info["id"])
        return json_document({"data": submission_resource(submission), "meta": {}})

    async def _history(self, request: web.Request) -> web.Response:
        newest = self._submissions.newest(request[TEAM].issuer_id)
        page = [submission_resource(s) for s in itertools.islice(newest, self.config.history_limit)]
        return json_document({"data": page, "meta": {}})

    async def _logs(self, request: web.Request) -> web.Response:
        submission = self._mine(request)
        if submission is None:
            return not_found("submissions", request.match_info["id"])
        if submission.log is None:
            return not_found("submissionsLog", request.match_info["id"], verb="for")
        url = self._log_links.url(self._base_url(), submission.id, submission.grant.access_key_id)
        return json_document(
            {
                "data": {
                    "type": "submissionsLog",
                    "id": submission.id,
                    "attributes": {"developerLogUrl": url},
                },
                "meta": {},
            }
        )
