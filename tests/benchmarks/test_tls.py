"""The benchmark's TLS condition: generated CA, HTTPS sink, and clients that really verify it.

Everything runs on loopback against a real sink process serving HTTPS: real boto3 (in this
process) and the real ``notaryd upload`` command (as the harness invokes it) must succeed when
told to trust the generated CA and fail when they are not, which is only possible if TLS was
negotiated and the certificate chain was checked.
"""

from __future__ import annotations

import ipaddress
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import SSLError
from cryptography import x509

from benchmarks.crc32c import file_crc32c
from benchmarks.datafile import ensure_source
from benchmarks.floor import run_floor
from benchmarks.linkshaper import Link
from benchmarks.measure import run_measured
from benchmarks.peers import Notaryd, Target, Tuning
from benchmarks.plan import Condition, GiB, full_plan, quick_plan
from benchmarks.services import LinkProcess, Shaping, SinkProcess
from benchmarks.tls import TlsFiles, generate

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_sink(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SinkProcess]:
    with SinkProcess(tmp_path_factory.mktemp("sink") / "sink.log", tls=tls) as process:
        yield process


def test_server_certificate_chains_to_the_generated_ca_and_names_loopback(tls: TlsFiles) -> None:
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    leaf, chained_ca = x509.load_pem_x509_certificates(tls.server_cert.read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert chained_ca == ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(tls.server_key.stat().st_mode) == 0o600


def test_https_sink_negotiates_tls_and_refuses_plain_http(https_sink: SinkProcess) -> None:
    assert https_sink.url.startswith("https://127.0.0.1:")
    assert https_sink.tls is not None
    context = https_sink.tls.client_context()
    with socket.create_connection(("127.0.0.1", https_sink.port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
        assert wrapped.version() in ("TLSv1.2", "TLSv1.3")
        assert wrapped.getpeercert() is not None
    with socket.create_connection(("127.0.0.1", https_sink.port), timeout=30) as plain:
        plain.sendall(b"GET /_sink/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""  # the TLS server dropped a client that did not say hello
        assert not answer.startswith(b"HTTP/")


def test_boto3_uploads_over_https_only_when_it_trusts_the_ca(
    https_sink: SinkProcess, tmp_path: Path, s3_client: Callable[..., Any]
) -> None:
    source = ensure_source(tmp_path, 11 * MiB + 3)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3_client(https_sink.url, str(https_sink.ca_bundle)).upload_file(
        str(source), "bench", "tls/boto3", Config=config
    )
    stored = https_sink.stored_object("bench", "tls/boto3")
    assert stored is not None
    assert (stored["size"], stored["crc32c"]) == (source.stat().st_size, file_crc32c(source))

    with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        # The system trust store only; one attempt, since botocore retries SSL errors.
        s3_client(https_sink.url, attempts=1).head_bucket(Bucket="bench")


@pytest.mark.process
def test_notaryd_upload_trusts_the_ca_named_in_aws_ca_bundle(
    https_sink: SinkProcess, tmp_path: Path
) -> None:
    source = ensure_source(tmp_path, 20 * MiB + 1)
    tuning = Tuning(part_size=8 * MiB, concurrency=2, stall_timeout_seconds=10)
    target = Target(https_sink.url, "bench", "tls/notaryd", https_sink.ca_bundle)
    invocation = Notaryd().invocation(source, target, tuning, tmp_path)
    assert invocation.env["AWS_CA_BUNDLE"] == str(https_sink.ca_bundle)
    done = subprocess.run(
        invocation.argv, env=invocation.env, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = https_sink.stored_object("bench", "tls/notaryd")
    assert stored is not None
    assert (stored["size"], stored["crc32c"]) == (source.stat().st_size, file_crc32c(source))
    assert stored["part_count"] == 3



@pytest.mark.process  # each pass runs in a fresh interpreter
def test_floor_moves_every_byte_plain_zero_copy_and_over_tls(tls: TlsFiles, tmp_path: Path) -> None:
    source = ensure_source(tmp_path, 9 * MiB + 5)
    floor = run_floor(source, 4 * MiB, tls, repeats=1)
    assert floor["bytes"] == source.stat().st_size
    for case in ("copy", "copy_aligned", "sendfile", "tls_copy", "tls_copy_aligned"):
        assert floor[case]["cpu_seconds_per_gib"] > 0
        assert floor[case]["mib_per_second"] > 0


@pytest.mark.process
def test_notaryd_upload_stops_at_once_with_advice_when_the_certificate_is_untrusted(
    https_sink: SinkProcess, tmp_path: Path
) -> None:
    """A certificate failure is no transient error: one line naming AWS_CA_BUNDLE, exit 1."""
    source = ensure_source(tmp_path, 6 * MiB)
    tuning = Tuning(part_size=5 * MiB, concurrency=2, stall_timeout_seconds=10)
    target = Target(https_sink.url, "bench", "tls/untrusted", https_sink.ca_bundle)
    invocation = Notaryd().invocation(source, target, tuning, tmp_path)
    env = {k: v for k, v in invocation.env.items() if k != "AWS_CA_BUNDLE"}
    done = subprocess.run(
        invocation.argv, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "AWS_CA_BUNDLE" in done.stderr
    assert "Traceback" not in done.stderr
    assert "retrying" not in done.stderr
    assert https_sink.stored_object("bench", "tls/untrusted") is None


@pytest.mark.process
def test_link_shaper_carries_https_end_to_end_for_boto3_and_notaryd(
    https_sink: SinkProcess, tmp_path: Path, s3_client: Callable[..., Any]
) -> None:
    """tls-shaped/tls-slow at a tiny size: through the TCP-level link every tool still verifies
    the sink's own certificate (the shaper never terminates TLS) and the bytes arrive intact;
    notaryd's run also reports its wake-ups (ru_nvcsw), as every measured run does."""
    source = ensure_source(tmp_path, 11 * MiB + 3)
    with LinkProcess(Link(mbit=400, rtt_ms=10), https_sink, tmp_path / "link.log") as link:
        assert link.url.startswith("https://127.0.0.1:") and link.port != https_sink.port
        config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        s3_client(link.url, str(https_sink.ca_bundle)).upload_file(
            str(source), "bench", "link/boto3", Config=config
        )
        tuning = Tuning(part_size=5 * MiB, concurrency=2, stall_timeout_seconds=10)
        target = Target(link.url, "bench", "link/notaryd", https_sink.ca_bundle)
        invocation = Notaryd().invocation(source, target, tuning, tmp_path)
        cost = run_measured(invocation.argv, invocation.env, 120, tmp_path / "notaryd.log")
    assert cost.exit_code == 0, cost.stderr_tail
    assert cost.wakeups > 0
    for key in ("link/boto3", "link/notaryd"):
        stored = https_sink.stored_object("bench", key)
        assert stored is not None
        assert (stored["size"], stored["crc32c"]) == (source.stat().st_size, file_crc32c(source))


def test_link_conditions_are_https_through_the_link_in_both_plans() -> None:
    for plan in (quick_plan(), full_plan()):
        links = {c.name: c for c in plan.conditions if c.link is not None}
        assert set(links) == {"tls-shaped", "tls-slow"}
        assert all(c.tls and c.shaping is None for c in links.values())
        assert (links["tls-shaped"].link, links["tls-slow"].link) == (
            Link(mbit=1000, rtt_ms=20), Link(mbit=200, rtt_ms=50)
        )
    assert {c.name: c.sizes for c in full_plan().conditions if c.link is not None} == {
        "tls-shaped": (GiB, 6 * GiB), "tls-slow": (GiB, 6 * GiB)
    }
    with pytest.raises(ValueError, match="not both"):
        Condition("x", Shaping(latency_ms=5), (MiB,), 1, 60, link=Link(100, 10))
