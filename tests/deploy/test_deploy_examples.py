"""deploy/launchd and deploy/systemd hold exactly what `notaryd service install` renders for the
example machine; regenerate them with `python -m service.install.examples deploy`."""

from __future__ import annotations

import plistlib
import re
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


def test_documents_the_deploy_files_point_at_are_in_the_repository() -> None:
    """Alert rules and the dashboard name where their metric names are defined: a file that
    ships with them, with the section they name."""
    repository = DEPLOY.parent
    for shipped in sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".md"):
        text = shipped.read_text()
        for named in re.findall(r"[\w./-]+\.md\b", text):
            assert (repository / named).is_file() or (shipped.parent / named).is_file(), (
                f"{shipped.relative_to(repository)} names {named}, which is not in the repository")
        for section in re.findall(r'README\.md, \\?"([^"\\]+)\\?"', text):
            headings = re.findall(r"^#+ (.+)$", (repository / "README.md").read_text(), re.MULTILINE)
            assert section in headings, f"{shipped.name}: README.md has no section {section!r}"
