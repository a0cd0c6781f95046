"""NotaryClient against the real emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from service.emulator.auth import TeamKey
from service.emulator.faults import AGREEMENT_DETAIL
from service.emulator.notary import NotaryEmulator
from tests.support.clocks import ShiftedClock
from tests.support.notary import verdict
from tests.support.ports import closed_port
from tests.support.serving import serving
from uploader.events import Event, NotaryRequestDone
from uploader.notary.auth import ApiKey, TokenSource, load_api_key
from uploader.notary.client import NotaryClient, redact_url, with_retries
from uploader.notary.errors import (
    AgreementMissing,
    LogUrlExpired,
    MissingProvider,
    NetworkError,
    NotaryError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthenticated,
)
from uploader.retry import RetryPolicy

SHA = hashlib.sha256(b"archive").hexdigest()


def _client(
    emulator: NotaryEmulator, session: aiohttp.ClientSession, source: TokenSource
) -> NotaryClient:
    return NotaryClient(emulator.api_url, source, session)


async def _put(emulator: NotaryEmulator, submission_id: str, data: bytes) -> None:
    """Upload through the emulator's S3 front with the submission's own credentials."""
    import aioboto3
    from botocore.config import Config

    submission = emulator.submissions[submission_id]
    grant = submission.grant
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint_url,
        region_name="us-west-2",
        aws_access_key_id=grant.access_key_id,
        aws_secret_access_key=grant.secret_access_key,
        aws_session_token=grant.session_token,
        config=Config(s3={"addressing_style": "path"}),
    ) as s3:
        await s3.put_object(Bucket=grant.bucket, Key=grant.key, Body=data)


async def finished_log_url(emulator: NotaryEmulator, client: NotaryClient) -> tuple[str, str]:
    """(id, log URL) of a submission that was uploaded and reached its verdict."""
    submission = await client.submit("App.zip", SHA)
    await _put(emulator, submission.id, b"archive")
    await verdict(client, submission.id)
    return submission.id, await client.log_url(submission.id)


async def test_submit_status_history_and_log_round_trip(
    emulator: NotaryEmulator, client: NotaryClient, events: list[Event]
) -> None:
    before = time.time()
    submission = await client.submit("App.zip", SHA)
    after = time.time()
    assert submission.bucket == "notary-submissions-prod"
    assert submission.object == f"prod/AROAEMULATORNOTARYD01:{submission.id}"
    assert submission.credentials.access_key_id.startswith("ASIA")
    assert submission.credentials.session_token
    # credentials last 12 h from the moment of the request
    expires_at = submission.credentials.expires_at
    assert expires_at is not None and before + 12 * 3600 <= expires_at <= after + 12 * 3600

    status = await client.status(submission.id.upper())  # ids match case-insensitively
    assert (status.id, status.name, status.status) == (submission.id, "App.zip", "In Progress")
    # created during the request (Apple's timestamps have milliseconds: truncated)
    assert status.created_at is not None and before - 0.001 <= status.created_at <= after

    with pytest.raises(NotFound, match="no resource of type 'submissionsLog'"):
        await client.log_url(submission.id)

    await _put(emulator, submission.id, b"archive")
    assert await verdict(client, submission.id) == "Accepted"
    assert emulator.submissions[submission.id].uploaded_sha256 == SHA

    url = await client.log_url(submission.id)
    log = await client.download_log(url)
    assert (log["jobId"], log["status"], log["statusCode"], log["sha256"]) == (
        submission.id,
        "Accepted",
        0,
        SHA,
    )
    assert [h.id for h in await client.history()] == [submission.id]

    endpoints = [(e.endpoint, e.code) for e in events if isinstance(e, NotaryRequestDone)]
    assert endpoints[:3] == [("submit", "200"), ("status", "200"), ("logs", "404")]
    assert endpoints[-3:] == [("logs", "200"), ("log_download", "200"), ("history", "200")]
    # The log download carried no Authorization header (the emulator answers 400 if it does).
    assert emulator.requests[("log_download", "200")] == 1


async def test_json_is_parsed_despite_octet_stream_content_type(
    emulator: NotaryEmulator, tokens: TokenSource
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{emulator.api_url}/submissions", headers={"Authorization": tokens.authorization()}
        ) as response:
            assert response.headers["Content-Type"] == "application/octet-stream"
        assert await _client(emulator, session, tokens).history() == []


async def test_log_download_with_authorization_header_is_refused(
    emulator: NotaryEmulator, client: NotaryClient, tokens: TokenSource
) -> None:
    _, url = await finished_log_url(emulator, client)
    headers = {"Authorization": tokens.authorization()}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 400
        assert b"Only one auth mechanism allowed" in await response.read()


async def test_expired_or_tampered_log_url_is_refused(
    emulator: NotaryEmulator, client: NotaryClient, emulator_clock: ShiftedClock
) -> None:
    submission_id, url = await finished_log_url(emulator, client)
    with pytest.raises(LogUrlExpired, match="SignatureDoesNotMatch"):
        await client.download_log(url.replace("Expires=", "Expires=9"))
    emulator_clock.advance(3 * 3600 + 1)
    with pytest.raises(LogUrlExpired, match=r"HTTP 403: AccessDenied.*ask for the log again"):
        await client.download_log(url)
    emulator_clock.advance(-(3 * 3600 + 1))  # back to "now", so our real-time JWT is valid again
    # a fresh URL works again
    assert (await client.download_log(await client.log_url(submission_id)))["status"] == "Accepted"


def test_redact_url_hides_signatures_and_tokens() -> None:
    url = (
        "https://notary-artifacts-prod.s3.amazonaws.com/prod/abc/developer_log.json?"
        "AWSAccessKeyId=ASIAXYZ&Signature=s3cr3t%2B&x-amz-security-token=SESSIONTOK123&Expires=1700000000"
    )
    redacted = redact_url(url)
    assert (
        "s3cr3t" not in redacted and "SESSIONTOK123" not in redacted and "ASIAXYZ" not in redacted
    )
    assert redacted.startswith("https://notary-artifacts-prod.s3.amazonaws.com/prod/abc/")
    assert "Expires=1700000000" in redacted and "Signature=REDACTED" in redacted
    assert redact_url("https://x/y") == "https://x/y"


async def test_wrong_key_id_names_key_and_issuer(
    emulator: NotaryEmulator, team_key: TeamKey, events: list[Event]
) -> None:
    assert team_key.path is not None
    key = load_api_key(team_key.path, key_id="WRONGKEY99", issuer_id=team_key.issuer_id)
    async with aiohttp.ClientSession() as session:
        client = NotaryClient(emulator.api_url, TokenSource(key), session, hooks=[events.append])
        with pytest.raises(Unauthenticated) as caught:
            await client.submit("App.zip", SHA)
    message = str(caught.value)
    assert "key id 'WRONGKEY99'" in message and f"issuer id '{team_key.issuer_id}'" in message
    assert "clock" in message and "individual key" in message and "team key" in message
    assert f"named for key id '{team_key.key_id}'" in message  # the file name says which key it is
    assert caught.value.request_id and caught.value.request_id.endswith(".0.0")
    assert not caught.value.transient
    assert events == [NotaryRequestDone("submit", "401")]
    assert emulator.submissions_created == 0
    assert emulator.auth_failures == ["unknown kid 'WRONGKEY99'"]


async def test_wrong_issuer_is_unauthenticated(emulator: NotaryEmulator, team_key: TeamKey) -> None:
    assert team_key.path is not None
    key = load_api_key(
        team_key.path, key_id=team_key.key_id, issuer_id="00000000-dead-beef-0000-000000000000"
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(
            Unauthenticated, match="issuer id '00000000-dead-beef-0000-000000000000'"
        ):
            await _client(emulator, session, TokenSource(key)).history()
    assert emulator.auth_failures[-1].startswith("iss '00000000-dead-beef")


async def test_plain_text_401_body(emulator: NotaryEmulator) -> None:
    url = f"{emulator.api_url}/submissions"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401
        assert response.content_type == "text/plain"
        text = await response.text()
    assert text.startswith("Unauthenticated\n\nRequest ID: ")


def _forged(
    team_key: TeamKey, private_key: ec.EllipticCurvePrivateKey, now: float, **claims: object
) -> str:
    base: dict[str, object] = {
        "iss": team_key.issuer_id,
        "iat": int(now),
        "exp": int(now) + 600,
        "aud": "appstoreconnect-v1",
    }
    base.update(claims)
    base = {k: v for k, v in base.items() if v is not None}
    return jwt.encode(base, private_key, algorithm="ES256", headers={"kid": team_key.key_id})


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp_offset": 1500}, "lifetime 1500 s exceeds 1260 s"),
        ({"iat_offset": 600, "exp_offset": 1200}, "is in the future"),
        ({"iat_offset": -1300, "exp_offset": -100}, "expired"),
        ({"sub": "user", "iss": None}, "individual key"),
        ({"aud": "someone-else"}, "token rejected"),
    ],
)
async def test_emulator_enforces_jwt_rules(
    emulator: NotaryEmulator, tmp_path: Path, claims: dict[str, object], reason: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    team_key = emulator.make_team_key(tmp_path)
    assert team_key.path is not None
    private_key = serialization.load_pem_private_key(team_key.path.read_bytes(), None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    now = time.time()
    iat = now + float(claims.pop("iat_offset", 0))  # type: ignore[arg-type]
    exp = iat + float(claims.pop("exp_offset", 600)) - float(iat - now)  # type: ignore[arg-type]
    token = _forged(team_key, private_key, iat, exp=int(exp), **claims)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{emulator.api_url}/submissions", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 401
    assert reason in emulator.auth_failures[-1]


async def test_agreement_missing(emulator: NotaryEmulator, client: NotaryClient) -> None:
    emulator.faults.agreement_missing = True
    with pytest.raises(AgreementMissing) as caught:
        await client.submit("App.zip", SHA)
    message = str(caught.value)
    assert "agreement is missing or has expired" in message
    assert "developer.apple.com/account" in message and "App Store Connect → Business" in message
    assert AGREEMENT_DETAIL in message
    assert not caught.value.transient and emulator.submissions_created == 0


async def test_missing_provider(emulator: NotaryEmulator, client: NotaryClient) -> None:
    emulator.faults.missing_provider = True
    with pytest.raises(MissingProvider, match=r"FORBIDDEN\.MISSING_PROVIDER"):
        await client.history()


async def test_rate_limit_and_server_errors_are_transient(
    emulator: NotaryEmulator, client: NotaryClient, events: list[Event]
) -> None:
    submission = await client.submit("App.zip", SHA)
    emulator.faults.rate_limit_next = 1
    emulator.faults.retry_after_seconds = 120
    with pytest.raises(RateLimited) as limited:
        await client.status(submission.id)
    assert limited.value.transient and limited.value.retry_after_seconds == 120
    assert "Exceeded hourly limit" in str(limited.value)

    emulator.faults.server_error_next = 1
    with pytest.raises(ServerError, match="HTTP 503") as failed:
        await client.status(submission.id)
    assert failed.value.transient

    # (a window, not a count: aiohttp silently re-sends a GET once if a reused connection resets)
    emulator.faults.reset_status_until = time.time() + 3600
    with pytest.raises(NetworkError) as reset:
        await client.status(submission.id)
    assert reset.value.transient
    emulator.faults.reset_status_until = 0
    assert (await client.status(submission.id)).status == "In Progress"
    codes = [e.code for e in events if isinstance(e, NotaryRequestDone) and e.endpoint == "status"]
    assert codes == ["429", "503", "error", "200"]


async def test_with_retries_rides_out_faults_and_backs_off_hard_on_429(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    submission = await client.submit("App.zip", SHA)
    emulator.faults.endpoints = frozenset({"status"})
    emulator.faults.rate_limit_next = 2
    emulator.faults.server_error_next = 2
    emulator.faults.reset_status_next = (
        4  # aiohttp re-sends a GET once after a reused connection resets
    )
    sleeps: list[float] = []
    retried: list[str] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    status = await with_retries(
        lambda: client.status(submission.id),
        RetryPolicy(initial_delay_seconds=1, max_delay_seconds=8),
        fake_sleep,
        on_retry=lambda error, delay: retried.append(type(error).__name__),
    )
    assert status.status == "In Progress"
    assert retried[:4] == ["RateLimited"] * 2 + ["ServerError"] * 2
    assert 2 <= retried.count("NetworkError") <= 4 and emulator.faults.reset_status_next == 0
    assert all(s >= 60 for s in sleeps[:2]) and all(s <= 8 for s in sleeps[2:])


async def test_with_retries_stops_on_permanent_errors_and_at_max_attempts(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    async def no_sleep(_: float) -> None:
        return None

    calls = 0

    async def missing() -> object:
        nonlocal calls
        calls += 1
        return await client.status("00000000-0000-0000-0000-000000000000")

    with pytest.raises(NotFound):
        await with_retries(missing, RetryPolicy(), no_sleep)
    assert calls == 1

    emulator.faults.server_error_next = 10
    with pytest.raises(ServerError):
        await with_retries(client.history, RetryPolicy(max_attempts=3), no_sleep)
    assert emulator.faults.server_error_next == 7


async def test_unknown_submission_is_not_found(client: NotaryClient) -> None:
    with pytest.raises(NotFound, match="no resource of type 'submissions' with id"):
        await client.status("0f4d6a5e-0000-4000-8000-000000000000")


async def test_history_is_capped_at_100_newest_first(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    ids = [(await client.submit(f"build-{n}.zip", SHA)).id for n in range(103)]
    history = await client.history()
    assert [h.id for h in history] == ids[::-1][:100]
    assert emulator.submissions_created == 103


async def test_every_request_carries_a_fresh_short_token(
    emulator: NotaryEmulator, team_key: TeamKey, emulator_clock: ShiftedClock
) -> None:
    """A wait much longer than a token's life never sends an old or over-long token."""
    assert team_key.path is not None
    clock = emulator_clock  # the service and the client share the simulated time
    key = load_api_key(team_key.path, key_id=team_key.key_id, issuer_id=team_key.issuer_id)
    source = TokenSource(key, clock=clock)
    async with aiohttp.ClientSession() as session:
        client = _client(emulator, session, source)
        submission = await client.submit("App.zip", SHA)
        for _ in range(30):  # 30 polls, 5 simulated minutes apart: 2.5 hours "In Progress"
            assert (await client.status(submission.id)).status == "In Progress"
            clock.advance(300)
    assert emulator.auth_failures == []
    assert emulator.token_stats.max_lifetime_seconds <= 20 * 60
    assert emulator.token_stats.max_age_seconds <= 15 * 60 - 180
    assert emulator.token_stats.distinct == source.minted >= 10


