"""Smoke tests of the benchmark harness pieces (no timed assertions).

The sink runs as a real process and is driven by real boto3 (multipart upload, ListParts
paging, abort) and by a hand-built aws-chunked body; the fault proxy runs as a real process in
front of it with the exact command line the harness uses; the report renders from a small
synthetic result set.
"""

from __future__ import annotations

import http.client
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from benchmarks.crc32c import Combiner, cached_file_crc32c, crc32c, file_crc32c
from benchmarks.datafile import ensure_source
from benchmarks.measure import run_measured
from benchmarks.profile import summarise
from benchmarks.report import evaluate, render_chart, render_markdown
from benchmarks.services import ShaperProcess, Shaping, SinkProcess

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SinkProcess]:
    with SinkProcess(tmp_path_factory.mktemp("sink") / "sink.log") as process:
        yield process


def test_combined_crc_equals_crc_of_concatenation() -> None:
    pieces = [os.urandom(n) for n in (5 * MiB + 3, 5 * MiB + 3, 17, 0, 2 * MiB)]
    combined = Combiner().of_parts([(crc32c(p), len(p)) for p in pieces])
    assert combined == crc32c(b"".join(pieces))


def test_source_file_is_stamped_and_reused(tmp_path: Path) -> None:
    size = 3 * MiB + 5
    path = ensure_source(tmp_path, size)
    assert path.stat().st_size == size
    with open(path, "rb") as f:
        blocks = [f.read(MiB) for _ in range(4)]
    assert len({b[:8] for b in blocks}) == 4  # every MiB starts with its own index
    mtime = path.stat().st_mtime_ns
    assert ensure_source(tmp_path, size) == path
    assert path.stat().st_mtime_ns == mtime
    assert cached_file_crc32c(path) == file_crc32c(path) == crc32c(path.read_bytes())


@pytest.mark.integration
def test_sink_receives_a_real_boto3_multipart_upload(
    sink: SinkProcess, tmp_path: Path, s3_client: Callable[..., Any]
) -> None:
    source = ensure_source(tmp_path, 12 * MiB + 7)
    client = s3_client(sink.url)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_file(str(source), "bench", "dir/object.bin", Config=config)

    stored = sink.stored_object("bench", "dir/object.bin")
    assert stored is not None
    assert stored["size"] == source.stat().st_size
    assert stored["part_count"] == 3
    assert stored["crc32c"] == file_crc32c(source)
    head = client.head_object(Bucket="bench", Key="dir/object.bin")
    assert head["ContentLength"] == source.stat().st_size
    assert sink.stats()["requests"]["UploadPart"] >= 3


@pytest.mark.integration
def test_sink_detects_parts_completed_in_the_wrong_order(sink: SinkProcess, s3_client: Callable[..., Any]) -> None:
    client = s3_client(sink.url)
    upload = client.create_multipart_upload(Bucket="bench", Key="swapped")
    uid = upload["UploadId"]
    first, second = os.urandom(5 * MiB), os.urandom(MiB)
    e1 = client.upload_part(Bucket="bench", Key="swapped", UploadId=uid, PartNumber=1, Body=second)
    e2 = client.upload_part(Bucket="bench", Key="swapped", UploadId=uid, PartNumber=2, Body=first)
    with pytest.raises(ClientError, match="EntityTooSmall"):
        client.complete_multipart_upload(
            Bucket="bench", Key="swapped", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                       {"PartNumber": 2, "ETag": e2["ETag"]}]},
        )
    e1 = client.upload_part(Bucket="bench", Key="swapped", UploadId=uid, PartNumber=1, Body=second)
    e1 = client.upload_part(Bucket="bench", Key="swapped", UploadId=uid, PartNumber=1, Body=first)
    e2 = client.upload_part(Bucket="bench", Key="swapped", UploadId=uid, PartNumber=2, Body=second)
    client.complete_multipart_upload(
        Bucket="bench", Key="swapped", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": e2["ETag"]}]},
    )
    stored = sink.stored_object("bench", "swapped")
    assert stored is not None
    assert stored["crc32c"] == crc32c(first + second)
    assert stored["crc32c"] != crc32c(second + first)


@pytest.mark.integration
def test_sink_pages_list_parts_and_forgets_aborted_uploads(sink: SinkProcess, s3_client: Callable[..., Any]) -> None:
    client = s3_client(sink.url)
    uid = client.create_multipart_upload(Bucket="bench", Key="paged")["UploadId"]
    for number in (2, 4, 6, 8, 10):
        client.upload_part(Bucket="bench", Key="paged", UploadId=uid, PartNumber=number, Body=b"x")
    pages = client.get_paginator("list_parts").paginate(
        Bucket="bench", Key="paged", UploadId=uid, PaginationConfig={"PageSize": 2}
    )
    assert [[p["PartNumber"] for p in page["Parts"]] for page in pages] == [[2, 4], [6, 8], [10]]
    client.abort_multipart_upload(Bucket="bench", Key="paged", UploadId=uid)
    with pytest.raises(ClientError, match="NoSuchUpload"):
        client.list_parts(Bucket="bench", Key="paged", UploadId=uid)


