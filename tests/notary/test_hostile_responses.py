"""The notary client against a hostile server on loopback (issue 10, item 6): bodies are
capped, malformed answers are a permanent error, redirects and log URLs are checked."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.resolving import fake_resolver, loopback_alias
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import NotaryClient, ResponseLimits, with_retries
from uploader.notary.errors import (
    BadResponse,
    NetworkError,
    NotaryError,
    ResponseTooLarge,
    ServerError,
    UnsafeUrl,
)
from uploader.notary.url_policy import AddressGuard, UrlPolicy
from uploader.proxies import proxy_hosts
from uploader.retry import RetryPolicy

pytestmark = pytest.mark.integration

SUBMISSION = str(uuid.uuid4())
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class HostileServer:
    """A real HTTP server whose answers each test chooses; counts requests and bytes sent."""

    url: str = ""
    handler: Handler | None = None
    hits: int = 0
    bytes_sent: int = 0
    stream_finished: bool = False
    paths: list[str] = field(default_factory=list)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.paths.append(request.path_qs)
        assert self.handler is not None
        return await self.handler(request)

    async def stream(self, request: web.Request, total: int, piece: bytes = b"[" * 65536,
                     length: int | None = None) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        try:
            while self.bytes_sent < total:
                await response.write(piece)
                self.bytes_sent += len(piece)
            self.stream_finished = True
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    hostile = HostileServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hostile.dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hostile.url = f"http://127.0.0.1:{port}"
    yield hostile
    await runner.cleanup()


@pytest.fixture
def tokens(tmp_path: Path) -> TokenSource:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path = tmp_path / "AuthKey_ABCDE12345.p8"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return TokenSource(load_api_key(path, key_id="ABCDE12345", issuer_id=str(uuid.uuid4())))


@pytest.fixture
async def client(server: HostileServer, tokens: TokenSource) -> AsyncIterator[NotaryClient]:
    async with aiohttp.ClientSession() as session:
        yield NotaryClient(server.url + "/notary/v2", tokens, session)


def json_answer(doc: object) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(doc)
    return handle


def log_url_answer(url: str) -> Handler:
    return json_answer({"data": {"id": SUBMISSION, "type": "submissionsLog",
                                 "attributes": {"developerLogUrl": url}}, "meta": {}})


def redirect_to(location: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)
    return handle


QUICK = RetryPolicy(initial_delay_seconds=0.0, throttled_initial_delay_seconds=0.0,
                    max_delay_seconds=0.0, max_attempts=3)


async def no_sleep(_: float) -> None:
    return None


async def test_endless_json_body_is_cut_at_the_cap(
    server: HostileServer, client: NotaryClient
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        return await server.stream(request, total=512 * 1024 * 1024)
    server.handler = endless
    with pytest.raises(ResponseTooLarge) as raised:
        await client.status(SUBMISSION)
    assert not raised.value.transient and "1,048,576 bytes" in str(raised.value)
    assert not server.stream_finished  # the client hung up; it did not read 512 MiB


async def test_announced_oversize_body_is_refused_unread(
    server: HostileServer, client: NotaryClient
) -> None:
    async def announced(request: web.Request) -> web.StreamResponse:
        return await server.stream(request, total=4 * 1024 * 1024, length=4 * 1024 * 1024)
    server.handler = announced
    with pytest.raises(ResponseTooLarge):
        await client.history()


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"<html><body>Sign in to the hotel Wi-Fi</body></html>", "text/html"),
        (b"[" * 200_000 + b"]" * 200_000, "application/json"),  # RecursionError in json
        (b'{"data": []}', "application/json"),
        (b'{"data": {"id": "x", "attributes": "In Progress"}}', "application/json"),
        (b'{"data": {"id": "x", "attributes": {}}}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
    ],
)
async def test_malformed_answers_are_permanent_and_not_retried(
    server: HostileServer, client: NotaryClient, body: bytes, content_type: str
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)
    server.handler = answer
    with pytest.raises(BadResponse) as raised:
        await with_retries(lambda: client.status(SUBMISSION), QUICK, no_sleep)
    assert not raised.value.transient
    assert server.hits == 1  # asked once: the same question gets the same answer
    assert "NOTARYD_API_URL" in str(raised.value) and "\n" not in str(raised.value)


async def test_huge_error_page_keeps_its_meaning(
    server: HostileServer, client: NotaryClient
) -> None:
    async def failing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, body=b"x" * (8 * 1024 * 1024))
    server.handler = failing
    with pytest.raises(ServerError) as raised:  # truncated, still a transient 503
        await client.status(SUBMISSION)
    assert raised.value.transient


@pytest.mark.parametrize("location", ["file:///etc/passwd",
                                      "http://127.0.0.2:1/notary/v2/submissions",
                                      "https://evil.example/notary/v2/submissions"])
async def test_api_redirects_leave_neither_origin_nor_token(
    server: HostileServer, client: NotaryClient, location: str
) -> None:
    server.handler = redirect_to(location)
    with pytest.raises(UnsafeUrl, match="away from the API's own host") as raised:
        await with_retries(client.history, QUICK, no_sleep)
    assert not raised.value.transient and server.hits == 1


async def test_same_origin_redirect_is_followed(
    server: HostileServer, client: NotaryClient
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/submissions"):
            raise web.HTTPTemporaryRedirect("/notary/v2/moved")
        return web.json_response({"data": [], "meta": {}})
    server.handler = moved
    assert await client.history() == []


async def test_redirect_loop_is_cut(server: HostileServer, client: NotaryClient) -> None:
    server.handler = redirect_to("/notary/v2/submissions")
    with pytest.raises(UnsafeUrl, match="more than 5 redirects"):
        await client.history()
    assert server.hits == 6


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://logs.example/developer_log.json?Signature=abc", "http:// instead of https://"),
        ("file:///etc/passwd", "file:// instead of https://"),
        ("http://169.254.169.254/latest/meta-data/", "http:// instead of https://"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:127.0.0.1]/x", "this machine"),
    ],
)
async def test_unsafe_log_urls_are_refused_and_signatures_not_shown(
    server: HostileServer, client: NotaryClient, url: str, reason: str
) -> None:
    server.handler = log_url_answer(url)
    with pytest.raises(UnsafeUrl, match=reason) as raised:
        await client.log_url(SUBMISSION)
    assert not raised.value.transient and "Signature=abc" not in str(raised.value)


async def test_log_download_redirected_to_metadata_address_is_refused(
    server: HostileServer, client: NotaryClient
) -> None:
    server.handler = redirect_to("http://169.254.169.254/latest/meta-data/iam")
    with pytest.raises(UnsafeUrl, match="http:// instead of https://"):
        await client.download_log(server.url + "/logs/x.json?Signature=s")


async def test_log_is_streamed_with_a_cap(server: HostileServer, tokens: TokenSource) -> None:
    async def huge_log(request: web.Request) -> web.StreamResponse:
        return await server.stream(request, total=256 * 1024 * 1024, piece=b" " * 65536)
    server.handler = huge_log
    limits = ResponseLimits(log_bytes=2 * 1024 * 1024)
    async with aiohttp.ClientSession() as session:
        client = NotaryClient(server.url + "/notary/v2", tokens, session, limits=limits)
        with pytest.raises(ResponseTooLarge, match="2,097,152 bytes"):
            await client.download_log(server.url + "/logs/x.json")
    assert not server.stream_finished


async def test_log_within_the_cap_arrives_through_an_allowed_redirect(
    server: HostileServer, client: NotaryClient
) -> None:
    async def log(request: web.Request) -> web.StreamResponse:
        if request.path == "/logs/old.json":
            raise web.HTTPFound("/logs/new.json")
        return web.json_response({"jobId": SUBMISSION, "status": "Accepted", "issues": None})
    server.handler = log
    document = await client.download_log(server.url + "/logs/old.json")
    assert document["status"] == "Accepted" and server.paths[-1] == "/logs/new.json"


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://notary-artifacts-prod.s3.amazonaws.com/prod/x?Signature=s", True),
        ("https://rebinding.example/x", False),  # resolves to 127.0.0.1
        ("https://metadata.example/x", False),  # resolves to 169.254.169.254
        ("https://mixed.example/x", False),  # one public, one loopback address
        ("https://private.example/x", True),  # 10/8 is not this machine (corporate proxies)
        ("https://localhost/x", False),
        ("https://app.localhost/x", False),
        ("https://127.0.0.1/x", False),
        ("https://[::1]/x", False),
        ("https://[fe80::1%25eth0]/x", False),
        ("https://0.0.0.0/x", False),
        ("http://notary-artifacts-prod.s3.amazonaws.com/x", False),
        ("ftp://notary-artifacts-prod.s3.amazonaws.com/x", False),
        ("https://unknown.example/x", False),
        ("https:///x", False),
    ],
)
async def test_strict_policy_for_a_real_https_api(url: str, allowed: bool) -> None:
    policy = UrlPolicy("https://appstoreconnect.apple.com/notary/v2", fake_resolver({
        "notary-artifacts-prod.s3.amazonaws.com": ["52.218.1.1"],
        "rebinding.example": ["127.0.0.1"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["52.218.1.1", "::1"],
        "private.example": ["10.1.2.3"],
    }))
    assert not policy.allow_loopback_http
    if allowed:
        await policy.check(url, "logs")
    else:
        with pytest.raises(UnsafeUrl):
            await policy.check(url, "logs")


async def test_emulator_allowance_needs_an_http_loopback_api_url() -> None:
    emulator = UrlPolicy("http://127.0.0.1:9000/notary/v2", fake_resolver({}))
    await emulator.check("http://127.0.0.1:9001/logs-download/x", "logs")
    await emulator.check("http://localhost:9001/logs-download/x", "logs")
    with pytest.raises(UnsafeUrl):
        await emulator.check("http://169.254.169.254/x", "logs")
    with pytest.raises(UnsafeUrl):
        await emulator.check("http://logs.example/x", "logs")
    for api_url in ("http://notary.internal:80/notary/v2", "https://127.0.0.1/notary/v2"):
        with pytest.raises(UnsafeUrl):
            await UrlPolicy(api_url, fake_resolver({})).check("http://127.0.0.1:1/x", "logs")


async def test_errors_are_notary_errors_the_pipeline_reports() -> None:
    for error in (UnsafeUrl(url="u", reason="r"), ResponseTooLarge(limit_bytes=1),
                  BadResponse(detail="d")):
        assert isinstance(error, NotaryError) and not error.transient


async def test_rebinding_name_cannot_reach_this_machine(
    server: HostileServer, tokens: TokenSource
) -> None:
    """The check saw a public address; by connection time the name says 127.0.0.1."""
    alias = loopback_alias()
    if alias is None:
        pytest.skip("no host name other than localhost resolves to loopback here")
    server.handler = json_answer({"status": "Accepted"})
    port = server.url.rsplit(":", 1)[1]
    client = NotaryClient("https://notary.example/notary/v2", tokens,
                          resolver=fake_resolver({alias: ["52.218.1.1"]}))
    try:
        with pytest.raises(NetworkError, match="ClientConnectorDNSError"):  # not a TLS error
            await client.download_log(f"https://{alias}:{port}/logs/x.json")
    finally:
        await client.close()
    assert server.hits == 0


def test_address_guard_lets_the_api_host_and_the_emulator_through() -> None:
    loopback: list[ResolveResult] = [{"hostname": "localhost", "host": "127.0.0.1", "port": 443,
                                      "family": socket.AF_INET, "proto": 0, "flags": 0}]
    strict = AddressGuard("https://localhost/notary/v2")  # a local TLS proxy as the API
    assert strict.allowed("localhost", 443, loopback) == loopback
    with pytest.raises(OSError, match="loopback"):
        strict.allowed("localhost", 8080, loopback)  # another service there
    assert AddressGuard("http://127.0.0.1:9000/notary/v2").allowed("localhost", 8080, loopback)
    with pytest.raises(OSError, match="loopback"):
        AddressGuard("https://notary.example/v2").allowed("localhost", 443, loopback)


async def test_behind_a_proxy_the_proxy_may_be_local_and_names_are_its_to_resolve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A studio's local proxy (cntlm on localhost:3128) carries the https traffic; the URL
    checks still refuse internal names, but leave resolving public ones to the proxy."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://localhost:3128")
    local_proxy: list[ResolveResult] = [{"hostname": "localhost", "host": "127.0.0.1", "port": 3128,
                                         "family": socket.AF_INET, "proto": 0, "flags": 0}]
    guard = AddressGuard("https://notary.example/v2")
    assert guard.allowed("localhost", 3128, local_proxy, proxy_hosts()) == local_proxy
    with pytest.raises(OSError, match="loopback"):
        guard.allowed("localhost", 3128, local_proxy)  # not a proxy: refused as before
    policy = UrlPolicy("https://appstoreconnect.apple.com/notary/v2", fake_resolver({}))
    await policy.check("https://notary-artifacts-prod.s3.amazonaws.com/x", "logs")
    for url in ("https://127.0.0.1/x", "https://app.localhost/x", "http://public.example/x"):
        with pytest.raises(UnsafeUrl):
            await policy.check(url, "logs")


def submit_answer(**overrides: object) -> Handler:
    attributes: dict[str, object] = {
        "awsAccessKeyId": "ASIAABCDEFGHIJKLMNOP", "awsSecretAccessKey": "c2VjcmV0",
        "awsSessionToken": "dG9rZW4=", "bucket": "notary-submissions-prod",
        "object": f"prod/AROA:{SUBMISSION}"}
    data: dict[str, object] = {"id": SUBMISSION, "type": "newSubmissions"}
    for key, value in overrides.items():
        (data if key == "id" else attributes)[key] = value
    data["attributes"] = attributes
    return json_answer({"data": data, "meta": {}})


@pytest.mark.parametrize(
    "overrides, field_name",
    [
        ({"id": "../../../../home/user/.ssh/authorized_keys"}, "id"),  # ends up in a file name
        ({"id": ""}, "id"),
        ({"id": 12345}, "id"),
        ({"bucket": "../other"}, "bucket"),
        ({"awsSecretAccessKey": {"nested": "object"}}, "awsSecretAccessKey"),
        ({"awsSessionToken": "x" * 100_000}, "awsSessionToken"),
        ({"awsAccessKeyId": "ASIA\nInjected: header"}, "awsAccessKeyId"),
        ({"object": None}, "object"),
    ],
)
async def test_malformed_submission_fields_are_refused(
    server: HostileServer, client: NotaryClient, overrides: dict[str, object], field_name: str
) -> None:
    server.handler = submit_answer(**overrides)
    with pytest.raises(BadResponse, match=f"field '{field_name}' is missing or malformed"):
        await client.submit("Game.zip", "0" * 64)


async def test_well_formed_submission_is_accepted(
    server: HostileServer, client: NotaryClient
) -> None:
    server.handler = submit_answer()
    created = await client.submit("Game.zip", "0" * 64)
    assert created.id == SUBMISSION and created.bucket == "notary-submissions-prod"


async def test_status_with_control_characters_is_refused(
    server: HostileServer, client: NotaryClient
) -> None:
    server.handler = json_answer({"data": {"id": SUBMISSION, "attributes": {
        "status": "Accepted\x1b[2J", "name": "x", "createdDate": "2024-01-01T00:00:00Z"}}})
    with pytest.raises(BadResponse, match="'status'"):
        await client.status(SUBMISSION)


async def test_error_details_are_printed_as_one_bounded_line(
    server: HostileServer, client: NotaryClient
) -> None:
    async def forbidden(request: web.Request) -> web.StreamResponse:
        return web.json_response({"errors": [{"status": "403", "code": "FORBIDDEN\n",
                                              "title": "Denied\x1b]0;pwned\x07",
                                              "detail": "line one\nline two " + "y" * 5000}]},
                                 status=403)
    server.handler = forbidden
    with pytest.raises(NotaryError) as raised:
        await client.history()
    message = str(raised.value)
    assert "\n" not in message and "\x1b" not in message and "\x07" not in message
    assert "line one line two" in message and len(message) < 1000
