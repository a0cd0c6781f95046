"""The ticket lookup against answers shaped like CloudKit's real ones, on real loopback HTTP.

Real-sized tickets arriving in pieces, CloudKit's temporary and final per-record errors, a record
Apple's log says will never exist, an unreachable host, redirects, and malformed answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from aiohttp import web

from service import exit_codes
from service.cli import main
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from service.emulator.tickets import TICKET_BYTES, TicketDesk
from tests.support.cdhash import raw_cdhash, record_name_of_app
from tests.support.clocks import ManualClock
from tests.support.emulator import notary_settings
from tests.support.ports import closed_port
from tests.support.serving import serving
from uploader.artifact import Artifact
from uploader.notary.ends import staple_after, ticketed_records
from uploader.staple import staple
from uploader.staple.identity import TicketKey
from uploader.staple.lookup import TicketLookupError, _redirect_target, lookup_ticket

pytestmark = pytest.mark.integration

KEY = TicketKey(2, bytes(range(20)))


async def test_a_real_sized_ticket_arriving_in_pieces_is_read_to_the_end(
    ticket_desk: TicketDesk, ticket_clock: ManualClock
) -> None:
    ticket_desk.answer_pieces, ticket_desk.piece_pause_seconds = 6, 0.05
    ticket_desk.issue([KEY.record_name])
    ticket_clock.advance(60)
    ticket = await lookup_ticket(ticket_desk.url, KEY)  # type: ignore[attr-defined]
    assert len(ticket) == TICKET_BYTES == 16_177  # the size of a published real ticket
    assert ticket == ticket_desk.ticket_for(KEY.record_name) and KEY.cdhash in ticket


@pytest.mark.parametrize("codes", [
    ["TRY_AGAIN_LATER", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE"],
    ["THROTTLED", "TRY_AGAIN_LATER"],  # THROTTLED without retryAfter: the same back-off
])
async def test_temporary_record_errors_are_retried_with_the_not_found_back_off(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, codes: list[str]
) -> None:
    ticket_desk.issue([KEY.record_name])
    ticket_clock.advance(60)
    ticket_desk.record_errors = list(codes)
    ticket = await lookup_ticket(ticket_desk.url, KEY, sleep=ticket_clock.sleep,  # type: ignore[attr-defined]
                                 clock=ticket_clock)
    assert [answer for _, answer in ticket_desk.answers] == [*codes, "ticket"]
    assert ticket_clock.slept == [5.0, 10.0, 20.0][: len(codes)]
    assert ticket == ticket_desk.ticket_for(KEY.record_name)


@pytest.mark.parametrize("code", ["BAD_REQUEST", "ACCESS_DENIED"])
async def test_a_refusal_that_cannot_change_ends_the_lookup_at_once(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, code: str
) -> None:
    ticket_desk.issue([KEY.record_name])
    ticket_desk.record_errors = [code]
    with pytest.raises(TicketLookupError, match=f"refused {KEY.record_name}: {code}"):
        await lookup_ticket(ticket_desk.url, KEY, sleep=ticket_clock.sleep,  # type: ignore[attr-defined]
                            clock=ticket_clock)
    assert ticket_clock.slept == [] and len(ticket_desk.answers) == 1


async def test_a_record_the_log_does_not_list_is_reported_at_once_naming_the_listed(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path, "Resigned")
    expected = record_name_of_app(app)
    listed = ["2/2/" + "aa" * 20, "2/2/" + "bb" * 20]  # what Apple's log says it ticketed
    with pytest.raises(TicketLookupError) as refused:
        await staple(app, ticket_desk.url, sleep=ticket_clock.sleep,  # type: ignore[attr-defined]
                     ticketed=listed)
    message = str(refused.value)
    assert raw_cdhash(expected).hex() in message
    assert "aa" * 20 in message and "bb" * 20 in message and "notarise it again" in message
    assert ticket_desk.answers == [] and ticket_clock.slept == []
    # A log that lists it (or only signatures of another digest type) lets the lookup go ahead.
    ticket_desk.issue([expected])
    ticket_clock.advance(60)
    for ticketed in ([*listed, expected], ["2/1/" + "cc" * 20]):
        done = await staple(app, ticket_desk.url, ticketed=ticketed)  # type: ignore[attr-defined]
        assert done.key.record_name == expected


async def test_after_accepted_the_stored_log_tells_never_from_not_yet(
    ticket_desk: TicketDesk, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path, "Changed")
    log_path = tmp_path / "log.json"
    log_path.write_text(json.dumps({"status": "Accepted", "ticketContents": [
        {"path": "Changed.zip/Changed.app/Contents/MacOS/Changed", "digestAlgorithm": "SHA-256",
         "cdhash": "cd" * 20, "arch": "arm64"}]}))
    note = await staple_after(Artifact.open(app), ticket_desk.url, 1800.0, log_path=log_path)  # type: ignore[attr-defined]
    assert note.failed and "accepted but not stapled" in note.text and "cd" * 20 in note.text
    assert ticket_desk.answers == []  # said at once, without waiting 30 minutes
    assert ticketed_records(log_path) == ("2/2/" + "cd" * 20,)


async def test_an_unreachable_ticket_service_is_not_called_propagation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    clock = ManualClock()
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/lookup"
        with pytest.raises(TicketLookupError) as failed:
            await lookup_ticket(url, KEY, sleep=clock.sleep, clock=clock)
        message = str(failed.value)
        assert message.startswith(f"cannot reach the ticket service at {url}")
        assert "propagating" not in message and "proxy" not in message.split(";")[0]
        assert clock.slept == [5.0, 10.0, 20.0, 40.0]  # two minutes of patience, not thirty
        # With a proxy configured for it, the proxy is named (without its password).
        monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@127.0.0.1:{port}")
        with pytest.raises(TicketLookupError) as failed:
            await lookup_ticket(url, KEY, sleep=clock.sleep, clock=clock)
    message = str(failed.value)
    assert f"the environment configures the proxy http://REDACTED@127.0.0.1:{port} for it" in message
    assert "secret" not in message


async def test_a_redirect_to_another_host_is_not_followed() -> None:
    elsewhere: list[str] = []

    async def other_host(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.json_response({"records": [{"fields": {"signedTicket": {
            "type": "BYTES", "value": base64.b64encode(b"s8ch" + bytes(40)).decode()}}}]})

    async with serving(other_host) as other_url:
        target = other_url.replace("127.0.0.1", "localhost")  # another host, same machine

        async def redirect_away(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(target)

        async with serving(redirect_away) as url:
            with pytest.raises(TicketLookupError, match="neither Apple's nor NOTARYD_TICKET_URL"):
                await lookup_ticket(url, KEY)
        assert elsewhere == []


async def test_a_redirect_within_the_configured_host_is_followed(
    ticket_desk: TicketDesk, ticket_clock: ManualClock
) -> None:
    ticket_desk.issue([KEY.record_name])
    ticket_clock.advance(60)

    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path == "/old/lookup":
            raise web.HTTPPermanentRedirect("/lookup")
        return await ticket_desk.handle(request)

    async with serving(moved, "/{path:.*}") as url:
        old = url.replace("/{path:.*}", "/old/lookup")
        ticket = await lookup_ticket(old, KEY)
    assert ticket == ticket_desk.ticket_for(KEY.record_name)


@pytest.mark.parametrize("location, allowed", [
    ("https://api.apple-cloudkit.com/database/1/lookup", True),
    ("https://gateway.icloud.com.apple.com/x", True),
    ("http://api.apple-cloudkit.com/x", False),  # Apple's host, but not over https
    ("https://apple-cloudkit.com.attacker.example/x", False),
    ("https://notapple.com/x", False),
    ("https://tickets.example.com:8443/other", True),  # NOTARYD_TICKET_URL's own host
    ("https://tickets.example.com/other", False),  # same name, another port
])
def test_which_redirect_targets_the_lookup_follows(location: str, allowed: bool) -> None:
    configured = "https://tickets.example.com:8443/lookup"
    if allowed:
        assert _redirect_target(configured, configured, location) == location
    else:
        with pytest.raises(TicketLookupError, match="not followed"):
            _redirect_target(configured, configured, location)


@pytest.mark.parametrize("answer", [
    {"records": [{"fields": "not an object"}]},
    {"records": [{"fields": {"signedTicket": "not an object"}}]},
    {"records": [{"fields": {"signedTicket": {"type": "BYTES", "value": 12345}}}]},
    {"records": [{"fields": {"signedTicket": {"type": "BYTES", "value": "bm90IGEgdGlja2V0"}}}]},
    {"records": [{"fields": {"signedTicket": {"type": "BYTES", "value": "%%%"}}}]},
    {"records": [["a", "list"]]},
    {"records": [{"serverErrorCode": ["not", "a", "code"]}]},
])
async def test_a_malformed_answer_is_one_clear_refusal(answer: object) -> None:
    async def malformed(request: web.Request) -> web.Response:
        return web.json_response(answer)

    async with serving(malformed) as url:
        with pytest.raises(TicketLookupError, match="ticket lookup"):
            await lookup_ticket(url, KEY, max_wait_seconds=0)


async def test_a_503_with_retry_after_is_waited_out() -> None:
    ticket = TicketDesk(lambda: 0).ticket_for(KEY.record_name)
    answers = [web.Response(status=503, headers={"Retry-After": "42"})]

    async def flaky(request: web.Request) -> web.Response:
        if answers:
            return answers.pop()
        return web.json_response({"records": [{"fields": {"signedTicket": {
            "type": "BYTES", "value": base64.b64encode(ticket).decode()}}}]})

    clock = ManualClock()
    async with serving(flaky) as url:
        got = await lookup_ticket(url, KEY, sleep=clock.sleep, clock=clock)
    assert clock.slept == [42.0] and got == ticket



async def test_a_malformed_ticket_answer_after_accepted_is_one_line_and_exit_1(
    emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_sample_app(tmp_path / "build", "Shipped")

    async def malformed(request: web.Request) -> web.Response:
        return web.json_response({"records": [{"fields": "not an object"}]})

    async with serving(malformed) as url:
        for name, value in {**notary_settings(emulator, team_key), "NOTARYD_TICKET_URL": url,
                            "NOTARYD_STATE_DIR": str(tmp_path / "state"), "NOTARYD_CONFIG": "",
                            "HOME": str(tmp_path)}.items():
            monkeypatch.setenv(name, value)
        code = await asyncio.to_thread(main, ["notarize", "--skip-preflight", str(app)])
    out, err = capsys.readouterr()
    assert code == exit_codes.ACCEPTED_NOT_STAPLED == 1  # the contract's codes: 0, 1, 2
    assert "Shipped.app: Accepted, submission" in out  # the verdict stays reported
    *progress, line = err.splitlines()
    assert all(shown.startswith("notaryd: ") for shown in progress)  # the progress lines
    assert line.startswith("Shipped.app: accepted but not stapled: the ticket lookup")
    assert "no valid ticket" in line
    assert "unexpected error" not in err and "Traceback" not in err
    assert not (app / "Contents" / "CodeResources").exists()
