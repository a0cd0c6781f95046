"""The notary emulator's pieces on their own: team keys and JWTs, the fault policy, verdict rules
and the developer log, signed log URLs. Pure logic with a fake clock; the download endpoint is
served on loopback."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.emulator.auth import AUDIENCE, Refused, RequestBudget, TeamKey, TeamKeys, TokenRules
from service.emulator.codesign import SignedCode
from service.emulator.faults import FaultPolicy, Faults, Injected
from service.emulator.presign import LogLinks
from service.emulator.verdicts import (
    DEFAULT_RULES,
    INVALID_MARKER,
    REJECTED_MARKER,
    VerdictRule,
    developer_log,
    first_match,
    inspect,
)
from tests.support.clocks import ManualClock
from uploader.lifecycle import NotaryStatus

NOW = 1_700_000_000.0


# -- team keys and tokens -----------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def keys(clock: ManualClock) -> TeamKeys:
    return TeamKeys(TokenRules(), clock)


@pytest.fixture
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def team(keys: TeamKeys, signer: ec.EllipticCurvePrivateKey) -> TeamKey:
    return keys.register("KEY1234567", "issuer-1", signer.public_key())


def bearer(signer: ec.EllipticCurvePrivateKey, kid: str = "KEY1234567", **claims: Any) -> str:
    base = {"iss": "issuer-1", "iat": int(NOW), "exp": int(NOW) + 900, "aud": AUDIENCE}
    token = jwt.encode(base | claims, signer, algorithm="ES256", headers={"kid": kid})
    return f"Bearer {token}"


def test_a_well_formed_token_names_its_team_and_is_counted(
    keys: TeamKeys, team: TeamKey, signer: ec.EllipticCurvePrivateKey, clock: ManualClock
) -> None:
    token = bearer(signer)
    assert keys.authenticate(token) is team
    clock.now += 30
    assert keys.authenticate(token) is team
    stats = keys.token_stats
    assert (stats.accepted, stats.distinct, stats.max_lifetime_seconds) == (2, 1, 900)
    assert stats.max_age_seconds == 30
    assert keys.auth_failures == []


@pytest.mark.parametrize(
    ("claims", "kid", "reason"),
    [
        ({}, "NOPE", "unknown kid"),
        ({"iss": "someone-else"}, "KEY1234567", "does not own kid"),
        ({"sub": "user"}, "KEY1234567", "individual key"),
        ({"aud": "elsewhere"}, "KEY1234567", "token rejected"),
        ({"exp": int(NOW) + 20 * 60 + 61}, "KEY1234567", "lifetime"),
        ({"iat": int(NOW) + 61, "exp": int(NOW) + 900}, "KEY1234567", "in the future"),
        ({"iat": int(NOW) - 900, "exp": int(NOW) - 61}, "KEY1234567", "expired"),
    ],
)
def test_each_broken_rule_refuses_the_token_and_says_why(
    keys: TeamKeys,
    team: TeamKey,
    signer: ec.EllipticCurvePrivateKey,
    claims: dict[str, Any],
    kid: str,
    reason: str,
) -> None:
    with pytest.raises(Refused, match=reason):
        keys.authenticate(bearer(signer, kid, **claims))
    assert len(keys.auth_failures) == 1 and reason in keys.auth_failures[0]
    assert keys.token_stats.accepted == 0


def test_the_clock_leeway_admits_small_skews_only(
    keys: TeamKeys, team: TeamKey, signer: ec.EllipticCurvePrivateKey
) -> None:
    keys.authenticate(bearer(signer, iat=int(NOW) + 60, exp=int(NOW) + 960))
    keys.authenticate(bearer(signer, iat=int(NOW) - 900, exp=int(NOW) - 59))
    assert keys.auth_failures == []


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("", "no Bearer"),
        ("Basic abc", "no Bearer"),
        ("Bearer  ", "no Bearer"),
        ("Bearer not.a.jwt", "malformed"),
    ],
)
def test_a_request_without_a_usable_bearer_token_is_refused(
    keys: TeamKeys, authorization: str, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        keys.authenticate(authorization)


def test_a_token_signed_with_another_algorithm_is_refused(keys: TeamKeys, team: TeamKey) -> None:
    token = jwt.encode(
        {"iss": "issuer-1"}, "secret" * 6, algorithm="HS256", headers={"kid": team.key_id}
    )
    with pytest.raises(Refused, match="is not ES256"):
        keys.authenticate(f"Bearer {token}")


def test_made_keys_are_written_private_and_registered(
    keys: TeamKeys, tmp_path: Path, clock: ManualClock
) -> None:
    made = keys.make(tmp_path / "keys", key_id="ABCDEFGHIJ", issuer_id="issuer-9")
    assert made.path == tmp_path / "keys" / "AuthKey_ABCDEFGHIJ.p8"
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(made.path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    token = jwt.encode(
        {"iss": "issuer-9", "iat": int(NOW), "exp": int(NOW) + 600, "aud": AUDIENCE},
        private,
        algorithm="ES256",
        headers={"kid": "ABCDEFGHIJ"},
    )
    assert keys.authenticate(f"Bearer {token}") is made


def test_the_hourly_budget_slides_with_the_clock() -> None:
    budget = RequestBudget(limit=2)
    assert budget.spend("k", NOW) and budget.spend("k", NOW + 10)
    assert not budget.spend("k", NOW + 3599)  # refused requests do not count
    assert budget.spend("other", NOW + 3599)  # per key
    assert budget.spend("k", NOW + 3600)  # the first one has left the hour
    assert not budget.spend("k", NOW + 3609)
    assert all(RequestBudget(limit=None).spend("k", NOW) for _ in range(1000))


# -- the fault policy ---------------------------------------------------------------------


def policy(limit: int | None = None, **faults: Any) -> FaultPolicy:
    return FaultPolicy(Faults(**faults), RequestBudget(limit))


def draws(rules: FaultPolicy, endpoint: str, count: int, now: float = NOW) -> list[Injected | None]:
    return [rules.draw(endpoint, "k", now) for _ in range(count)]


def test_no_faults_injects_nothing() -> None:
    assert draws(policy(), "submit", 3) == [None, None, None]


def test_agreement_and_provider_faults_refuse_every_call_until_cleared() -> None:
    rules = policy(agreement_missing=True, missing_provider=True, rate_limit_next=5)
    assert draws(rules, "status", 2) == [Injected.AGREEMENT_MISSING] * 2
    rules.faults.agreement_missing = False
    assert draws(rules, "status", 1) == [Injected.MISSING_PROVIDER]
    assert rules.faults.rate_limit_next == 5  # a refusal consumes no burst


def test_bursts_are_consumed_one_per_matching_call_in_order() -> None:
    rules = policy(rate_limit_next=1, server_error_next=2, reset_status_next=1)
    assert draws(rules, "status", 5) == [
        Injected.RATE_LIMITED,
        Injected.SERVER_ERROR,
        Injected.SERVER_ERROR,
        Injected.CONNECTION_RESET,
        None,
    ]


def test_resets_hit_status_polls_only() -> None:
    rules = policy(reset_status_next=1)
    assert draws(rules, "submit", 1) + draws(rules, "logs", 1) == [None, None]
    assert draws(rules, "status", 2) == [Injected.CONNECTION_RESET, None]


def test_endpoints_limit_bursts_to_the_named_calls() -> None:
    rules = policy(server_error_next=1, endpoints=frozenset({"logs"}))
    assert draws(rules, "status", 1) == [None]
    assert rules.faults.server_error_next == 1
    assert draws(rules, "logs", 2) == [Injected.SERVER_ERROR, None]


def test_until_windows_fail_every_call_before_their_time() -> None:
    rules = policy(rate_limit_until=NOW + 10, server_error_until=NOW + 20)
    assert draws(rules, "history", 2, NOW + 9.9) == [Injected.RATE_LIMITED] * 2
    assert draws(rules, "history", 2, NOW + 10) == [Injected.SERVER_ERROR] * 2
    assert draws(rules, "history", 1, NOW + 20) == [None]


def test_a_spent_budget_answers_429_and_an_injected_429_spends_none() -> None:
    rules = policy(limit=1, rate_limit_next=1)
    assert draws(rules, "status", 3) == [Injected.RATE_LIMITED, None, Injected.RATE_LIMITED]


def test_stuck_submissions_by_count_or_name() -> None:
    rules = policy(stuck_next=1, stuck_name_glob="hang-*")
    assert [rules.takes_stuck(n) for n in ("a.zip", "b.zip", "hang-1.zip")] == [True, False, True]
    assert rules.faults.stuck_next == 0


# -- verdicts -----------------------------------------------------------------------------


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_inspection_hashes_and_finds_markers_split_across_chunks() -> None:
    data = b"x" * 100 + INVALID_MARKER + b"y" * 50
    cut = 100 + len(INVALID_MARKER) // 2
    found = await inspect(chunks(data[:cut], data[cut:]), DEFAULT_RULES)
    assert found.sha256 == hashlib.sha256(data).hexdigest() and found.size == len(data)
    assert found.markers == {INVALID_MARKER}
    clean = await inspect(chunks(b"nothing to see"), DEFAULT_RULES)
    assert clean.markers == frozenset()


def test_rules_match_by_name_marker_or_both_and_the_first_wins() -> None:
    by_name = VerdictRule(name_glob="bad-*")
    both = VerdictRule(name_glob="*.pkg", content_marker=b"M", status=NotaryStatus.REJECTED)
    rules = (both, by_name)
    assert first_match(rules, "bad-1.zip", frozenset()) is by_name
    assert first_match(rules, "good.pkg", frozenset()) is None
    assert first_match(rules, "bad-2.pkg", frozenset({b"M"})) is both
    assert not VerdictRule().matches("anything", frozenset({b"M"}))  # a rule needs a condition
    assert first_match(DEFAULT_RULES, "x.zip", frozenset({REJECTED_MARKER})) is DEFAULT_RULES[1]


def test_an_accepted_log_carries_ticket_contents_and_no_issues() -> None:
    signed = [SignedCode("App.zip/App.app/Contents/MacOS/App", arch, 2, bytes([n]) * 20)
              for n, arch in enumerate(("x86_64", "arm64"))]
    doc = developer_log(
        None, submission_id="id-1", name="App.zip", sha256="ab" * 32, uploaded_at=NOW,
        ticket_contents=[code.log_entry() for code in signed],
    )
    assert doc["status"] == "Accepted" and doc["statusCode"] == 0
    assert doc["issues"] is None and doc["uploadDate"] == "2023-11-14T22:13:20.000Z"
    assert doc["ticketContents"] == [
        {"path": "App.zip/App.app/Contents/MacOS/App", "digestAlgorithm": "SHA-256",
         "cdhash": "00" * 20, "arch": "x86_64"},
        {"path": "App.zip/App.app/Contents/MacOS/App", "digestAlgorithm": "SHA-256",
         "cdhash": "01" * 20, "arch": "arm64"},
    ]
    unsigned = developer_log(None, submission_id="id-9", name="A.zip", sha256="0" * 64,
                             uploaded_at=NOW)
    assert unsigned["status"] == "Accepted" and unsigned["ticketContents"] is None


def test_a_rejected_or_invalid_log_carries_the_rules_issues() -> None:
    invalid, rejected = DEFAULT_RULES
    doc = developer_log(
        invalid, submission_id="id-2", name="A.zip", sha256="0" * 64, uploaded_at=NOW
    )
    assert (doc["status"], doc["statusCode"], doc["ticketContents"]) == ("Invalid", 4000, None)
    assert len(doc["issues"]) == 3
    doc = developer_log(
        rejected, submission_id="id-3", name="A.zip", sha256="0" * 64, uploaded_at=NOW
    )
    assert (doc["status"], doc["statusCode"], doc["issues"]) == ("Rejected", 7000, None)


# -- signed log URLs ----------------------------------------------------------------------

LOG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture
async def log_server(clock: ManualClock) -> AsyncIterator[tuple[LogLinks, TestClient[Any, Any]]]:
    logs = {LOG_ID: {"status": "Accepted"}}
    links = LogLinks(logs.get, lifetime_seconds=3600, clock=clock)
    app = web.Application()
    app.router.add_get("/logs-download/{path:.+}", links.download)
    async with TestClient(TestServer(app)) as client:
        yield links, client


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _get(client: TestClient[Any, Any], url: str, **headers: str) -> tuple[int, str]:
    async with client.get(_path_and_query(url), headers=headers) as response:
        return response.status, await response.text()


@pytest.mark.integration
async def test_a_signed_url_serves_the_log_until_it_expires(
    log_server: tuple[LogLinks, TestClient[Any, Any]], clock: ManualClock
) -> None:
    links, client = log_server
    url = links.url("http://emulator", LOG_ID, "ASIAEXAMPLE")
    assert url.startswith("http://emulator/logs-download/prod/")
    assert parse_qs(urlsplit(url).query)["AWSAccessKeyId"] == ["ASIAEXAMPLE"]
    status, body = await _get(client, url)
    assert status == 200 and '"status": "Accepted"' in body
    clock.now += 3600
    assert (await _get(client, url))[0] == 200
    clock.now += 1
    status, body = await _get(client, url)
    assert status == 403 and "Request has expired" in body


@pytest.mark.integration
async def test_a_signed_url_is_refused_when_tampered_with_or_doubly_authenticated(
    log_server: tuple[LogLinks, TestClient[Any, Any]],
) -> None:
    links, client = log_server
    url = links.url("http://emulator", LOG_ID, "ASIAEXAMPLE")
    query = parse_qs(urlsplit(url).query)
    later = str(int(query["Expires"][0]) + 1)
    status, body = await _get(
        client, url.replace(f"Expires={query['Expires'][0]}", f"Expires={later}")
    )
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in body
    status, body = await _get(client, url, Authorization="Bearer x")
    assert status == 400 and "<Code>InvalidArgument</Code>" in body
    status, body = await _get(client, url.split("Expires=")[0])
    assert status == 403 and "requires Expires" in body


@pytest.mark.integration
async def test_a_signed_url_for_a_log_that_does_not_exist_is_no_such_key(
    log_server: tuple[LogLinks, TestClient[Any, Any]],
) -> None:
    missing = log_server[0].url("http://emulator", LOG_ID.replace("0f8f", "1111"), "ASIAEXAMPLE")
    status, body = await _get(log_server[1], missing)
    assert status == 404 and "<Code>NoSuchKey</Code>" in body
