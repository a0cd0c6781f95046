"""Uploads through the emulator's S3 front (real aioboto3, real SigV4, real SeaweedFS behind)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from service.emulator.notary import NotaryEmulator
from service.emulator.s3front import PUT_OBJECT_ONLY
from service.emulator.verdicts import INVALID_MARKER
from tests.support.clocks import ShiftedClock
from tests.support.waiting import until_async
from uploader.lifecycle import NotaryStatus
from uploader.notary.client import NewSubmission, NotaryClient
from uploader.notary.logreport import parse_log, render_report

MiB = 1024 * 1024


@asynccontextmanager
async def s3_for(emulator: NotaryEmulator, submission: NewSubmission, *, secret: str | None = None,
                 token: str | None = None, region: str = "us-west-2",
                 unsigned_payload: bool = False) -> AsyncIterator[Any]:
    """An S3 client with the submission's credentials (or a wrong ``secret``/``token``)."""
    creds = submission.credentials
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint_url,
        region_name=region,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=secret or creds.secret_access_key,
        aws_session_token=token or creds.session_token,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": not unsigned_payload},
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
        ),
    ) as s3:
        yield s3


async def first_part(s3: Any, submission: NewSubmission, created: dict[str, Any],
                     **checksum: str) -> Any:
    """UploadPart of part 1 (1000 bytes) of the multipart upload ``created``."""
    return await s3.upload_part(Bucket=submission.bucket, Key=submission.object,
                                UploadId=created["UploadId"], PartNumber=1, Body=b"x" * 1000,
                                **checksum)


async def _wait_terminal(client: NotaryClient, submission_id: str) -> str:
    async def verdict() -> str | None:
        status = await client.status(submission_id)
        return status.status if status.is_terminal else None

    return await until_async(verdict, within=20.0, what=f"a verdict on {submission_id}")


def _crc32c(data: bytes) -> str:
    from awscrt.checksums import crc32c

    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


