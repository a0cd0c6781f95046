"""Temporary S3 credentials, as the notary service hands them out (STS, 12 hours)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from uploader.redaction import register_secret


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expires_at: float | None = None  # Unix time; None when unknown (plain AWS keys)

    def __post_init__(self) -> None:
        # Whatever logs these later (botocore headers, aiosqlite parameters) shows [REDACTED].
        register_secret(self.secret_access_key)
        register_secret(self.session_token)

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(access_key_id={self.access_key_id[:4]}…, expires_at={self.expires_at})"

    __str__ = __repr__