async def test_network_error_when_service_is_down(tokens: TokenSource) -> None:
    with closed_port() as port:
        async with aiohttp.ClientSession() as session:
            client = NotaryClient(f"http://127.0.0.1:{port}/notary/v2", tokens, session)
            with pytest.raises(NetworkError, match="could not reach the notary service for history"):
                await client.history()


async def test_errors_derive_from_notaryd_error() -> None:
    from uploader.errors import NotarydError

    assert issubclass(NotaryError, NotarydError)
    key = ApiKey("2X9R4HXF34", "57246542-96fe-1a63-e053-0824d011072a", ec.generate_private_key(ec.SECP256R1()))
    message = str(Unauthenticated(key_id=key.key_id, issuer_id=key.issuer_id))
    assert "key id '2X9R4HXF34'" in message
    assert "issuer id '57246542-96fe-1a63-e053-0824d011072a'" in message


async def test_webhook_gets_double_encoded_payload(
    emulator: NotaryEmulator, client: NotaryClient
) -> None:
    import json

    from aiohttp import web

    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        received.put_nowait(await request.json())
        return web.Response()

    async with serving(hook, "/hook") as url:
        submission = await client.submit("App.zip", SHA, webhook=url)
        await _put(emulator, submission.id, b"archive")
        body = await asyncio.wait_for(received.get(), 10)
    assert set(body) == {"payload", "signature", "cert_chain"}
    payload = json.loads(body["payload"])
    assert payload["event"] == "processing-complete"
    assert payload["submission_id"] == submission.id


