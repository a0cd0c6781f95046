"""Shared pieces of the engine tests: a real SeaweedFS, real SQLite, real files."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3

from service.emulator.seaweed import SeaweedServer
from tests.support.files import PART, file_sha256
from uploader.config import EngineConfig, MiB, UploadLimits
from uploader.credentials import Credentials
from uploader.events import BytesSent, Event, PartAcknowledged, PartRetried

sha256_of_file = file_sha256  # the name these tests know it by


def stored_sha256(server: SeaweedServer, bucket: str, key: str) -> str:
    """SHA-256 of the object as the server stores it, streamed back."""
    body = s3(server).get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        h.update(chunk)
    return h.hexdigest()


def s3(server: SeaweedServer) -> Any:
    return boto3.client("s3", **server.client_kwargs())


def credentials(server: SeaweedServer, expires_at: float | None = None) -> Credentials:
    return Credentials(server.access_key, server.secret_key, None, expires_at)


def config(endpoint_url: str, **overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {
        "part_size": PART, "concurrency": 4, "stall_timeout_seconds": 5.0,
        "endpoint_url": endpoint_url,
    }
    values.update(overrides)
    return EngineConfig(**values)


TINY_LIMITS = UploadLimits(min_part_size=1)


class Recorder:
    """A hook that keeps every event, with totals the tests assert on."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def sent(self) -> int:
        return sum(e.nbytes for e in self.events if isinstance(e, BytesSent))

    @property
    def resent(self) -> int:
        return sum(e.nbytes for e in self.events if isinstance(e, BytesSent) and e.resent)

    @property
    def acknowledged(self) -> list[int]:
        return [e.part_number for e in self.events if isinstance(e, PartAcknowledged)]

    @property
    def retries(self) -> list[str]:
        return [e.reason.value for e in self.events if isinstance(e, PartRetried)]
