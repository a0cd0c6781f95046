"""`notaryd doctor` against the real emulator: every check's pass and each way it fails."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.cli import main
from service.doctor import Check, proxy_check, run_checks
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from service.settings import Settings
from tests.support.forward_proxy import ForwardProxy
from tests.support.ports import closed_port


@pytest.fixture
def settings(emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path) -> Settings:
    return Settings(key_id=team_key.key_id, issuer_id=team_key.issuer_id,
                    private_key=team_key.path, api_url=emulator.api_url,
                    s3_endpoint_url=emulator.s3_endpoint_url, s3_accelerate=False,
                    ticket_url=emulator.ticket_url, state_dir=tmp_path / "state")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def write_key(path: Path, key: ec.EllipticCurvePrivateKey, *,
              fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
              mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt,
                                       serialization.NoEncryption()))
    path.chmod(mode)
    return path


async def test_all_checks_pass_against_the_emulator(settings: Settings) -> None:
    checks = await run_checks(settings, environ={})
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    names = [c.name for c in checks]
    assert names == ["key file", "key id", "issuer id", "notary API", "clock", "S3 endpoint",
                     "ticket lookup", "proxy", "authenticated read"]
    assert by_name(checks)["authenticated read"].result == "pass"


@pytest.mark.parametrize("case", ["unset", "missing", "mode", "sec1", "p384", "renamed"])
async def test_key_file_failures_name_the_fix(settings: Settings, tmp_path: Path,
                                              case: str) -> None:
    keys = tmp_path / "bad-keys"
    good = ec.generate_private_key(ec.SECP256R1())
    path: Path | None = keys / f"AuthKey_{settings.key_id}.p8"
    if case == "unset":
        path = None
    elif case == "missing":
        pass
    elif case == "mode":
        write_key(keys / f"AuthKey_{settings.key_id}.p8", good, mode=0o644)
    elif case == "sec1":
        write_key(keys / f"AuthKey_{settings.key_id}.p8", good,
                  fmt=serialization.PrivateFormat.TraditionalOpenSSL)
    elif case == "p384":
        write_key(keys / f"AuthKey_{settings.key_id}.p8", ec.generate_private_key(ec.SECP384R1()))
    elif case == "renamed":
        assert settings.private_key is not None
        path = keys / "AuthKey_ABCDEFGHIJ.p8"
        keys.mkdir()
        os.link(settings.private_key, path)
    checks = by_name(await run_checks(dataclasses.replace(settings, private_key=path),
                                      environ={}))
    key_check = checks["key file"]
    assert key_check.result == "fail"
    expected = {"unset": "not set", "missing": "not found", "mode": "chmod 600",
                "sec1": "PKCS#8", "p384": "P-256", "renamed": "ABCDEFGHIJ"}[case]
    assert expected in key_check.detail
    assert checks["authenticated read"].detail.startswith("skipped")


async def test_id_formats(settings: Settings) -> None:
    checks = by_name(await run_checks(
        dataclasses.replace(settings, key_id="abc", issuer_id="not-a-uuid"), environ={}))
    assert checks["key id"].result == "fail" and "10-character" in checks["key id"].detail
    assert checks["issuer id"].result == "fail" and "UUID" in checks["issuer id"].detail


async def test_unreachable_api_and_endpoints(settings: Settings) -> None:
    with closed_port() as port:
        dead = f"http://127.0.0.1:{port}"
        checks = by_name(await run_checks(dataclasses.replace(
            settings, api_url=dead, s3_endpoint_url=dead, ticket_url=dead), environ={}))
    for name in ("notary API", "S3 endpoint", "ticket lookup"):
        assert checks[name].result == "fail" and "no connection" in checks[name].detail
    assert checks["clock"].result == "fail"
    assert checks["authenticated read"].result == "fail"


async def test_tls_failure_is_told_apart(settings: Settings, emulator: NotaryEmulator) -> None:
    plain = emulator.api_url.replace("http://", "https://")  # TLS to a plain-HTTP port
    checks = by_name(await run_checks(dataclasses.replace(settings, api_url=plain), environ={}))
    assert checks["notary API"].result == "fail"
    assert "TLS failed" in checks["notary API"].detail and "certificates" in checks["notary API"].fix


async def test_clock_skew_is_reported_with_the_fix(settings: Settings) -> None:
    checks = by_name(await run_checks(settings, clock=lambda: time.time() + 600, environ={}))
    assert checks["clock"].result == "fail"
    assert "ahead of" in checks["clock"].detail and "401" in checks["clock"].detail
    assert "ntp" in checks["clock"].fix


async def test_accelerated_and_regional_endpoints_are_the_ones_checked(settings: Settings) -> None:
    from service.doctor import ACCELERATED_S3, REGIONAL_S3, s3_endpoints

    assert s3_endpoints(settings) == [("endpoint", settings.s3_endpoint_url)]
    aws = dataclasses.replace(settings, s3_endpoint_url=None, s3_accelerate=True)
    assert s3_endpoints(aws) == [("accelerated", ACCELERATED_S3), ("regional", REGIONAL_S3)]
    assert s3_endpoints(dataclasses.replace(aws, s3_accelerate=False)) == [("regional",
                                                                            REGIONAL_S3)]


def test_proxy_settings_are_shown_without_credentials() -> None:
    shown = proxy_check({"HTTPS_PROXY": "http://alice:s3cret@proxy.corp:3128",
                         "NO_PROXY": "localhost"})
    assert shown.result == "info" and "s3cret" not in shown.detail and "alice" not in shown.detail
    assert "proxy.corp:3128" in shown.detail and "NO_PROXY=localhost" in shown.detail
    assert "go direct" in proxy_check({}).detail


async def test_authenticated_read_tells_bad_key_agreement_and_network_apart(
    settings: Settings, emulator: NotaryEmulator, tmp_path: Path
) -> None:
    # A well-formed key the service does not know: "bad key".
    stranger = write_key(tmp_path / "k" / "AuthKey_ZZZZZZZZZZ.p8",
                         ec.generate_private_key(ec.SECP256R1()))
    checks = by_name(await run_checks(
        dataclasses.replace(settings, key_id="ZZZZZZZZZZ", private_key=stranger), environ={}))
    assert checks["authenticated read"].detail.startswith("bad key")

    emulator.faults.agreement_missing = True
    checks = by_name(await run_checks(settings, environ={}))
    assert checks["authenticated read"].detail.startswith("agreement missing")
    assert "Account Holder" in checks["authenticated read"].fix
    emulator.faults.agreement_missing = False

    emulator.faults.server_error_until = time.time() + 3600
    emulator.faults.endpoints = frozenset({"history"})
    checks = by_name(await run_checks(settings, environ={}))
    assert checks["authenticated read"].detail.startswith("network failure")


async def test_cli_exit_codes_and_json(settings: Settings, emulator: NotaryEmulator,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in list(os.environ):
        if name.startswith("NOTARYD_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NOTARYD_CONFIG", "")
    monkeypatch.setenv("HOME", str(settings.state_dir))
    for name, value in (("KEY_ID", settings.key_id), ("ISSUER_ID", settings.issuer_id),
                        ("PRIVATE_KEY", str(settings.private_key)),
                        ("API_URL", settings.api_url),
                        ("S3_ENDPOINT_URL", settings.s3_endpoint_url),
                        ("TICKET_URL", settings.ticket_url)):
        monkeypatch.setenv(f"NOTARYD_{name}", str(value))
    assert await asyncio.to_thread(main, ["doctor"]) == 0
    assert "all checks passed" in capsys.readouterr().out
    emulator.faults.agreement_missing = True
    assert await asyncio.to_thread(main, ["doctor", "--json"]) == 1
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [c["name"] for c in doc["checks"] if c["result"] == "fail"] == ["authenticated read"]


@pytest.mark.parametrize("variables", [
    {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "localhost,.internal"},
    {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "no_proxy": "amazonaws.com"},
    {"HTTP_PROXY": "http://alice:s3cret@proxy.corp:8080", "NO_PROXY": ""},
    {"ALL_PROXY": "http://all.corp:1"},
    {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "*"},
])
def test_every_endpoint_takes_the_proxy_botocore_takes(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    """uploader.proxies decides for the notary API, ticket and log traffic what botocore
    decides for S3, under the same variables (from the environment or given)."""
    from botocore.utils import get_environ_proxies

    from uploader.proxies import proxy_for

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    for url in ("https://s3.us-west-2.amazonaws.com/b/k", "https://bucket.s3.internal",
                "http://localhost:9000", "http://127.0.0.1:8080/notary/v2",
                "https://api.apple-cloudkit.com/database/1/x"):
        botocore = get_environ_proxies(url).get(url.split(":", 1)[0])
        assert proxy_for(url) == botocore, url
        assert proxy_for(url, variables) == botocore, url


async def test_each_endpoint_is_checked_through_the_proxy_and_names_it(
    settings: Settings,
) -> None:
    async with ForwardProxy(credentials=("alice", "s3cret-pw")) as proxy:
        checks = by_name(await run_checks(settings, environ={"HTTP_PROXY": proxy.url,
                                                             "NO_PROXY": ""}))
    shown = f"via proxy http://REDACTED@127.0.0.1:{proxy.port}"
    for name in ("notary API", "S3 endpoint", "ticket lookup"):
        assert checks[name].result == "pass" and checks[name].detail.endswith(shown), checks[name]
    assert "s3cret-pw" not in repr(checks) and "alice" not in repr(checks)
    assert proxy.refused == 0
    api, s3, ticket = (urlsplit(u) for u in (settings.api_url, settings.s3_endpoint_url or "",
                                             settings.ticket_url))
    assert proxy.requests_to(api.netloc, api.path + "/submissions") >= 1
    assert proxy.requests_to(s3.netloc) >= 1
    assert proxy.requests_to(ticket.netloc, ticket.path) >= 1


async def test_checks_through_an_unreachable_proxy_fail_naming_it(settings: Settings) -> None:
    with closed_port() as port:
        checks = by_name(await run_checks(settings, environ={"HTTP_PROXY": f"http://127.0.0.1:{port}"}))
    for name in ("notary API", "S3 endpoint", "ticket lookup"):
        assert checks[name].result == "fail", checks[name]
        assert f"via proxy http://127.0.0.1:{port}" in checks[name].detail
    assert "in effect for every endpoint" in checks["proxy"].detail
