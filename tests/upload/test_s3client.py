"""The S3 client factory against a real HTTP server on loopback: clients of one process share
botocore's parsed S3 model, never each other's credentials."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.serving import serving
from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.s3client import open_s3_client

pytestmark = pytest.mark.integration

_KEY_ID = re.compile(r"Credential=([^/]+)/")


@pytest.fixture
async def recording_s3() -> AsyncIterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """An S3 stand-in that answers HeadObject and records (key, access key id, token) per request."""
    seen: list[tuple[str, str, str | None]] = []

    async def head(request: web.Request) -> web.Response:
        match = _KEY_ID.search(request.headers.get("Authorization", ""))
        seen.append((request.match_info["key"], match.group(1) if match else "",
                     request.headers.get("X-Amz-Security-Token")))
        return web.Response(headers={"ETag": '"0"', "Content-Length": "0"})

    async with serving(head, "/bucket/{key}") as url:
        yield url.removesuffix("/bucket/{key}"), seen


async def test_clients_share_the_s3_model_and_keep_their_own_credentials(
    recording_s3: tuple[str, list[tuple[str, str, str | None]]],
) -> None:
    url, seen = recording_s3
    config = EngineConfig(endpoint_url=url, stall_timeout_seconds=10)
    first = Credentials("AKIAFIRSTJOB", "first-secret", "first-token")
    second = Credentials("AKIASECONDJOB", "second-secret", None)
    async with open_s3_client(config, first) as one, open_s3_client(config, second) as two:
        await asyncio.gather(one.head_object(Bucket="bucket", Key="one"),
                             two.head_object(Bucket="bucket", Key="two"))
        async with open_s3_client(config, first, read_timeout_seconds=600) as three:
            await three.head_object(Bucket="bucket", Key="three")
            # one parse of the S3 model serves every client (two per upload, one per job)
            models = {id(c.meta.service_model._service_description) for c in (one, two, three)}
            assert len(models) == 1
    assert sorted(seen) == [("one", "AKIAFIRSTJOB", "first-token"),
                            ("three", "AKIAFIRSTJOB", "first-token"),
                            ("two", "AKIASECONDJOB", None)]
