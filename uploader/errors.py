"""Errors the library raises on purpose. ``str(error)`` is one actionable line for a human.

Hierarchy (grouped by what the caller can do about it)::

    NotarydError
    ├── ConfigError                 bad settings or input: names the field/file and the fix
    └── UploadError
        ├── TransientUploadError    retried inside the engine; escapes only via max_attempts
        │   └── StallError          no bytes moved for the stall timeout
        ├── CredentialsExpiredError S3 ExpiredToken: the notary layer must get new credentials
        ├── UploadGoneError         NoSuchUpload: the multipart upload was aborted or expired
        ├── SourceChangedError      the file changed; never completes a mixed object
        ├── LeaseLost               the caller's fence no longer holds the run: stop touching it
        └── PermanentUploadError    AccessDenied, NoSuchBucket, ...: retrying cannot help
            └── OperationDeniedError the store refuses or lacks this operation (403, 501)

The notary client's errors live in ``uploader.notary.errors`` and also derive from NotarydError.
"""

from __future__ import annotations

from pathlib import Path


class NotarydError(Exception):
    """Base class for every error notaryd raises on purpose."""


class ConfigError(NotarydError):
    """Invalid configuration or input; the message names what and how to fix it."""


class UploadError(NotarydError):
    pass


class TransientUploadError(UploadError):
    """A failure that is safe and useful to retry (resets, timeouts, 5xx, throttling)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StallError(TransientUploadError):
    def __init__(self, part_number: int, seconds: float) -> None:
        super().__init__(
            f"part {part_number}: no bytes moved for {seconds:g} s; retrying on a new connection",
            reason="stall",
        )


class CredentialsExpiredError(UploadError):
    """S3 answered ExpiredToken (or the credentials' expiry time has passed)."""


class UploadGoneError(UploadError):
    """S3 answered NoSuchUpload: the multipart upload no longer exists."""


class SourceChangedError(UploadError):
    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"{path}: the file changed while it was being uploaded ({what}); "
            "nothing was completed. Re-run once the file is final to upload it again."
        )
        self.path = path
        self.what = what


class LeaseLost(UploadError):
    """The run's ``fence`` (``uploader.fence``) no longer holds: another holder took the work
    over. Nothing was written; the run must make no further write or S3 call."""


class PermanentUploadError(UploadError):
    """S3 refused in a way retrying cannot fix (AccessDenied, NoSuchBucket, InvalidArgument...)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # S3's error code, when S3 answered


class OperationDeniedError(PermanentUploadError):
    """S3 refused the operation itself (AccessDenied, NotImplemented).

    Fatal for the calls an upload cannot do without; the optional ones (ListParts,
    AbortMultipartUpload, HeadObject) are skipped instead: credentials scoped to the PutObject
    family are enough to upload and resume.
    """