async def _multipart(
    s3: Any, submission: NewSubmission, parts: list[bytes], *, crc32c: bool = False
) -> None:
    extra: dict[str, str] = {"ChecksumAlgorithm": "CRC32C"} if crc32c else {}
    created = await s3.create_multipart_upload(
        Bucket=submission.bucket, Key=submission.object, **extra
    )
    upload_id = created["UploadId"]
    etags = []
    for number, body in enumerate(parts, start=1):
        answer = await s3.upload_part(
            Bucket=submission.bucket,
            Key=submission.object,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            **(
                {"ChecksumCRC32C": _crc32c(body)}
                if crc32c
                else {"ContentMD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
            ),
        )
        done = {"PartNumber": number, "ETag": answer["ETag"]}
        if crc32c:
            done["ChecksumCRC32C"] = _crc32c(body)
        etags.append(done)
    listed = await s3.list_parts(
        Bucket=submission.bucket, Key=submission.object, UploadId=upload_id
    )
    assert [p["PartNumber"] for p in listed["Parts"]] == list(range(1, len(parts) + 1))
    await s3.complete_multipart_upload(
        Bucket=submission.bucket,
        Key=submission.object,
        UploadId=upload_id,
        MultipartUpload={"Parts": etags},
    )


@pytest.mark.parametrize(
    "engine_style", [False, True], ids=["signed-payload+md5", "unsigned-payload+crc32c"]
)
async def test_multipart_upload_with_temporary_credentials_reaches_accepted(
    emulator: NotaryEmulator, client: NotaryClient, engine_style: bool
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(123_457)]
    data = b"".join(parts)
    digest = hashlib.sha256(data).hexdigest()
    submission = await client.submit("Big.zip", digest)
    async with s3_for(emulator, submission, unsigned_payload=engine_style) as s3:
        await _multipart(s3, submission, parts, crc32c=engine_style)
        # nothing is processed before the object has landed; now it has
        assert await _wait_terminal(client, submission.id) == "Accepted"
        stored = await s3.get_object(Bucket=submission.bucket, Key=submission.object)
        async with stored["Body"] as body:
            assert hashlib.sha256(await body.read()).hexdigest() == digest
    record = emulator.submissions[submission.id]
    assert (record.uploaded_sha256, record.uploaded_bytes) == (digest, len(data))
    ops = {op for (op, code) in emulator.s3.requests if code == 200}
    assert {"CreateMultipartUpload", "UploadPart", "ListParts", "CompleteMultipartUpload"} <= ops


@pytest.mark.parametrize("header", ["ContentMD5", "ChecksumCRC32C"])
async def test_part_checksums_pass_through_to_the_backend(
    emulator: NotaryEmulator, client: NotaryClient, header: str
) -> None:
    submission = await client.submit("Big.zip", "0" * 64)
    wrong = (
        base64.b64encode(hashlib.md5(b"y").digest()).decode()
        if header == "ContentMD5"
        else _crc32c(b"y")
    )
    async with s3_for(emulator, submission, unsigned_payload=True) as s3:
        created = await s3.create_multipart_upload(Bucket=submission.bucket, Key=submission.object)
        with pytest.raises(ClientError) as caught:
            await first_part(s3, submission, created, **{header: wrong})
    assert caught.value.response["Error"]["Code"] in {"BadDigest", "InvalidDigest"}


async def test_expired_credentials_get_expired_token_mid_upload(
    emulator: NotaryEmulator, client: NotaryClient, emulator_clock: ShiftedClock
) -> None:
    submission = await client.submit("Big.zip", "0" * 64)
    async with s3_for(emulator, submission) as s3:
        created = await s3.create_multipart_upload(Bucket=submission.bucket, Key=submission.object)
        emulator_clock.advance(12 * 3600)  # the credentials' 12 hours are over
        with pytest.raises(ClientError) as caught:
            await first_part(s3, submission, created)
    error = caught.value.response
    assert error["Error"]["Code"] == "ExpiredToken"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert emulator.s3.requests[("UploadPart", 400)] == 1


async def test_credentials_cannot_touch_another_key_or_bucket(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    first = await client.submit("A.zip", "0" * 64)
    second = await client.submit("B.zip", "0" * 64)
    async with s3_for(emulator, first) as s3:
        for bucket, key in [
            (first.bucket, second.object),  # another submission's object
            (first.bucket, first.object + ".extra"),
            ("another-bucket", first.object),
        ]:
            with pytest.raises(ClientError) as caught:
                await s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            assert caught.value.response["Error"]["Code"] == "AccessDenied"
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        await s3.put_object(Bucket=first.bucket, Key=first.object, Body=b"x")  # its own: fine
    assert emulator.submissions[second.id].landed_at is None


@pytest.mark.parametrize(
    ("override", "code", "http"),
    [
        ({"secret": "not-the-secret"}, "SignatureDoesNotMatch", 403),
        ({"token": "not-the-session-token"}, "InvalidToken", 400),
        ({"region": "us-east-1"}, "AuthorizationHeaderMalformed", 400),
    ],
)
async def test_bad_signatures_and_tokens_are_refused(
    emulator: NotaryEmulator,
    client: NotaryClient,
    override: dict[str, Any],
    code: str,
    http: int,
) -> None:
    submission = await client.submit("A.zip", "0" * 64)
    async with s3_for(emulator, submission, **override) as s3:
        with pytest.raises(ClientError) as caught:
            await s3.put_object(Bucket=submission.bucket, Key=submission.object, Body=b"x" * 100)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == http
    assert emulator.submissions[submission.id].landed_at is None


async def test_unknown_access_key_and_anonymous_requests(emulator: NotaryEmulator) -> None:
    import aiohttp

    async with aioboto3.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint_url,
        region_name="us-west-2",
        aws_access_key_id="ASIAUNKNOWNKEY000000",
        aws_secret_access_key="x",
        aws_session_token="y",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    ) as s3:
        with pytest.raises(ClientError) as caught:
            await s3.put_object(Bucket="notary-submissions-prod", Key="prod/x", Body=b"x")
    assert caught.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{emulator.s3_endpoint_url}/notary-submissions-prod/prod/x", data=b"x"
        ) as response,
    ):
        assert response.status == 403
        assert b"<Code>AccessDenied</Code>" in await response.read()