@pytest.mark.integration
def test_sink_decodes_aws_chunked_bodies(sink: SinkProcess) -> None:
    data = os.urandom(300_000)
    body = (
        f"{200_000:x};chunk-signature=aaaa\r\n".encode() + data[:200_000] + b"\r\n"
        + f"{100_000:x}\r\n".encode() + data[200_000:] + b"\r\n"
        + b"0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n"
    )
    host = urllib.parse.urlsplit(sink.url).netloc
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.request(
        "PUT", "/bench/chunked", body=body,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32c",
        },
    )
    assert connection.getresponse().status == 200
    connection.close()
    stored = sink.stored_object("bench", "chunked")
    assert stored is not None
    assert (stored["size"], stored["crc32c"]) == (len(data), crc32c(data))


@pytest.mark.process
def test_fault_proxy_in_front_of_the_sink_counts_wire_bytes(
    sink: SinkProcess, tmp_path: Path, s3_client: Callable[..., Any]
) -> None:
    source = ensure_source(tmp_path, 11 * MiB)
    shaping = Shaping(latency_ms=5, error_rate=0.3)
    with ShaperProcess(shaping, sink.url, tmp_path / "proxy.log") as proxy:
        client = s3_client(proxy.url)
        config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        client.upload_file(str(source), "bench", "via-proxy", Config=config)
        stats = proxy.stats()
    assert stats is not None
    assert stats["request_body_bytes_received"] >= source.stat().st_size
    stored = sink.stored_object("bench", "via-proxy")
    assert stored is not None and stored["crc32c"] == file_crc32c(source)


@pytest.mark.process
def test_run_measured_reports_cpu_memory_and_timeouts(tmp_path: Path) -> None:
    grow = "b = bytearray(80 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(0.3)"
    cost = run_measured([sys.executable, "-c", grow], dict(os.environ), 60, tmp_path / "a.log")
    assert cost.exit_code == 0 and not cost.timed_out
    assert cost.peak_rss_bytes >= 80 * MiB
    assert cost.cpu_seconds > 0
    slow = run_measured(
        [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), 0.5,
        tmp_path / "b.log",
    )
    # the timeout's SIGKILL ended it, not the end of its minute of sleep (that would exit 0)
    assert slow.timed_out and slow.exit_code == -signal.SIGKILL, slow


def _synthetic_results() -> dict[str, Any]:
    runs = []
    for condition, size in (("clean", 1024 * MiB), ("clean", 4096 * MiB), ("lossy", 1024 * MiB)):
        for tool, wall, cpu, ok in (
            ("notaryd", 2.0, 1.0, True), ("s5cmd", 3.0, 1.5, True),
            ("aws-cli", 4.0, 3.0, condition == "clean"), ("boto3", 5.0, 3.0, True),
            ("boto3-crt", 2.5, 0.8, True),
        ):
            scale = size / (1024 * MiB)
            runs.append({
                "condition": condition, "size": size, "tool": tool, "run": 1, "success": ok,
                "verdict": "ok" if ok else "exit 1", "attempts": 1,
                "wall_seconds": wall * scale, "cpu_seconds": cpu * scale,
                "peak_rss_bytes": 100 * MiB, "wire_bytes": size, "wire_source": "sink",
                "sink_cpu_seconds": 0.1, "error": "" if ok else "boom",
            })
    return {
        "mode": "quick", "started": 0.0, "finished": 60.0,
        "machine": {"cpu": "test cpu", "cores": "2"},
        "versions": {"notaryd": "notaryd 0"}, "commands": {"notaryd": "notaryd upload x"},
        "tuning": {"part_size": 16 * MiB, "concurrency": 8, "stall_timeout_seconds": 20},
        "conditions": [
            {"name": "clean", "description": "direct", "sizes": [1024 * MiB, 4096 * MiB],
             "runs": 1, "timeout_seconds": 60, "notaryd_reruns": 0},
            {"name": "lossy", "description": "lossy", "sizes": [1024 * MiB], "runs": 1,
             "timeout_seconds": 60, "notaryd_reruns": 2},
        ],
        "notes": ["synthetic"], "ceiling": {"error": "not measured"}, "runs": runs,
        "hash": {"error": "not run"}, "profile": {"error": "not run"}, "analysis": "",
    }


