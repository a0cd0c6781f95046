"""The fault proxy, observed by real clients (boto3, aiohttp) against real SeaweedFS."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from service.emulator.faultplan import FaultPlan, Operation, classify
from service.emulator.faultproxy import FaultProxy, FaultProxyThread
from service.emulator.seaweed import SeaweedServer
from uploader.errors import ConfigError

MiB = 1 << 20
PART = 5 * MiB


def _client(seaweed: SeaweedServer, endpoint_url: str, **config: Any) -> Any:
    # total_max_attempts=1: the test must see the proxy's first answer, not botocore's retry.
    settings: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
    return boto3.client(
        "s3",
        config=Config(**(settings | config)),
        **(seaweed.client_kwargs() | {"endpoint_url": endpoint_url}),
    )


@pytest.fixture
def proxy(fault_proxy: FaultProxyThread) -> FaultProxyThread:
    return fault_proxy


@pytest.fixture
def via_proxy(seaweed: SeaweedServer, proxy: FaultProxyThread) -> Iterator[Any]:
    client = _client(seaweed, proxy.url)
    yield client
    client.close()


@pytest.fixture
def direct(seaweed: SeaweedServer) -> Iterator[Any]:
    """A client that bypasses the proxy, to see what the server really stored."""
    client = _client(seaweed, seaweed.endpoint_url)
    yield client
    client.close()


def _stored_sha256(direct: Any, bucket: str, key: str) -> str:
    body = direct.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _start_upload(client: Any, bucket: str, key: str = "obj") -> str:
    return str(client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])


def _error_code(error: BaseException) -> str:
    assert isinstance(error, botocore.exceptions.ClientError)
    return str(error.response["Error"]["Code"])


# -- clean pass-through --------------------------------------------------------------------


def test_clean_pass_through_keeps_bytes_and_signatures_intact(
    proxy: FaultProxyThread, via_proxy: Any, direct: Any, bucket: str
) -> None:
    data = os.urandom(PART + MiB + 123)
    upload_id = _start_upload(via_proxy, bucket)
    parts = []
    for number, chunk in ((1, data[:PART]), (2, data[PART:])):
        answer = via_proxy.upload_part(
            Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=number, Body=chunk
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    listed = via_proxy.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert [p["Size"] for p in listed["Parts"]] == [PART, MiB + 123]
    via_proxy.complete_multipart_upload(
        Bucket=bucket, Key="obj", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    # SigV4 verified upstream for every operation (SeaweedFS would answer 403 otherwise).
    assert _stored_sha256(direct, bucket, "obj") == hashlib.sha256(data).hexdigest()
    got = via_proxy.get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert got == data
    assert via_proxy.head_object(Bucket=bucket, Key="obj")["ContentLength"] == len(data)

    stats = proxy.stats
    assert stats.outcomes == {"forwarded": 7}
    assert stats.operations["UploadPart"] == 2
    # Complete's XML body counts too: received == forwarded >= the object.
    assert stats.request_body_bytes_received == stats.request_body_bytes_forwarded
    assert stats.part_body_bytes_received == len(data)  # exactly the parts' bytes, no XML
    assert len(data) < stats.request_body_bytes_received < len(data) + 2000
    assert stats.response_body_bytes_sent >= len(data)


# -- faults on UploadPart ------------------------------------------------------------------


def test_reset_mid_body_is_a_connection_error_and_nothing_is_stored(
    proxy: FaultProxyThread, via_proxy: Any, direct: Any, bucket: str
) -> None:
    upload_id = _start_upload(via_proxy, bucket)
    proxy.set_plan(FaultPlan(reset=1.0, seed=3))
    with pytest.raises(
        (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)
    ):
        via_proxy.upload_part(
            Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=os.urandom(PART)
        )
    stats = proxy.stats
    assert stats.outcomes.get("reset", 0) >= 1
    assert stats.request_body_bytes_forwarded == 0
    assert stats.request_body_bytes_received < PART * stats.outcomes["reset"]
    assert direct.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id).get("Parts", []) == []


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("internal_error", 500, "InternalError"),
        ("slow_down", 503, "SlowDown"),
        ("request_timeout", 400, "RequestTimeout"),
    ],
)
def test_error_faults_answer_s3_errors(
    proxy: FaultProxyThread,
    via_proxy: Any,
    direct: Any,
    bucket: str,
    fault: str,
    status: int,
    code: str,
) -> None:
    upload_id = _start_upload(via_proxy, bucket)
    proxy.set_plan(FaultPlan.from_json({fault: 1.0}))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        via_proxy.upload_part(
            Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=os.urandom(MiB)
        )
    assert _error_code(excinfo.value) == code
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.stats.outcomes[fault] == 1
    assert direct.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id).get("Parts", []) == []
    # The connection stays usable: the next clean request succeeds.
    proxy.set_plan(FaultPlan())
    via_proxy.upload_part(
        Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=os.urandom(MiB)
    )


def test_lost_response_stores_the_part_but_the_client_sees_a_reset(
    proxy: FaultProxyThread, via_proxy: Any, direct: Any, bucket: str
) -> None:
    upload_id = _start_upload(via_proxy, bucket)
    proxy.set_plan(FaultPlan(lost_response=1.0))
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        via_proxy.upload_part(
            Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=os.urandom(MiB)
        )
    parts = direct.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, MiB)]


def test_stall_leaves_the_client_without_an_answer(
    seaweed: SeaweedServer, proxy: FaultProxyThread, bucket: str
) -> None:
    proxy.set_plan(
        FaultPlan(stall=1.0, stall_seconds=30, operations=frozenset({Operation.PUT_OBJECT}))
    )
    client = _client(seaweed, proxy.url, read_timeout=1.0, connect_timeout=1.0)
    # A read timeout, not a reset: the proxy is still holding the connection (for 30 s).
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000)
    client.close()
    assert proxy.stats.outcomes == {"stall": 1}
    assert proxy.stats.request_body_bytes_received == 0


async def test_expect_100_continue_hang(seaweed: SeaweedServer) -> None:
    """A client that waits for "100 Continue" never gets it, and no read timeout saves it."""
    plan = FaultPlan(
        expect_hang=1.0, stall_seconds=30, operations=frozenset({Operation.PUT_OBJECT})
    )
    async with FaultProxy(seaweed.endpoint_url, plan) as proxy, aiohttp.ClientSession() as http:
        request = http.put(
            f"{proxy.url}/any-bucket/key",
            data=b"x" * 100_000,
            expect100=True,
            timeout=aiohttp.ClientTimeout(sock_read=0.3, sock_connect=1),
        )
        deadline = asyncio.timeout(1.5)
        with pytest.raises(TimeoutError):
            async with deadline, request:
                pass
        # Only the outer deadline ended it: sock_read (0.3 s) did not fire.
        assert deadline.expired()
        assert proxy.stats.outcomes == {"expect_hang": 1}
        assert proxy.stats.request_body_bytes_received == 0

        # Control: with no fault the same client gets an answer (403: it signs nothing).
        proxy.set_plan(FaultPlan())
        async with http.put(f"{proxy.url}/any-bucket/key", data=b"x", expect100=True) as answer:
            assert answer.status == 403


async def test_mid_body_stall_stops_reading_part_way(seaweed: SeaweedServer) -> None:
    plan = FaultPlan(
        mid_body_stall=1.0, stall_seconds=30, operations=frozenset({Operation.PUT_OBJECT})
    )
    size = 64 * MiB  # far more than loopback socket buffers can absorb
    sent = 0

    async def body() -> Any:
        nonlocal sent
        chunk = b"\0" * MiB
        for _ in range(size // MiB):
            yield chunk
            sent += len(chunk)

    async with FaultProxy(seaweed.endpoint_url, plan) as proxy, aiohttp.ClientSession() as http:
        with pytest.raises(TimeoutError):
            async with (
                asyncio.timeout(1.5),
                http.put(
                    f"{proxy.url}/any-bucket/key",
                    data=body(),
                    headers={"Content-Length": str(size)},
                ),
            ):
                pass
        received = proxy.stats.request_body_bytes_received
        assert proxy.stats.outcomes == {"mid_body_stall": 1}
        assert received < size
        assert sent < size  # the client was blocked by TCP back-pressure


def test_expired_token_switch_and_timer(
    proxy: FaultProxyThread, via_proxy: Any, bucket: str
) -> None:
    via_proxy.put_object(Bucket=bucket, Key="before", Body=b"ok")
    proxy.expire_credentials()
    calls: list[Callable[[], Any]] = [
        lambda: via_proxy.put_object(Bucket=bucket, Key="k", Body=b"x"),
        lambda: via_proxy.list_objects_v2(Bucket=bucket),  # every operation, not only parts
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            call()
        assert _error_code(excinfo.value) == "ExpiredToken"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    assert proxy.stats.outcomes["expired_token"] == 2


def test_expired_token_timer_runs_on_the_proxys_clock(seaweed: SeaweedServer, bucket: str) -> None:
    now = [0.0]
    plan = FaultPlan(expired_token_after_seconds=30)
    with FaultProxyThread(seaweed.endpoint_url, plan, clock=lambda: now[0]) as proxy:
        client = _client(seaweed, proxy.url)
        now[0] = 29.9
        client.put_object(Bucket=bucket, Key="soon", Body=b"ok")
        now[0] = 30.0
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.put_object(Bucket=bucket, Key="late", Body=b"x")
        client.close()
    assert _error_code(excinfo.value) == "ExpiredToken"
    assert proxy.stats.outcomes == {"forwarded": 1, "expired_token": 1}


# -- selection, determinism ----------------------------------------------------------------


def test_faults_apply_only_to_selected_operations(
    proxy: FaultProxyThread, via_proxy: Any, bucket: str
) -> None:
    proxy.set_plan(FaultPlan(slow_down=1.0))  # default selection: UploadPart only
    via_proxy.put_object(Bucket=bucket, Key="k", Body=b"x")
    upload_id = _start_upload(via_proxy, bucket)
    with pytest.raises(botocore.exceptions.ClientError):
        via_proxy.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=b"x")

    proxy.set_plan(
        FaultPlan(
            slow_down=1.0,
            operations=frozenset({Operation.COMPLETE_MULTIPART_UPLOAD, Operation.LIST_PARTS}),
        )
    )
    via_proxy.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=b"x")
    calls: list[Callable[[], Any]] = [
        lambda: via_proxy.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id),
        lambda: via_proxy.complete_multipart_upload(
            Bucket=bucket, Key="obj", UploadId=upload_id, MultipartUpload={"Parts": []}
        ),
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            call()
        assert _error_code(excinfo.value) == "SlowDown"


def _fault_pattern(seaweed: SeaweedServer, bucket: str, plan: FaultPlan, count: int) -> list[bool]:
    """Which of ``count`` sequential PutObjects succeed through a proxy with ``plan``."""
    plan = dataclasses.replace(plan, operations=frozenset({Operation.PUT_OBJECT}))
    with FaultProxyThread(seaweed.endpoint_url, plan) as proxy:
        client = _client(seaweed, proxy.url)
        pattern = []
        for index in range(count):
            try:
                client.put_object(Bucket=bucket, Key=f"k{index}", Body=b"x")
                pattern.append(True)
            except botocore.exceptions.ClientError:
                pattern.append(False)
        client.close()
    return pattern


def test_seeded_plans_repeat_and_clean_first_is_honoured(
    seaweed: SeaweedServer, bucket: str
) -> None:
    plan = FaultPlan(slow_down=0.5, seed=42, clean_first=4)
    first = _fault_pattern(seaweed, bucket, plan, 24)
    second = _fault_pattern(seaweed, bucket, plan, 24)
    assert first == second
    assert first[:4] == [True] * 4
    assert 3 <= first[4:].count(False) <= 17  # about half of the remaining 20
    other_seed = _fault_pattern(seaweed, bucket, dataclasses.replace(plan, seed=7), 24)
    assert other_seed != first


# -- shaping -------------------------------------------------------------------------------


class _Waits:
    """The proxy's sleeps, recorded and not slept: with a clock that stands still, each wait
    the bandwidth cap asks for is the whole debt so far."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def test_bandwidth_cap_is_shared_across_connections(seaweed: SeaweedServer, bucket: str) -> None:
    rate, burst = 2 * MiB, 256 * 1024
    waits = _Waits()
    plan = FaultPlan(bandwidth_bytes_per_second=rate)
    errors: list[BaseException] = []

    def put(proxy: FaultProxyThread, key: str) -> None:
        client = _client(seaweed, proxy.url)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=os.urandom(2 * MiB))
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    with FaultProxyThread(seaweed.endpoint_url, plan, clock=lambda: 0.0, sleep=waits) as proxy:
        threads = [threading.Thread(target=put, args=(proxy, f"k{n}")) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert proxy.stats.request_body_bytes_received == 4 * MiB
    # One cap for both connections: the 4 MiB after the burst take 1.875 s at 2 MiB/s (a cap
    # per connection would ask for half of that).
    assert max(waits.seconds) == pytest.approx((4 * MiB - burst) / rate)


async def test_bandwidth_cap_is_felt_by_the_sender(seaweed: SeaweedServer) -> None:
    """The sender's writes follow the cap, not loopback's multi-megabyte kernel buffers
    (a stall watchdog that watches the sender's progress must see bytes keep moving)."""
    rate, size, chunk = 5 * MiB, 10 * MiB, 64 * 1024
    leads: list[int] = []  # how far the sender's writes ran ahead of what the proxy took in

    plan = FaultPlan(bandwidth_bytes_per_second=rate)
    async with FaultProxy(seaweed.endpoint_url, plan) as proxy, aiohttp.ClientSession() as http:

        async def body() -> Any:
            for written in range(chunk, size + 1, chunk):
                yield b"\0" * chunk
                leads.append(written - proxy.stats.request_body_bytes_received)

        request = http.put(
            f"{proxy.url}/any-bucket/key", data=body(), headers={"Content-Length": str(size)}
        )
        async with request as answer:
            await answer.read()
    # Without link-like sockets, loopback's kernel buffers swallow the whole body at once and
    # the sender then waits in silence; with them it stays a few MB ahead of what the cap let in.
    assert max(leads) <= size // 2


def test_latency_is_added_to_every_request(seaweed: SeaweedServer, bucket: str) -> None:
    waits = _Waits()
    plan = FaultPlan(latency_seconds=0.2)
    with FaultProxyThread(seaweed.endpoint_url, plan, sleep=waits) as proxy:
        client = _client(seaweed, proxy.url)
        for _ in range(4):
            client.head_bucket(Bucket=bucket)
        client.close()
    assert waits.seconds == [0.2] * 4


# -- plan validation, classification -------------------------------------------------------


def test_plan_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="add up to"):
        FaultPlan(reset=0.6, slow_down=0.6)
    with pytest.raises(ConfigError, match=r"FaultPlan\.stall"):
        FaultPlan(stall=1.5)
    with pytest.raises(ConfigError, match="bandwidth"):
        FaultPlan(bandwidth_bytes_per_second=0)
    with pytest.raises(ConfigError, match="unknown field"):
        FaultPlan.from_json({"resets": 0.1})
    plan = FaultPlan.from_json({"reset": 0.2, "operations": ["PutObject"]})
    assert plan.operations == frozenset({Operation.PUT_OBJECT})


