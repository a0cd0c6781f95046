"""One rule for URLs shown to a person (issue 18, item 8): `notaryd doctor` hides passwords and
tokens in the S3 and ticket URLs (user-info, query tokens such as ckAPIToken) exactly as it hides
a proxy's, in its text and its JSON, whether the endpoint answers or not."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from service.doctor import proxy_check, render, run_checks
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from service.settings import Settings
from tests.support.ports import closed_port
from uploader.redaction import redact, redact_url

SECRETS = ("s3-passw0rd", "AKIDSECRETUSER", "ck-api-t0ken", "lookup-passw0rd")


def with_credentials(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def test_redact_url_hides_user_info_and_query_tokens_and_keeps_the_rest() -> None:
    url = "https://AKIDSECRETUSER:s3-passw0rd@s3.example.com:9000/b/k?ckAPIToken=ck-api-t0ken&Expires=17"
    assert redact_url(url) == "https://REDACTED@s3.example.com:9000/b/k?ckAPIToken=REDACTED&Expires=17"
    assert redact_url("http://t0kenasuser@[::1]:8080/x") == "http://REDACTED@[::1]:8080/x"
    assert redact_url("https://api.example.com/notary/v2") == "https://api.example.com/notary/v2"
    assert proxy_check({"HTTPS_PROXY": "http://u:s3-passw0rd@proxy:3128"}).detail.endswith(
        "HTTPS_PROXY=http://REDACTED@proxy:3128")
    assert "s3-passw0rd" not in redact("GET https://u:s3-passw0rd@s3.example.com/b failed")


@pytest.fixture
def settings(emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path) -> Settings:
    return Settings(
        key_id=team_key.key_id, issuer_id=team_key.issuer_id, private_key=team_key.path,
        api_url=emulator.api_url, s3_accelerate=False, state_dir=tmp_path / "state",
        s3_endpoint_url=with_credentials(emulator.s3_endpoint_url, "AKIDSECRETUSER", "s3-passw0rd"),
        ticket_url=with_credentials(emulator.ticket_url, "lookup", "lookup-passw0rd")
        + "?ckAPIToken=ck-api-t0ken&ckjsBuildVersion=2310ProjectDev27")


def assert_hidden(checks_text: str) -> None:
    for secret in SECRETS:
        assert secret not in checks_text, secret


async def test_doctor_shows_reachable_endpoints_without_their_credentials(
    settings: Settings, emulator: NotaryEmulator,
) -> None:
    checks = await run_checks(settings, environ={})
    by_name = {c.name: c for c in checks}
    assert by_name["S3 endpoint"].result == "pass" and by_name["ticket lookup"].result == "pass"
    host = emulator.s3_endpoint_url.split("://", 1)[1]
    assert by_name["S3 endpoint"].detail.startswith(f"http://REDACTED@{host}: reachable")
    assert "?ckAPIToken=REDACTED&ckjsBuildVersion=REDACTED: reachable" in by_name[
        "ticket lookup"].detail
    assert_hidden(render(checks))
    assert_hidden(json.dumps([c.as_dict() for c in checks]))


async def test_doctor_shows_unreachable_endpoints_without_their_credentials(
    settings: Settings,
) -> None:
    with closed_port() as port:
        dead = f"http://AKIDSECRETUSER:s3-passw0rd@127.0.0.1:{port}/x?ckAPIToken=ck-api-t0ken"
        checks = await run_checks(dataclasses.replace(settings, s3_endpoint_url=dead,
                                                      ticket_url=dead), environ={})
    by_name = {c.name: c for c in checks}
    for name in ("S3 endpoint", "ticket lookup"):
        assert by_name[name].result == "fail" and "no connection" in by_name[name].detail
    assert_hidden(render(checks))
    assert_hidden(json.dumps([c.as_dict() for c in checks]))
