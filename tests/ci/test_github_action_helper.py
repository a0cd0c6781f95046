"""The Action's helper (service/ci/github_action.py) on its own: inputs, the key, the files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from service.ci.github_action import (
    ActionError,
    Run,
    Verdict,
    decode_key,
    mask_lines,
    parse_duration,
    write_outputs,
)
from tests.support.actions import parse_output_file

PEM = "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49\nAgEGCCqGSM49AwEHBHkw\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(("given", "seconds"), [
    ("5400", 5400.0), ("90m", 5400.0), ("1h30m", 5400.0), ("2h", 7200.0), ("45s", 45.0),
    (" 1.5h ", 5400.0), ("", None),
])
def test_durations(given: str, seconds: float | None) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["soon", "0", "-5", "1d", "h"])
def test_a_duration_that_is_none_is_one_line(given: str) -> None:
    with pytest.raises(ActionError, match="'timeout' input"):
        parse_duration(given)


def test_the_key_as_pem_base64_or_with_escaped_newlines() -> None:
    assert decode_key(PEM) == PEM
    assert decode_key(base64.b64encode(PEM.encode()).decode()) == PEM
    wrapped = base64.encodebytes(PEM.encode()).decode()  # `base64` wraps at 76 columns
    assert decode_key(wrapped) == PEM
    assert decode_key(PEM.strip().replace("\n", "\\n")) == PEM


def test_masks_cover_every_secret_line_and_never_the_armour() -> None:
    encoded = base64.b64encode(PEM.encode()).decode()
    masks = mask_lines(encoded, decode_key(encoded))
    assert masks == sorted({encoded, "MIGTAgEAMBMGByqGSM49", "AgEGCCqGSM49AwEHBHkw"})


def test_outputs_survive_newlines_in_a_value(tmp_path: Path) -> None:
    out = tmp_path / "output"
    write_outputs({"status": "Accepted", "log-path": "/a\nb", "empty": ""}, out)
    assert parse_output_file(out.read_text()) == {"status": "Accepted", "log-path": "/a\nb", "empty": ""}


def test_the_summary_fence_outlasts_backticks_in_the_report() -> None:
    report = "Game.zip: Invalid\nerror: ```` in a message"
    document = json.dumps({"status": "Invalid", "submission_id": "s", "report": report})
    run = Run(2, document, [], False)
    summary = Verdict(run, "/w/Game.zip").summary()
    assert "`````text\n" + report + "\n`````" in summary


def test_notaryds_own_timeout_is_a_timeout(tmp_path: Path) -> None:
    error = '{"error": {"code": "timeout", "message": "gave up after 60 s waiting", "fix": "re-run"}}'
    verdict = Verdict(Run(1, error, ["notaryd: gave up"], timed_out=True), "/w/Game.zip")
    assert verdict.status == "timeout"
    assert verdict.error is not None and verdict.error.startswith("gave up after 60 s waiting re-run")
