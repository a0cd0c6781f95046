"""deploy/launchd and deploy/systemd hold exactly what `notaryd service install` renders for the
example machine; regenerate them with `python -m service.install.examples deploy`."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from service.install.examples import example_files

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("relative", sorted(example_files()))
def test_committed_example_matches_the_renderer(relative: str) -> None:
    expected = example_files()[relative]
    committed = DEPLOY / relative
    assert committed.exists(), f"{committed} missing: run `python -m service.install.examples deploy`"
    assert committed.read_bytes() == expected, (
        f"{committed} differs from what `notaryd service install` writes: "
        "run `python -m service.install.examples deploy`"
    )


def test_launchd_examples_are_valid_property_lists() -> None:
    agent = plistlib.loads((DEPLOY / "launchd/com.notaryd.agent.plist").read_bytes())
    daemon = plistlib.loads((DEPLOY / "launchd/com.notaryd.daemon.plist").read_bytes())
    assert agent["ProgramArguments"] == daemon["ProgramArguments"] == ["/usr/local/bin/notaryd", "serve"]
    # launchd's own default ExitTimeOut is 20 s; the daemon's default grace is 15 s
    assert agent["ExitTimeOut"] >= 20 and daemon["ExitTimeOut"] >= 20
    assert daemon["UserName"] == "builder" and "UserName" not in agent
