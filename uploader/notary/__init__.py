"""Apple Notary REST API: team-key JWTs, the HTTP client, its errors, the log report, the state store.

The end-to-end pipeline (hash → submit → upload → wait → log) builds on these pieces.
"""

from __future__ import annotations

from uploader.notary.auth import ApiKey, TokenSource, load_api_key
from uploader.notary.client import (
    ACCEPTED,
    DEFAULT_API_URL,
    IN_PROGRESS,
    INVALID,
    REJECTED,
    TERMINAL_STATUSES,
    NewSubmission,
    NotaryClient,
    RequestTimeouts,
    SubmissionStatus,
    redact_url,
    with_retries,
)
from uploader.notary.errors import (
    AgreementMissing,
    BadResponse,
    Forbidden,
    KeyFileError,
    LogUrlExpired,
    MissingProvider,
    NetworkError,
    NotaryError,
    NotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    TransientNotaryError,
    Unauthenticated,
)
from uploader.notary.logreport import LogReport, parse_log, render_report, to_json
from uploader.notary.store import SubmissionRecord, SubmissionStore

__all__ = [
    "ACCEPTED",
    "DEFAULT_API_URL",
    "INVALID",
    "IN_PROGRESS",
    "REJECTED",
    "TERMINAL_STATUSES",
    "AgreementMissing",
    "ApiKey",
    "BadResponse",
    "Forbidden",
    "KeyFileError",
    "LogReport",
    "LogUrlExpired",
    "MissingProvider",
    "NetworkError",
    "NewSubmission",
    "NotFound",
    "NotaryClient",
    "NotaryError",
    "RateLimited",
    "RequestRejected",
    "RequestTimeouts",
    "ServerError",
    "SubmissionRecord",
    "SubmissionStatus",
    "SubmissionStore",
    "TokenSource",
    "TransientNotaryError",
    "Unauthenticated",
    "load_api_key",
    "parse_log",
    "redact_url",
    "render_report",
    "to_json",
    "with_retries",
]
