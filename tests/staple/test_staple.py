"""`notaryd staple` and `--check` for .app, .pkg and .dmg against the emulator's ticket lookup.

Expected record names come from ``tests.support.cdhash`` (decoded by hand from the bytes), never
from ``uploader.staple.identity``, the code under test. The lookup's own behaviour (answers in
pieces, temporary errors, redirects, unreachable hosts) is in ``test_ticket_lookup``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest

from service.cli import main
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from service.emulator.tickets import TicketDesk
from tests.support.artifacts import make_dmg, make_pkg
from tests.support.cdhash import raw_cdhash, record_name_of_app, record_name_of_dmg
from tests.support.clocks import ManualClock
from uploader.artifact import ticket_key_for
from uploader.staple import staple
from uploader.staple.check import CheckOutcome, check_staple
from uploader.staple.identity import StapleInputError, TicketKey
from uploader.staple.lookup import TicketLookupError, lookup_ticket
from uploader.staple.tickets import read_dmg_ticket, read_pkg_ticket, write_app_ticket


def accept(desk: TicketDesk, record_name: str) -> None:
    desk.issue([record_name])


@pytest.mark.integration
async def test_lookup_waits_out_not_found_then_staples_the_app(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path, "Game")
    expected = record_name_of_app(app)  # decoded by hand from the executable's bytes
    accept(ticket_desk, expected)
    done = await staple(app, ticket_desk.url, sleep=ticket_clock.sleep)  # type: ignore[attr-defined]
    assert ticket_clock.slept == [5.0, 10.0, 20.0]  # back-off while NOT_FOUND (30 s propagation)
    assert ticket_desk.answers == [(expected, "NOT_FOUND")] * 3 + [(expected, "ticket")]
    stapled = (app / "Contents" / "CodeResources").read_bytes()
    assert stapled == ticket_desk.ticket_for(expected) and raw_cdhash(expected) in stapled
    assert done.key.record_name == expected and check_staple(app).ok


@pytest.mark.integration
async def test_lookup_honours_throttled_retry_after(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path
) -> None:
    key = TicketKey(2, bytes(range(20)))
    accept(ticket_desk, key.record_name)
    ticket_clock.advance(60)
    ticket_desk.throttle_next, ticket_desk.retry_after_seconds = 2, 17
    ticket = await lookup_ticket(ticket_desk.url, key, sleep=ticket_clock.sleep)  # type: ignore[attr-defined]
    assert ticket_clock.slept == [17.0, 17.0] and ticket == ticket_desk.ticket_for(key.record_name)


@pytest.mark.integration
async def test_lookup_gives_up_at_the_deadline_with_advice(
    ticket_desk: TicketDesk, ticket_clock: ManualClock
) -> None:
    key = TicketKey(2, b"\x01" * 20)  # never accepted
    with pytest.raises(TicketLookupError, match="run notaryd staple again later"):
        await lookup_ticket(ticket_desk.url, key, sleep=ticket_clock.sleep, max_wait_seconds=100,  # type: ignore[attr-defined]
                            clock=ticket_clock)
    assert sum(ticket_clock.slept) <= 100


@pytest.mark.parametrize("style", ["sha1", "sha256"])
@pytest.mark.integration
async def test_pkg_staple_appends_trailers_and_restaple_replaces(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path, style: str
) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg", style=style)
    original = pkg.read_bytes()
    compressed_toc_end = 28 + struct.unpack(">Q", original[8:16])[0]
    toc_checksum = hashlib.new(style, original[28:compressed_toc_end]).digest()[:20]
    expected = f"2/{1 if style == 'sha1' else 2}/{toc_checksum.hex()}"
    assert ticket_key_for(pkg).record_name == expected
    accept(ticket_desk, expected)
    ticket_clock.advance(60)
    await staple(pkg, ticket_desk.url, max_wait_seconds=0)  # type: ignore[attr-defined]
    ticket = ticket_desk.ticket_for(expected)
    data = pkg.read_bytes()
    assert data[: len(original)] == original
    assert data[len(original):] == (struct.pack("<4sHHII", b"t8lr", 1, 1, 0, 0) + ticket
                                    + struct.pack("<4sHHII", b"t8lr", 1, 2, len(ticket), 0))
    assert read_pkg_ticket(pkg) == ticket and check_staple(pkg).ok
    await staple(pkg, ticket_desk.url, max_wait_seconds=0)  # type: ignore[attr-defined]
    assert pkg.read_bytes() == data  # re-stapling replaces, never stacks


@pytest.mark.integration
async def test_dmg_staple_adds_slot_0x10002_and_updates_koly(
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path
) -> None:
    dmg = make_dmg(tmp_path / "Game.dmg")
    before = dmg.read_bytes()
    expected = record_name_of_dmg(before)
    accept(ticket_desk, expected)
    ticket_clock.advance(60)
    await staple(dmg, ticket_desk.url, max_wait_seconds=0)  # type: ignore[attr-defined]
    after = dmg.read_bytes()
    koly = after[-512:]
    assert koly[:4] == b"koly" and koly[:0x128] == before[-512:][:0x128]
    offset, size = struct.unpack_from(">QQ", koly, 0x128)
    assert offset + size == len(after) - 512 and after[:offset] == before[:offset]
    superblob = after[offset : offset + size]
    magic, length, count = struct.unpack_from(">III", superblob)
    slots = dict(struct.unpack_from(">II", superblob, 12 + 8 * i) for i in range(count))
    assert magic == 0xFADE0CC0 and length == size and 0x10002 in slots
    assert ticket_desk.answers == [(expected, "ticket")]
    assert read_dmg_ticket(dmg) == ticket_desk.ticket_for(expected)
    assert record_name_of_dmg(after) == expected  # the CodeDirectory is untouched
    assert check_staple(dmg).ok


def test_check_outcomes_for_an_app(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    expected = record_name_of_app(app)
    assert check_staple(app).outcome is CheckOutcome.NOT_STAPLED
    write_app_ticket(app, b"garbage")
    assert check_staple(app).outcome is CheckOutcome.NOT_A_TICKET
    write_app_ticket(app, b"s8ch" + b"\x00" * 4 + b"\x07" * 20)
    assert check_staple(app).outcome is CheckOutcome.STALE
    write_app_ticket(app, TicketDesk(lambda: 0).ticket_for(expected))
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
    ticket_desk: TicketDesk, ticket_clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    original = pkg.read_bytes()
    accept(ticket_desk, ticket_key_for(pkg).record_name)
    ticket_clock.advance(60)

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the moment just before the rename
    with pytest.raises(OSError):
        await staple(pkg, ticket_desk.url, max_wait_seconds=0)  # type: ignore[attr-defined]
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
    emulator.tickets.issue([record_name_of_app(app)])
    assert await asyncio.to_thread(main, ["staple", "--max-wait", "0", str(app)]) == 0
    assert "stapled the ticket" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["staple", "--check", "--json", str(app)]) == 0
    assert '"outcome": "valid"' in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["staple", "--check", str(tmp_path / "a.zip")]) == 1
    assert "a zip cannot be stapled" in capsys.readouterr().err
