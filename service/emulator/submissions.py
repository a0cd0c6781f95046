"""The emulated service's submissions, and the upload credentials issued with each.

A new submission gets STS-like credentials (``ASIA…`` key id plus a session token) that last
``credential_lifetime_seconds`` and may write only ``prod/<role id>:<submission id>`` in the
bucket. Ids are UUIDs and match case-insensitively; dicts keep creation order, which the
history (newest first) relies on.
"""

from __future__ import annotations

import base64
import secrets
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.emulator.config import EmulatorConfig
from service.emulator.s3front import Grant
from uploader.lifecycle import NotaryStatus


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
    status: NotaryStatus = NotaryStatus.IN_PROGRESS
    stuck: bool = False
    landed_at: float | None = None
    uploaded_sha256: str | None = None
    uploaded_bytes: int | None = None
    completed_at: float | None = None
    log: dict[str, Any] | None = None
    pending: tuple[NotaryStatus, dict[str, Any]] | None = None  # verdict held back while stuck
    processing: bool = False

    @property
    def object(self) -> str:
        return self.grant.key


class Submissions:
    """Every submission created, by id, with lookups by uploaded object and by access key."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.by_id: dict[str, EmulatedSubmission] = {}
        self._by_object: dict[str, str] = {}
        self._grants: dict[str, Grant] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def create(
        self,
        *,
        name: str,
        sha256: str,
        issuer_id: str,
        key_id: str,
        webhook: str | None,
        stuck: bool,
        now: float,
    ) -> EmulatedSubmission:
        submission_id = str(uuid.uuid4())
        grant = Grant(
            access_key_id="ASIA"
            + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16)),
            secret_access_key=base64.b64encode(secrets.token_bytes(30)).decode(),
            session_token=base64.b64encode(secrets.token_bytes(300)).decode(),
            bucket=self.config.bucket,
            key=f"prod/{self.config.role_id}:{submission_id}",
            expires_at=now + self.config.credential_lifetime_seconds,
        )
        submission = EmulatedSubmission(
            id=submission_id, name=name, sha256=sha256, issuer_id=issuer_id, key_id=key_id,
            created_at=now, grant=grant, webhook=webhook, stuck=stuck,
        )
        self.by_id[submission_id] = submission
        self._by_object[grant.key] = submission_id
        self._grants[grant.access_key_id] = grant
        return submission

    def get(self, submission_id: str) -> EmulatedSubmission | None:
        return self.by_id.get(submission_id.lower())

    def owned(self, submission_id: str, issuer_id: str) -> EmulatedSubmission | None:
        """The submission, if it belongs to ``issuer_id`` (another team's is not found)."""
        submission = self.get(submission_id)
        return submission if submission and submission.issuer_id == issuer_id else None

    def newest(self, issuer_id: str) -> Iterator[EmulatedSubmission]:
        return (s for s in reversed(self.by_id.values()) if s.issuer_id == issuer_id)

    def for_object(self, bucket: str, key: str) -> EmulatedSubmission | None:
        submission_id = self._by_object.get(key)
        if bucket != self.config.bucket or submission_id is None:
            return None
        return self.by_id[submission_id]

    def grant_for(self, access_key_id: str) -> Grant | None:
        return self._grants.get(access_key_id)
