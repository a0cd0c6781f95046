"""The S3 operations the upload engine uses, as a Protocol.

The engine talks to this, not to aioboto3 directly, so the same code drives the real client
(``s3client.open_s3_client``) and the in-memory fake (``s3fake.InMemoryS3``) that tests use to
inject faults without a network. Arguments and answers are boto3's (keyword arguments, dicts);
failures are botocore's ``ClientError`` or connection errors, classified by ``s3client.classify``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from uploader.config import EngineConfig
from uploader.credentials import Credentials


class S3Api(Protocol):
    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def upload_part(self, **kwargs: Any) -> dict[str, Any]: ...

    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def list_parts(self, **kwargs: Any) -> dict[str, Any]: ...

    async def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def head_object(self, **kwargs: Any) -> dict[str, Any]: ...


# Opens a client for one credential set; ``read_timeout_seconds`` overrides the stall timeout.
S3Opener = Callable[[EngineConfig, Credentials, float | None], AbstractAsyncContextManager[S3Api]]