@pytest.mark.usefixtures("matplotlib_ready")
def test_report_renders_targets_tables_and_chart(tmp_path: Path) -> None:
    results = _synthetic_results()
    verdicts = {t.name: t.verdict for t in evaluate(results)}
    assert verdicts["clean 1 GiB: throughput ≥ 1.5 x aws-cli"] == "met"
    assert verdicts["clean 1 GiB: CPU/GiB ≤ 0.5 x aws-cli"] == "met"
    assert verdicts["lossy 1 GiB: throughput ≥ 2 x best finishing peer"] == "MISSED"
    assert verdicts["memory: peak RSS at 4 GiB within 10 % of 1 GiB"] == "met"
    assert verdicts["clean 1 GiB: throughput ≥ every peer"] == "met"
    thrifty = {t.name: t for t in evaluate(results)}["clean 4 GiB: CPU/GiB ≤ 0.6 x thriftiest peer"]
    assert (thrifty.verdict, thrifty.measured) == (
        "MISSED", "1.25 x boto3-crt (1.00 vs 0.80 CPU-s/GiB)"
    )
    text = render_markdown(results)
    assert "| notaryd | 1 / 1 | 2.0 | 512 |" in text
    assert "lossy 1 GiB #1 aws-cli: exit 1" in text
    render_chart(results, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_summary_ranks_frames() -> None:
    collapsed = (
        "main (a.py:1);upload (engine.py:10);send (body.py:5) 30\n"
        "main (a.py:1);upload (engine.py:11);hash (hashing.py:3) 70\n"
        "main (a.py:1);send (body.py:5);write (libc.so.6) 60\n"
        "worker (thread.py:9);PyThread_acquire_lock_timed (libpython3.11.so.1.0) 40\n"
    )
    summary = summarise(collapsed)
    assert summary["samples"] == 200
    assert summary["busy_samples"] == 160  # the waiting worker thread is left out
    assert summary["libraries"] == [("python code", 62.5), ("libc", 37.5)]
    collapsed = "\n".join(collapsed.splitlines()[:2])
    summary = summarise(collapsed)
    assert summary["samples"] == 100
    assert summary["self"][0] == ("hash (hashing.py)", 70.0)
    assert ("upload (engine.py)", 100.0) in summary["inclusive"]


def test_plan_subset_keeps_named_conditions_and_sizes_and_says_so() -> None:
    from benchmarks.__main__ import _subset
    from benchmarks.plan import Condition, full_plan

    plan = _subset(full_plan(), "clean,tls", "1024,6144")
    assert [(c.name, c.sizes, c.tls) for c in plan.conditions] == [
        ("clean", (1024 * MiB, 6144 * MiB), False),
        ("tls", (1024 * MiB, 6144 * MiB), True),
    ]
    assert plan.notes[-1] == (
        "subset of the plan: clean at 1 GiB, 6 GiB; tls at 1 GiB, 6 GiB (nothing else ran)."
    )
    assert _subset(full_plan(), None, None) == full_plan()
    with pytest.raises(ValueError, match="plain HTTP only"):
        Condition("tls-lossy", Shaping(reset_rate=0.1), (MiB,), 1, 60, tls=True)


@pytest.mark.usefixtures("matplotlib_ready")
def test_report_shows_wakeups_and_the_link_targets(tmp_path: Path) -> None:
    results = _synthetic_results()
    link = {"mbit": 200.0, "rtt_ms": 50.0}
    results["conditions"].append(
        {"name": "tls-slow", "description": "HTTPS over a link", "sizes": [1024 * MiB],
         "runs": 1, "timeout_seconds": 60, "notaryd_reruns": 0, "tls": True, "link": link}
    )
    for run in list(results["runs"]):
        run["wakeups"] = 2048
        if run["condition"] == "clean" and run["size"] == 1024 * MiB:
            results["runs"].append({**run, "condition": "tls-slow", "wakeups": 4096,
                                    "cpu_seconds": run["cpu_seconds"] * 1.2})
    verdicts = {t.name: (t.verdict, t.measured) for t in evaluate(results)}
    assert verdicts["tls-slow 1 GiB: notaryd CPU/GiB ≤ 1.5 x its own on the fast sink"] == (
        "met", "1.20 x (1.20 vs 1.00 CPU-s/GiB in clean)"
    )
    assert verdicts["tls-slow 1 GiB: CPU/GiB ≤ 0.6 x thriftiest peer"][0] == "MISSED"
    text = render_markdown(results)
    assert "| notaryd | 1 / 1 | 2.0 | 512 | 1.00 | 2.0 k |" in text
    assert "## When the link is the bottleneck (tls-shaped, tls-slow)" in text
    assert "| tls-slow | 1 GiB | 1.20 s, 4.1 k |" in text
    render_chart(results, tmp_path / "chart.png")
