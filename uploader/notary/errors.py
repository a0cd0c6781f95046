"""Errors of the Notary REST API client. ``str(error)`` is one actionable line for a human.

Hierarchy (grouped by what the caller can do about it)::

    NotarydError
    ├── ConfigError
    │   └── KeyFileError            the .p8 key file is missing, unreadable, malformed or too open
    └── NotaryError                 ``transient`` False: retrying the same call cannot help
        ├── Unauthenticated         401 (plain text): key id / issuer id / key file / clock / key kind
        ├── AgreementMissing        403: a required agreement is unsigned or expired
        ├── MissingProvider         403 FORBIDDEN.MISSING_PROVIDER
        ├── Forbidden               any other 403
        ├── NotFound                404 (unknown id, or logs asked for before a verdict)
        │   └── UnknownSubmission   the id is not one the service knows
        ├── RequestRejected         other 4xx (bad request body, unknown path)
        ├── LogUrlExpired           the pre-signed log URL was refused: ask for a new one
        ├── BadResponse             a complete answer that is not the JSON we expect (proxy page,
        │                           wrong URL): asking again gets the same answer
        ├── ResponseTooLarge        an answer over its size cap; not read further
        ├── UnsafeUrl               a redirect or log URL that is not https, or points at a
        │                           loopback or link-local address
        └── TransientNotaryError    ``transient`` True: retry with back-off
            ├── RateLimited         429 RATE_LIMIT: back off hard (``retry_after_seconds``)
            ├── ServerError         5xx
            └── NetworkError        connection refused/reset, DNS, timeouts, a body cut short

Messages never contain tokens, keys, credentials or pre-signed URL signatures.
"""

from __future__ import annotations

from uploader.errors import ConfigError, NotarydError


class KeyFileError(ConfigError):
    """The App Store Connect API key file cannot be used; the message says why and how to fix it."""


class NotaryError(NotarydError):
    """An error answer (or no answer) from the notary service."""

    transient: bool = False

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class TransientNotaryError(NotaryError):
    """Safe and useful to retry after a back-off."""

    transient = True


class Unauthenticated(NotaryError):
    def __init__(
        self,
        *,
        key_id: str,
        issuer_id: str,
        endpoint: str = "",
        request_id: str | None = None,
        hint: str = "",
    ) -> None:
        causes = (
            "the key id or issuer id is wrong (App Store Connect → Users and Access → Integrations "
            "→ Team Keys shows both), the .p8 file is not the key with that id, the computer's "
            "clock is off (sync it: tokens are checked to the minute), or the key is an "
            "individual key rather than a team key (only team keys may use the notary service)"
        )
        message = (
            f"the notary service refused the API key (401 Unauthenticated) for key id "
            f"{key_id!r}, issuer id {issuer_id!r}. Likely causes: {causes}."
        )
        if hint:
            message += f" Note: {hint}."
        if request_id:
            message += f" (Apple request id {request_id})"
        super().__init__(message, endpoint=endpoint, status=401)
        self.key_id = key_id
        self.issuer_id = issuer_id
        self.request_id = request_id


class AgreementMissing(NotaryError):
    def __init__(self, *, endpoint: str = "", detail: str = "") -> None:
        message = (
            "the notary service refused the request (403): a required agreement is missing or has "
            "expired. The team's Account Holder must sign the latest agreements in the Apple "
            "Developer account (developer.apple.com/account) and in App Store Connect → Business "
            "(Agreements), then retry."
        )
        if detail:
            message += f" Apple said: {detail}"
        super().__init__(message, endpoint=endpoint, status=403)


class MissingProvider(NotaryError):
    def __init__(self, *, endpoint: str = "", detail: str = "") -> None:
        super().__init__(
            "the notary service says the team of this API key does not exist as a provider "
            "(403 FORBIDDEN.MISSING_PROVIDER): check that the issuer id belongs to a team enrolled "
            "in the Apple Developer Program and that the key is a team key with Developer access"
            + (f". Apple said: {detail}" if detail else ""),
            endpoint=endpoint,
            status=403,
        )


