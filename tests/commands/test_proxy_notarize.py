"""A studio behind a proxy: `notaryd notarize` of a signed .app, as a real process, with
HTTP(S)_PROXY pointing at a real forward proxy on loopback that wants credentials. Every
exchange (notary API, S3, log download, ticket lookup) goes through it, and the .app ends stapled.
S3 is served over TLS (a CA made for the test, trusted through AWS_CA_BUNDLE), so the uploads
go through CONNECT tunnels, as they would to AWS; the emulator's API stays plain http, whose
requests a proxy sees as absolute URIs.

NO_PROXY is set empty on purpose: nothing exempts loopback unless NO_PROXY names it, so the
emulator on 127.0.0.1 is reached through the proxy like Apple would be.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks.tls import generate
from service.emulator.notary import BackgroundEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.emulator import cli_environment, notarize_command
from tests.support.forward_proxy import ForwardProxyThread
from uploader.staple.check import CheckOutcome, check_staple

pytestmark = pytest.mark.process


def test_notarize_through_a_proxy_ends_stapled_with_every_exchange_proxied(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    app = make_sample_app(tmp_path / "build", "Game", big_file_bytes=3 * 1024 * 1024)
    env = {name: value for name, value in cli_environment(notary.emulator, key, tmp_path).items()
           if not name.lower().endswith("_proxy")}
    tls = generate(tmp_path / "tls")
    with ForwardProxyThread(credentials=("builder", "pr0xy-pw")) as proxy:
        s3_port = urlsplit(notary.emulator.s3_endpoint_url).port or 80
        front = proxy.add_tls_front(s3_port, tls.server_cert, tls.server_key)
        s3_url = f"https://127.0.0.1:{front.port}"
        env.update(HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url, NO_PROXY="",
                   NOTARYD_S3_ENDPOINT_URL=s3_url, AWS_CA_BUNDLE=str(tls.ca_cert))
        result = subprocess.run(notarize_command(app, "--skip-preflight"), env=env, capture_output=True,
                                text=True, timeout=300)
        passages = proxy.passages()
        refused = proxy.refused()
        tls_connections = proxy.tls_connections(front)

    assert result.returncode == 0, result.stdout + result.stderr
    assert check_staple(app).outcome is CheckOutcome.VALID
    assert refused == 0  # the credentials in the proxy URL were sent
    assert "pr0xy-pw" not in result.stdout + result.stderr

    def through_proxy(url: str, path_prefix: str = "") -> int:
        parts = urlsplit(url)
        return sum(1 for p in passages
                   if p.target == parts.netloc and p.path.startswith(path_prefix or parts.path))

    emulator = notary.emulator
    api = urlsplit(emulator.api_url)
    assert through_proxy(emulator.api_url, api.path + "/submissions") >= 3  # submit, status, log
    assert through_proxy(emulator.ticket_url) >= 1
    # every TLS connection to S3 came through a tunnel, and the uploads went through them
    tunnels = sum(1 for p in passages if p.method == "CONNECT" and p.target == f"127.0.0.1:{front.port}")
    assert tunnels == tls_connections > 0
    assert notary.call(lambda e: e.s3.requests[("UploadPart", 200)]) >= 1
    # the log's pre-signed URL is fetched too (its own path on the emulator)
    submission = notary.call(lambda e: next(iter(e.submissions)))
    logs = [p for p in passages if submission in p.path and "/submissions/" not in p.path]
    assert logs, [p.path for p in passages]
