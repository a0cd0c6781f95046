"""`notaryd staple` and `--check` for .app, .pkg and .dmg against the emulator's ticket lookup."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest
from aiohttp import web

from service.cli import main
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from service.emulator.tickets import TicketDesk
from uploader.staple import staple
from uploader.staple.check import CheckOutcome, check_staple
from uploader.staple.identity import StapleInputError, TicketKey, app_ticket_key, ticket_key_for
from uploader.staple.lookup import TicketLookupError, lookup_ticket
from uploader.staple.tickets import read_dmg_ticket, read_pkg_ticket, write_app_ticket

from .artifacts import make_dmg, make_pkg


class FakeSleep:
    """Records the waits instead of sleeping; the emulator's clock moves by them."""

    def __init__(self, clock: list[float]) -> None:
        self.waits: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._clock[0] += seconds


@pytest.fixture
def desk_clock() -> list[float]:
    return [1000.0]


@pytest.fixture
async def desk(desk_clock: list[float]) -> object:
    desk = TicketDesk(lambda: desk_clock[0], propagation_seconds=30)
    app = web.Application()
    app.router.add_post("/lookup", desk.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    desk.url = f"http://127.0.0.1:{runner.addresses[0][1]}/lookup"  # type: ignore[attr-defined]
    yield desk
    await runner.cleanup()


def accept(desk: TicketDesk, key: TicketKey) -> None:
    desk._learned["sub"] = [key]
    desk.publish("sub")


@pytest.mark.integration
async def test_lookup_waits_out_not_found_then_staples_the_app(
    desk: TicketDesk, desk_clock: list[float], tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path, "Game")
    key = app_ticket_key(app)
    accept(desk, key)
    sleep = FakeSleep(desk_clock)
    done = await staple(app, desk.url, sleep=sleep)  # type: ignore[attr-defined]
    assert sleep.waits == [5.0, 10.0, 20.0]  # back-off while NOT_FOUND (30 s propagation)
    assert [a for _, a in desk.answers] == ["NOT_FOUND"] * 3 + ["ticket"]
    assert (app / "Contents" / "CodeResources").read_bytes() == desk.ticket_for(key)
    assert done.key == key and check_staple(app).ok


@pytest.mark.integration
async def test_lookup_honours_throttled_retry_after(
    desk: TicketDesk, desk_clock: list[float], tmp_path: Path
) -> None:
    key = TicketKey(2, bytes(range(20)))
    accept(desk, key)
    desk_clock[0] += 60
    desk.throttle_next, desk.retry_after_seconds = 2, 17
    sleep = FakeSleep(desk_clock)
    ticket = await lookup_ticket(desk.url, key, sleep=sleep)  # type: ignore[attr-defined]
    assert sleep.waits == [17.0, 17.0] and ticket == desk.ticket_for(key)


@pytest.mark.integration
async def test_lookup_gives_up_at_the_deadline_with_advice(
    desk: TicketDesk, desk_clock: list[float]
) -> None:
    key = TicketKey(2, b"\x01" * 20)  # never accepted
    sleep = FakeSleep(desk_clock)
    with pytest.raises(TicketLookupError, match="run notaryd staple again later"):
        await lookup_ticket(desk.url, key, sleep=sleep, max_wait_seconds=100,  # type: ignore[attr-defined]
                            clock=lambda: desk_clock[0])
    assert sum(sleep.waits) <= 100


@pytest.mark.integration
async def test_lookup_refuses_an_answer_without_a_ticket(tmp_path: Path) -> None:
    async def bogus(request: web.Request) -> web.Response:
        return web.json_response({"records": [{"fields": {"signedTicket": {
            "type": "BYTES", "value": "bm90IGEgdGlja2V0"}}}]})

    app = web.Application()
    app.router.add_post("/lookup", bogus)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        with pytest.raises(TicketLookupError, match="no valid ticket"):
            await lookup_ticket(f"http://127.0.0.1:{runner.addresses[0][1]}/lookup",
                                TicketKey(2, b"\x02" * 20))
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("style", ["sha1", "sha256"])
@pytest.mark.integration
async def test_pkg_staple_appends_trailers_and_restaple_replaces(
    desk: TicketDesk, desk_clock: list[float], tmp_path: Path, style: str
) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg", style=style)
    original = pkg.read_bytes()
    key = ticket_key_for(pkg)
    assert key.digest_type == (1 if style == "sha1" else 2)
    compressed_toc_end = 28 + struct.unpack(">Q", original[8:16])[0]
    assert key.cdhash == hashlib.new(style, original[28:compressed_toc_end]).digest()[:20]
    accept(desk, key)
    desk_clock[0] += 60
    await staple(pkg, desk.url)  # type: ignore[attr-defined]
    ticket = desk.ticket_for(key)
    data = pkg.read_bytes()
    assert data[: len(original)] == original
    assert data[len(original):] == (struct.pack("<4sHHII", b"t8lr", 1, 1, 0, 0) + ticket
                                    + struct.pack("<4sHHII", b"t8lr", 1, 2, len(ticket), 0))
    assert read_pkg_ticket(pkg) == ticket and check_staple(pkg).ok
    await staple(pkg, desk.url)  # type: ignore[attr-defined]
    assert pkg.read_bytes() == data  # re-stapling replaces, never stacks


@pytest.mark.integration
async def test_dmg_staple_adds_slot_0x10002_and_updates_koly(
    desk: TicketDesk, desk_clock: list[float], tmp_path: Path
) -> None:
    dmg = make_dmg(tmp_path / "Game.dmg")
    before = dmg.read_bytes()
    key = ticket_key_for(dmg)
    accept(desk, key)
    desk_clock[0] += 60
    await staple(dmg, desk.url)  # type: ignore[attr-defined]
    after = dmg.read_bytes()
    koly = after[-512:]
    assert koly[:4] == b"koly" and koly[:0x128] == before[-512:][:0x128]
    offset, size = struct.unpack_from(">QQ", koly, 0x128)
    assert offset + size == len(after) - 512 and after[:offset] == before[:offset]
    superblob = after[offset : offset + size]
    magic, length, count = struct.unpack_from(">III", superblob)
    slots = dict(struct.unpack_from(">II", superblob, 12 + 8 * i) for i in range(count))
    assert magic == 0xFADE0CC0 and length == size and 0x10002 in slots
    assert read_dmg_ticket(dmg) == desk.ticket_for(key)
    assert ticket_key_for(dmg) == key  # the CodeDirectory is untouched
    assert check_staple(dmg).ok


def test_check_outcomes_for_an_app(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    key = app_ticket_key(app)
    assert check_staple(app).outcome is CheckOutcome.NOT_STAPLED
    write_app_ticket(app, b"garbage")
    assert check_staple(app).outcome is CheckOutcome.NOT_A_TICKET
    write_app_ticket(app, b"s8ch" + b"\x00" * 4 + b"\x07" * 20)
    assert check_staple(app).outcome is CheckOutcome.STALE
    write_app_ticket(app, TicketDesk(lambda: 0).ticket_for(key))
    result = check_staple(app)
    assert result.outcome is CheckOutcome.VALID and "current signature" in result.message
    # Signed again (new CodeDirectory) after stapling: the stapled ticket is stale.
    make_sample_app(tmp_path, "Game", identifier="com.example.resigned")
    assert check_staple(app).outcome is CheckOutcome.STALE
    assert "notaryd staple" in check_staple(app).message


def test_check_outcomes_for_pkg_and_dmg(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path / "A.pkg")
    dmg = make_dmg(tmp_path / "A.dmg")
    assert check_staple(pkg).outcome is CheckOutcome.NOT_STAPLED
    assert check_staple(dmg).outcome is CheckOutcome.NOT_STAPLED


@pytest.mark.parametrize("case, message", [
    ("zip", "a zip cannot be stapled"),
    ("unsigned-app", "not signed"),
    ("no-plist", "CFBundleExecutable"),
    ("unsigned-dmg", "not signed"),
    ("not-pkg", "not a flat package"),
    ("toc-bomb", "larger than declared"),
    ("missing", "no such file"),
    ("other", "only a .app bundle"),
])
def test_inputs_that_cannot_be_stapled_say_why(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "x"
    if case == "zip":
        path = tmp_path / "Game.zip"
        path.write_bytes(b"PK\x05\x06" + bytes(18))
    elif case == "unsigned-app":
        path = make_sample_app(tmp_path, "Game")
        exe = path / "Contents" / "MacOS" / "Game"
        exe.write_bytes(struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 2, 0, 0, 0, 0))
    elif case == "no-plist":
        path = make_sample_app(tmp_path, "Game")
        (path / "Contents" / "Info.plist").unlink()
    elif case == "unsigned-dmg":
        path = make_dmg(tmp_path / "Game.dmg", signed=False)
    elif case == "not-pkg":
        path = tmp_path / "Game.pkg"
        path.write_bytes(zlib.compress(b"nope") * 10)
    elif case == "toc-bomb":  # 10 MB of XML declared as 100 bytes: never inflated in full
        path = tmp_path / "Bomb.pkg"
        bomb = zlib.compress(b" " * 10_000_000)
        path.write_bytes(struct.pack(">4sHHQQI", b"xar!", 28, 1, len(bomb), 100, 1) + bomb)
    elif case == "missing":
        path = tmp_path / "Gone.dmg"
    elif case == "other":
        path = tmp_path / "tool"
        path.write_bytes(b"\x00")
    with pytest.raises(StapleInputError, match=message):
        check_staple(path)


@pytest.mark.integration
async def test_failed_write_leaves_the_package_untouched(
    desk: TicketDesk, desk_clock: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    original = pkg.read_bytes()
    accept(desk, ticket_key_for(pkg))
    desk_clock[0] += 60

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the moment just before the rename
    with pytest.raises(OSError):
        await staple(pkg, desk.url)  # type: ignore[attr-defined]
    assert pkg.read_bytes() == original
    assert os.listdir(tmp_path) == ["Game.pkg"]  # no temporary left behind


async def test_cli_staple_and_check(emulator: NotaryEmulator, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    app = make_sample_app(tmp_path, "Game")
    monkeypatch.setenv("NOTARYD_TICKET_URL", emulator.ticket_url)
    monkeypatch.setenv("NOTARYD_CONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert await asyncio.to_thread(main, ["staple", "--check", str(app)]) == 1
    assert "no ticket is stapled" in capsys.readouterr().out
    # Not accepted by the emulator: the lookup keeps answering NOT_FOUND until --max-wait.
    assert await asyncio.to_thread(main, ["staple", "--max-wait", "0", str(app)]) == 1
    assert "no ticket for 2/2/" in capsys.readouterr().err
    emulator.tickets.propagation_seconds = 0
    emulator.tickets._learned["s"] = [app_ticket_key(app)]
    emulator.tickets.publish("s")
    assert await asyncio.to_thread(main, ["staple", str(app)]) == 0
    assert "stapled the ticket" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["staple", "--check", "--json", str(app)]) == 0
    assert '"outcome": "valid"' in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["staple", "--check", str(tmp_path / "a.zip")]) == 1
    assert "a zip cannot be stapled" in capsys.readouterr().err


@pytest.mark.integration
async def test_lookup_honours_retry_after_on_503() -> None:
    answers = [web.Response(status=503, headers={"Retry-After": "42"})]

    async def flaky(request: web.Request) -> web.Response:
        if answers:
            return answers.pop()
        ticket = TicketDesk(lambda: 0).ticket_for(TicketKey(2, b"\x03" * 20))
        import base64

        return web.json_response({"records": [{"fields": {"signedTicket": {
            "type": "BYTES", "value": base64.b64encode(ticket).decode()}}}]})

    app = web.Application()
    app.router.add_post("/lookup", flaky)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    clock = [0.0]
    sleep = FakeSleep(clock)
    try:
        ticket = await lookup_ticket(f"http://127.0.0.1:{runner.addresses[0][1]}/lookup",
                                     TicketKey(2, b"\x03" * 20), sleep=sleep)
    finally:
        await runner.cleanup()
    assert sleep.waits == [42.0] and ticket.startswith(b"s8ch")