class Forbidden(NotaryError):
    def __init__(self, *, endpoint: str = "", code: str = "", detail: str = "") -> None:
        super().__init__(
            f"the notary service refused the request (403{' ' + code if code else ''}): "
            f"{detail or 'access denied'}. Check that the API key has the Developer role or higher",
            endpoint=endpoint,
            status=403,
        )
        self.code = code


class NotFound(NotaryError):
    def __init__(self, *, endpoint: str = "", detail: str = "") -> None:
        super().__init__(
            f"the notary service has no such resource (404): {detail or 'not found'}",
            endpoint=endpoint,
            status=404,
        )
        self.detail = detail


class UnknownSubmission(NotFound):
    """The notary service does not know this submission id (a typo, or another team's id)."""

    def __init__(self, submission_id: str, *, endpoint: str = "") -> None:
        shown = submission_id if len(submission_id) <= 60 else submission_id[:60] + "…"
        super().__init__(endpoint=endpoint, detail=shown)
        self.args = (f"the notary service does not know submission {shown!r}; check the id "
                     "(`notaryd history` lists your team's submissions)",)


class RequestRejected(NotaryError):
    def __init__(self, *, endpoint: str = "", status: int, detail: str = "") -> None:
        super().__init__(
            f"the notary service rejected the {endpoint or 'request'} request (HTTP {status}): "
            f"{detail or 'no details given'}",
            endpoint=endpoint,
            status=status,
        )


class LogUrlExpired(NotaryError):
    def __init__(self, *, status: int, detail: str = "") -> None:
        super().__init__(
            f"the notary log download was refused (HTTP {status}{': ' + detail if detail else ''}); "
            "the pre-signed log URL has probably expired: ask for the log again "
            "(`notaryd log SUBMISSION_ID`)",
            endpoint="log_download",
            status=status,
        )


class RateLimited(TransientNotaryError):
    def __init__(
        self, *, endpoint: str = "", retry_after_seconds: float | None = None, detail: str = ""
    ) -> None:
        super().__init__(
            "the notary service is rate-limiting this API key (429 RATE_LIMIT"
            f"{': ' + detail if detail else ''}); backing off before trying again",
            endpoint=endpoint,
            status=429,
        )
        self.retry_after_seconds = retry_after_seconds


class ServerError(TransientNotaryError):
    def __init__(self, *, endpoint: str = "", status: int, detail: str = "") -> None:
        super().__init__(
            f"the notary service failed on {endpoint or 'a request'} (HTTP {status}"
            f"{': ' + detail if detail else ''}); this is usually temporary",
            endpoint=endpoint,
            status=status,
        )


class NetworkError(TransientNotaryError):
    def __init__(self, *, endpoint: str = "", cause: str) -> None:
        super().__init__(
            f"could not reach the notary service for {endpoint or 'a request'} ({cause}); "
            "check the network connection",
            endpoint=endpoint,
        )
        self.cause = cause


class BadResponse(NotaryError):
    def __init__(self, *, endpoint: str = "", status: int | None = None, detail: str) -> None:
        super().__init__(
            f"unexpected answer from the notary service for {endpoint or 'a request'}: {detail}. "
            "This is not a Notary API answer: check NOTARYD_API_URL and any proxy in between",
            endpoint=endpoint,
            status=status,
        )


class ResponseTooLarge(NotaryError):
    def __init__(self, *, endpoint: str = "", limit_bytes: int) -> None:
        super().__init__(
            f"the answer to {endpoint or 'a request'} is larger than {limit_bytes:,} bytes, far "
            "more than the notary service sends; refused without reading it. Check "
            "NOTARYD_API_URL and any proxy in between",
            endpoint=endpoint,
        )


class UnsafeUrl(NotaryError):
    def __init__(self, *, endpoint: str = "", url: str, reason: str) -> None:
        super().__init__(
            f"refused to fetch {url} for {endpoint or 'a request'}: {reason}. The notary service "
            "only uses https URLs on public hosts: check NOTARYD_API_URL and any proxy in between",
            endpoint=endpoint,
        )
