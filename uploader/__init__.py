"""notaryd's library: resumable S3 multipart uploads and Apple notarisation, with no server.

The public API is ``__all__`` below; everything else is internal and may change. Upload one file
resumably::

    db = await Database.open(state_dir / "state.db")
    result = await MultipartUploader(db, EngineConfig()).upload(path, bucket, key, credentials)

or notarise one (hash, submit, upload, wait, fetch the log; a re-run resumes)::

    outcome = await Notarizer(db, notary_config, hooks=[Progress()]).run(NotarizeRequest(path))

Names load on first use, so importing one module of the package does not import the S3 stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import EngineConfig, UploadLimits
    from .credentials import Credentials
    from .database import Database, StateError
    from .engine import MultipartUploader, UploadResult
    from .errors import (
        ConfigError,
        CredentialsExpiredError,
        NotarydError,
        PermanentUploadError,
        SourceChangedError,
    )
    from .events import Event, Hook
    from .lifecycle import (
        IllegalTransition,
        NotaryStage,
        NotaryStatus,
        SubmissionState,
        UploadState,
    )
    from .notary.errors import NotaryError
    from .notary.pipeline import NotarizeOutcome, Notarizer, NotarizeRequest, NotaryConfig
    from .progress import Progress

_HOME = {
    "EngineConfig": "config",
    "UploadLimits": "config",
    "Credentials": "credentials",
    "Database": "database",
    "StateError": "database",
    "MultipartUploader": "engine",
    "UploadResult": "engine",
    "ConfigError": "errors",
    "CredentialsExpiredError": "errors",
    "NotarydError": "errors",
    "PermanentUploadError": "errors",
    "SourceChangedError": "errors",
    "Event": "events",
    "Hook": "events",
    "IllegalTransition": "lifecycle",
    "NotaryStage": "lifecycle",
    "NotaryStatus": "lifecycle",
    "SubmissionState": "lifecycle",
    "UploadState": "lifecycle",
    "NotaryError": "notary.errors",
    "NotarizeOutcome": "notary.pipeline",
    "NotarizeRequest": "notary.pipeline",
    "Notarizer": "notary.pipeline",
    "NotaryConfig": "notary.pipeline",
    "Progress": "progress",
}

__all__ = [
    "ConfigError",
    "Credentials",
    "CredentialsExpiredError",
    "Database",
    "EngineConfig",
    "Event",
    "Hook",
    "IllegalTransition",
    "MultipartUploader",
    "NotarizeOutcome",
    "NotarizeRequest",
    "Notarizer",
    "NotaryConfig",
    "NotaryError",
    "NotaryStage",
    "NotaryStatus",
    "NotarydError",
    "PermanentUploadError",
    "Progress",
    "SourceChangedError",
    "StateError",
    "SubmissionState",
    "UploadLimits",
    "UploadResult",
    "UploadState",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'uploader' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
