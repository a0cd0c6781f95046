"""The CLI's client for the control API (``notaryd submit/jobs/job/watch/cancel``).

Finds the daemon at ``NOTARYD_LISTEN`` and the token the same way the daemon does (see
``service.daemon.token``). Every failure becomes a ``NotarydError`` whose message is one actionable line:
the daemon is not running, the token is wrong, the API's own ``error``/``hint``, or an answer
this client cannot read (another version, or not notaryd). Jobs come back as ``JobSnapshot``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from service.daemon.snapshot import BadSnapshot, JobSnapshot
from service.daemon.token import find_token
from service.settings import Settings
from uploader.errors import NotarydError


class DaemonUnreachable(NotarydError):
    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot reach notaryd at {address}: start it with `notaryd serve` or "
            "`notaryd service install`"
        )
        self.address = address


class UnreadableAnswer(NotarydError):
    """The daemon's answer has a shape this client does not know (another version, or not
    notaryd): asking again will not help."""


# One server-sent event of more than this is no job snapshot.
MAX_EVENT_BYTES = 1024 * 1024


class ApiRefused(NotarydError):
    def __init__(self, status: int, error: str, hint: str | None) -> None:
        super().__init__(f"{error} ({hint})" if hint else error)
        self.status = status
        self.error = error
        self.hint = hint


def client_address(listen: str) -> str:
    """Where to connect for a listen address (a wildcard bind is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in {"0.0.0.0", ""}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class DaemonClient:
    def __init__(self, address: str, token: str, *, timeout_seconds: float = 30.0) -> None:
        self.address = address
        self._base = f"http://{address}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=5)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DaemonClient:
        token = find_token(settings.api_token, settings.state_dir)
        return cls(client_address(settings.listen), token)

    async def __aenter__(self) -> DaemonClient:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    # -- calls -------------------------------------------------------------------------------

    async def submit(
        self, path: Path, *, name: str | None = None, webhook: str | None = None,
        skip_preflight: bool = False, options: dict[str, bool] | None = None,
    ) -> JobSnapshot:
        body: dict[str, Any] = {"path": str(path), "skip_preflight": skip_preflight,
                                **(options or {})}
        if name:
            body["name"] = name
        if webhook:
            body["webhook"] = webhook
        return self._snapshot(await self._call("POST", "/v1/jobs", body))

    async def jobs(self) -> list[JobSnapshot]:
        reply = await self._call("GET", "/v1/jobs")
        jobs = reply.get("jobs")
        if not isinstance(jobs, list):
            raise self._unreadable("GET /v1/jobs has no 'jobs' list")
        return [self._snapshot(job) for job in jobs]

    async def job(self, job_id: str) -> JobSnapshot:
        return self._snapshot(await self._call("GET", f"/v1/jobs/{job_id}"))

    async def cancel(self, job_id: str) -> JobSnapshot:
        return self._snapshot(await self._call("DELETE", f"/v1/jobs/{job_id}"))

    async def login_link(self) -> str:
        """A one-time login URL for the daemon's live page (``notaryd open``)."""
        reply = await self._call("POST", "/v1/login-links")
        url = reply.get("url")
        if not isinstance(url, str) or not url.startswith(f"http://{self.address}/"):
            raise self._unreadable("POST /v1/login-links has no login 'url' of this daemon")
        return url

    async def log(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/jobs/{job_id}/log")

    async def events(self, job_id: str | None = None) -> AsyncIterator[JobSnapshot]:
        """Job snapshots from ``GET /v1/events`` until the stream ends."""
        params = {"job": job_id} if job_id else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
        try:
            async with self._session_().get(
                self._base + "/v1/events", params=params, timeout=timeout
            ) as response:
                await _raise_for_error(response)
                event, data, size = "", [], 0
                async for raw in response.content:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    size += len(raw)
                    if size > MAX_EVENT_BYTES:
                        raise self._unreadable(f"an event of more than {MAX_EVENT_BYTES} bytes")
                    if line.startswith(":"):
                        continue  # heartbeat comment
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line:
                        if event == "job" and data:
                            yield self._snapshot(_decode("\n".join(data)))
                        event, data, size = "", [], 0
        except (ValueError, HttpProcessingError) as exc:  # e.g. a line longer than aiohttp reads
            raise self._unreadable(f"the event stream: {type(exc).__name__}") from None
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise DaemonUnreachable(self.address) from None
            raise NotarydError(f"lost the event stream from notaryd at {self.address}: {exc}") from None

    # -- plumbing ----------------------------------------------------------------------------

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use DaemonClient as an async context manager")
        return self._session

    def _snapshot(self, document: object) -> JobSnapshot:
        try:
            return JobSnapshot.from_json(document)
        except BadSnapshot as error:
            raise self._unreadable(str(error)) from None

    def _unreadable(self, why: str) -> UnreadableAnswer:
        return UnreadableAnswer(
            f"notaryd at {self.address} sent an answer this client cannot read ({why}); "
            "run the same notaryd version as the daemon, and check NOTARYD_LISTEN points at it"
        )

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            async with self._session_().request(
                method, self._base + path, json=body, timeout=self._timeout
            ) as response:
                await _raise_for_error(response)
                reply = _decode(await response.read())
        except aiohttp.ClientConnectorError:
            raise DaemonUnreachable(self.address) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotarydError(f"notaryd at {self.address} did not answer {method} {path}: {exc}") from None
        if not isinstance(reply, dict):
            raise self._unreadable(f"{method} {path} did not return a JSON object")
        return reply


def _decode(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # the caller says what it expected
        return None


async def _raise_for_error(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        doc = await response.json()
        error, hint = str(doc["error"]), doc.get("hint")
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        error, hint = f"HTTP {response.status} {response.reason}", None
    if response.status == 401:
        error = f"notaryd refused the API token: {error}"
    raise ApiRefused(response.status, error, hint)
