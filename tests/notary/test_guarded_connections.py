"""The notary session's connect-time address guard covers IP literals and every redirect hop
(issue 18, item 4): a real service on this machine stands where an answer tries to send us."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.http_servers import Answer, scripted_server
from uploader.notary.client import notary_session

pytestmark = pytest.mark.integration

STRICT_API = "https://notary.example/notary/v2"  # a real configuration: no emulator allowance


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_ip_literals_of_this_machine_are_refused_at_connect_time(host: str) -> None:
    with scripted_server() as inside:
        session = notary_session(STRICT_API)
        try:
            with pytest.raises(aiohttp.ClientConnectorDNSError, match="loopback"):
                async with session.get(f"http://{host}:{inside.port}/latest/meta-data/"):
                    pass
        finally:
            await session.close()
    assert inside.requests == []


@pytest.mark.parametrize("target", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_a_redirect_hop_to_this_machine_is_refused(target: str) -> None:
    """The API host (a local TLS proxy named localhost, say) may be on loopback; a redirect
    aiohttp follows by itself (the ticket lookup's) may not take us anywhere else there."""
    with scripted_server() as inside, scripted_server(lambda _: Answer(
            307, {"Location": f"http://{target}:{inside.port}/admin"})) as api:
        session = notary_session(f"https://localhost:{api.port}/notary/v2")
        try:
            with pytest.raises(aiohttp.ClientConnectorDNSError, match="loopback"):
                async with session.post(f"http://localhost:{api.port}/lookup", data=b"{}"):
                    pass
        finally:
            await session.close()
    assert [r.path for r in api.requests] == ["/lookup"]  # the first hop was allowed
    assert inside.requests == []


async def test_the_emulator_allowance_still_reaches_loopback() -> None:
    with scripted_server(lambda _: Answer(200, body=b"ok")) as emulator:
        session = notary_session(emulator.url("/notary/v2"))
        try:
            async with session.get(emulator.url("/x")) as response:
                assert await response.read() == b"ok"
        finally:
            await session.close()
    assert len(emulator.requests) == 1


async def test_a_configured_ticket_host_may_be_on_loopback_and_nothing_else_there() -> None:
    """NOTARYD_TICKET_URL is the operator's choice, like the API URL: its host is trusted; a
    redirect from it to another service on this machine is not."""
    with scripted_server() as inside, scripted_server(lambda r: Answer(
            307, {"Location": f"http://127.0.0.1:{inside.port}/x"}) if r.path == "/hop"
            else Answer(200, body=b"{}")) as lookup:
        session = notary_session(STRICT_API, lookup.url("/records/lookup"))
        try:
            async with session.post(lookup.url("/records/lookup"), data=b"{}") as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientConnectorDNSError, match="loopback"):
                async with session.post(lookup.url("/hop"), data=b"{}"):
                    pass
        finally:
            await session.close()
    assert [r.path for r in lookup.requests] == ["/records/lookup", "/hop"]
    assert inside.requests == []