async def test_marker_in_upload_gives_invalid_with_a_grouped_report(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    data = os.urandom(MiB) + INVALID_MARKER + os.urandom(1000)
    submission = await client.submit("Bad.zip", hashlib.sha256(data).hexdigest())
    async with s3_for(emulator, submission) as s3:
        await s3.put_object(Bucket=submission.bucket, Key=submission.object, Body=data)
    assert await _wait_terminal(client, submission.id) == "Invalid"
    report = parse_log(await client.download_log(await client.log_url(submission.id)))
    assert report.status_code == 4000 and len(report.issues) == 3 and len(report.groups) == 2
    text = render_report(report)
    assert text.splitlines()[0] == (
        "Bad.zip: Invalid (4000) - Archive contains critical validation errors; "
        "3 error(s), 0 warning(s) in 2 distinct problem(s)"
    )
    assert "App.app/Contents/MacOS/App [x86_64]" in text


async def test_an_upload_that_does_not_match_its_declared_sha256_is_invalid(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    declared = os.urandom(2 * MiB)
    landed = bytearray(declared)
    landed[MiB] ^= 0x01  # one bit flipped on the way
    submission = await client.submit("Flipped.zip", hashlib.sha256(declared).hexdigest())
    async with s3_for(emulator, submission) as s3:
        await s3.put_object(Bucket=submission.bucket, Key=submission.object, Body=bytes(landed))
    assert await _wait_terminal(client, submission.id) == "Invalid"
    report = parse_log(await client.download_log(await client.log_url(submission.id)))
    assert report.status_code == 4000 and report.tickets == ()
    assert report.sha256 == hashlib.sha256(landed).hexdigest()
    [issue] = report.issues
    assert "does not match its declared hash" in issue.message
    assert hashlib.sha256(declared).hexdigest() in issue.message


async def test_stuck_submission_stays_in_progress_until_released(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    emulator.faults.stuck_next = 1
    submission = await client.submit("Slow.zip", hashlib.sha256(b"x").hexdigest())
    async with s3_for(emulator, submission) as s3:
        await s3.put_object(Bucket=submission.bucket, Key=submission.object, Body=b"x")
    async def verdict_held() -> bool:  # processed, its verdict kept back
        return emulator.submissions[submission.id].pending is not None

    await until_async(verdict_held, within=20.0, what="the stuck submission's processing")
    assert (await client.status(submission.id)).status == NotaryStatus.IN_PROGRESS
    emulator.release(submission.id)
    assert (await client.status(submission.id)).status == "Accepted"


async def test_virtual_host_addressing_like_transfer_acceleration(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    """``bucket.host`` addressing (what s3-accelerate uses) reaches the same object."""
    import aiohttp
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    submission = await client.submit("V.zip", hashlib.sha256(b"hello").hexdigest())
    creds = submission.credentials
    host = f"{submission.bucket}.s3-accelerate.localhost:{emulator.s3_port}"
    key_path = "/" + submission.object.replace(":", "%3A")
    request = AWSRequest(method="PUT", url=f"http://{host}{key_path}", data=b"hello")
    request.headers["X-Amz-Security-Token"] = creds.session_token
    S3SigV4Auth(
        BotoCredentials(creds.access_key_id, creds.secret_access_key), "s3", "us-west-2"
    ).add_auth(request)
    headers = {**dict(request.headers.items()), "Host": host}  # DNS-free "virtual host"
    url = f"{emulator.s3_endpoint_url}{key_path}"
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            aiohttp.client.URL(url, encoded=True), data=b"hello", headers=headers
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
    assert await _wait_terminal(client, submission.id) == "Accepted"
    assert emulator.submissions[submission.id].uploaded_bytes == 5


async def test_put_object_only_mode_denies_listing_abort_and_reads(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    emulator.s3.denied_operations = PUT_OBJECT_ONLY
    submission = await client.submit("A.zip", hashlib.sha256(b"x" * 1024).hexdigest())
    bucket, key = submission.bucket, submission.object
    async with s3_for(emulator, submission) as s3:
        upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
        etag = (await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                     Body=b"x" * 1024))["ETag"]
        refused = [
            s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id),
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
            s3.get_object(Bucket=bucket, Key=key),
        ]
        for call in refused:
            with pytest.raises(ClientError) as caught:
                await call
            assert caught.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as head:
            await s3.head_object(Bucket=bucket, Key=key)
        assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        await s3.complete_multipart_upload(  # the abort above was refused: the upload is intact
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
    assert await _wait_terminal(client, submission.id) == "Accepted"
