"""Text from outside never reaches a terminal raw (issue 18, item 7): job paths in `notaryd jobs`
and `notaryd job`, texts a server sends (the ticket lookup's ``reason``, the daemon's ``error``),
notary log reports and the daemon's log show control characters escaped."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from service.emulator.sample_app import make_sample_app
from tests.support.daemon import Daemon, notaryd
from tests.support.http_servers import Answer, scripted_server
from uploader.notary.logreport import parse_log, render_report
from uploader.terminal import printable

# retitle the terminal, clear the screen, reverse the text that follows
HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e"
RAW = ("\x1b", "\x07", "\u202e")


def assert_escaped(text: str) -> None:
    assert not any(c in text for c in RAW), repr(text)


def test_printable_escapes_controls_bidi_overrides_and_undecodable_bytes() -> None:
    shown = printable(f"a{HOSTILE}b\r\n\udcff")
    assert shown == "a\\x1b]0;owned\\x07\\x1b[2J\\u202eb\\x0d\\x0a\\udcff"
    assert printable("line one\nline two\x1b", multiline=True) == "line one\nline two\\x1b"
    assert printable("Zoë/日本.app") == "Zoë/日本.app"  # printable text stays as it is


def test_a_notary_log_report_shows_server_text_escaped() -> None:
    report = parse_log({
        "jobId": "x", "status": "Invalid", "statusSummary": f"Archive contains {HOSTILE}errors.",
        "archiveFilename": f"{HOSTILE}.zip",
        "issues": [{"severity": "error", "path": f"App.zip/{HOSTILE}/bin",
                    "message": f"The binary is not signed.{HOSTILE}", "architecture": "arm64"}],
    })
    text = render_report(report)
    assert_escaped(text)
    assert "App.zip/\\x1b]0;owned\\x07" in text


def client_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTARYD_")}
    (root / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(root / "home"), "NOTARYD_CONFIG": "", **extra}


@pytest.mark.process
def test_job_paths_errors_and_the_daemon_log_are_escaped(daemon: Daemon) -> None:
    archive = daemon.archive(f"boom-{HOSTILE}.zip")  # the fake pipeline fails it, naming it
    job = daemon.submit(archive)
    daemon.wait_for(job["id"], "failed")
    listed = daemon.cli("jobs")
    described = daemon.cli("job", job["id"])
    for result in (listed, described):
        assert result.returncode == 0, result.stderr
        assert_escaped(result.stdout + result.stderr)
    assert f"boom-{printable(HOSTILE)}.zip" in described.stdout  # path line and error line
    assert described.stdout.count("\\x1b]0;owned") == 2
    log = daemon.log()
    assert "\\x1b]0;owned" in log
    assert_escaped(log)


@pytest.mark.process
def test_the_ticket_lookups_reason_is_shown_escaped(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    refusal = {"records": [{"serverErrorCode": "ACCESS_DENIED", "reason": f"denied{HOSTILE}"}]}
    with scripted_server(lambda _: Answer(200, {"Content-Type": "application/json"},
                                          json.dumps(refusal).encode())) as lookup:
        result = subprocess.run(
            [notaryd(), "staple", str(app)], capture_output=True, text=True, timeout=60,
            env=client_env(tmp_path, NOTARYD_TICKET_URL=lookup.url("/lookup")))
    assert result.returncode == 1
    assert "ACCESS_DENIED (denied\\x1b]0;owned" in result.stderr
    assert_escaped(result.stderr)


@pytest.mark.process
def test_the_daemons_error_text_is_shown_escaped(tmp_path: Path) -> None:
    """Whatever answers at NOTARYD_LISTEN (another program, another version) is outside."""
    refusal = json.dumps({"error": f"no{HOSTILE}", "hint": f"try{HOSTILE}"}).encode()
    with scripted_server(lambda _: Answer(400, {"Content-Type": "application/json"},
                                          refusal)) as impostor:
        result = subprocess.run(
            [notaryd(), "jobs"], capture_output=True, text=True, timeout=60,
            env=client_env(tmp_path, NOTARYD_LISTEN=f"127.0.0.1:{impostor.port}",
                           NOTARYD_API_TOKEN="t0ken-for-the-test"))
    assert result.returncode == 1
    assert "no\\x1b]0;owned" in result.stderr and "try\\x1b]0;owned" in result.stderr
    assert_escaped(result.stderr)