@pytest.mark.parametrize(
    ("method", "path", "query", "operation"),
    [
        ("PUT", "/b/k", {"partNumber": "1", "uploadId": "u"}, Operation.UPLOAD_PART),
        ("POST", "/b/k", {"uploadId": "u"}, Operation.COMPLETE_MULTIPART_UPLOAD),
        ("POST", "/b/k", {"uploads": ""}, Operation.CREATE_MULTIPART_UPLOAD),
        ("GET", "/b/k", {"uploadId": "u"}, Operation.LIST_PARTS),
        ("DELETE", "/b/k", {"uploadId": "u"}, Operation.ABORT_MULTIPART_UPLOAD),
        ("PUT", "/b/dir/k", {}, Operation.PUT_OBJECT),
        ("PUT", "/b", {}, Operation.OTHER),
        ("GET", "/b", {"list-type": "2"}, Operation.OTHER),
    ],
)
def test_classify(method: str, path: str, query: dict[str, str], operation: Operation) -> None:
    assert classify(method, path, query) is operation


# -- subprocess mode -----------------------------------------------------------------------


@pytest.mark.process
def test_subprocess_mode_prints_url_serves_control_api_and_final_stats(
    seaweed: SeaweedServer, bucket: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "service.emulator.faultproxy",
        "--upstream",
        seaweed.endpoint_url,
        "--listen",
        "127.0.0.1:0",
        "--slow-down",
        "1.0",
        "--operations",
        "PutObject",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            client = _client(seaweed, url)
            with pytest.raises(botocore.exceptions.ClientError) as excinfo:
                client.put_object(Bucket=bucket, Key="k", Body=b"x")
            assert _error_code(excinfo.value) == "SlowDown"

            change = urllib.request.Request(
                f"{url}/__faultproxy/plan",
                data=json.dumps({"slow_down": 0.0}).encode(),
                method="PUT",
            )
            with urllib.request.urlopen(change, timeout=5) as answer:
                assert json.load(answer)["slow_down"] == 0.0
            client.put_object(Bucket=bucket, Key="k", Body=b"x")
            client.close()
            with urllib.request.urlopen(f"{url}/__faultproxy/stats", timeout=5) as answer:
                assert json.load(answer)["outcomes"] == {"slow_down": 1, "forwarded": 1}
        finally:
            process.terminate()
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert json.loads(out)["operations"] == {"PutObject": 2}