async def test_hourly_request_budget(seaweed: object, tmp_path: Path) -> None:
    from service.emulator.config import EmulatorConfig
    from service.emulator.notary import backend_for

    config = EmulatorConfig(hourly_request_limit=3)
    async with NotaryEmulator(backend_for(seaweed), config=config) as emulator:
        team_key = emulator.make_team_key(tmp_path)
        assert team_key.path is not None
        key = load_api_key(team_key.path, key_id=team_key.key_id, issuer_id=team_key.issuer_id)
        async with aiohttp.ClientSession() as session:
            client = _client(emulator, session, TokenSource(key))
            for _ in range(3):
                await client.history()
            with pytest.raises(RateLimited):
                await client.history()


def test_background_emulator_serves_synchronous_callers(seaweed: object, tmp_path: Path) -> None:
    import json
    import urllib.error
    import urllib.request

    from service.emulator.notary import BackgroundEmulator, backend_for

    with BackgroundEmulator(lambda: NotaryEmulator(backend_for(seaweed))) as emulator:
        team_key = emulator.make_team_key(tmp_path)
        assert team_key.path is not None
        key = load_api_key(team_key.path, key_id=team_key.key_id, issuer_id=team_key.issuer_id)
        request = urllib.request.Request(
            f"{emulator.api_url}/submissions",
            headers={"Authorization": TokenSource(key).authorization()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"data": [], "meta": {}}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{emulator.api_url}/submissions", timeout=10)
        refused.value.close()
        assert refused.value.code == 401
        api_url = emulator.api_url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{api_url}/submissions", timeout=5)
