"""The suite runs on a fresh home and a clean environment (tests/support/environment.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.environment import (
    HOME_DERIVED,
    RUN_HOME,
    is_isolated,
    isolate,
    release,
    skip_hides_a_gap,
)


def test_this_run_has_its_own_home_and_no_leaked_settings() -> None:
    assert is_isolated()
    root = Path(os.environ[RUN_HOME])
    for name in HOME_DERIVED:
        assert Path(os.environ[name]).is_relative_to(root), name
    assert Path.home().is_relative_to(root)
    leaked = [name for name in os.environ
              if name.startswith(("AWS_", "NOTARYD_")) and not name.startswith("NOTARYD_TEST_")]
    assert leaked == []


def test_isolate_gives_empty_folders_and_drops_what_a_shell_carries() -> None:
    environ = {
        "HOME": "/root", "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "NOTARYD_KEY_ID": "ABC", "https_proxy": "http://proxy:3128", "PATH": "/usr/bin",
        "NOTARYD_TEST_STAPLED": "/builds/Game.app",
    }
    root = isolate(environ)
    try:
        assert root is not None
        assert environ["HOME"] == str(root / "home")
        assert environ["MPLCONFIGDIR"] == str(root / "home/.config/matplotlib")
        for name in HOME_DERIVED:
            assert Path(environ[name]).is_dir(), name
        assert [path for path in root.rglob("*") if not path.is_dir()] == []  # no file yet
        assert (root / "runtime").stat().st_mode & 0o777 == 0o700
        assert "AWS_CA_BUNDLE" not in environ and "NOTARYD_KEY_ID" not in environ
        assert "https_proxy" not in environ
        assert environ["PATH"] == "/usr/bin"
        assert environ["NOTARYD_TEST_STAPLED"] == "/builds/Game.app"
        # An xdist worker inherits the controller's root and keeps it.
        worker = dict(environ, AWS_PROFILE="dev")
        assert isolate(worker) is None
        assert worker["HOME"] == environ["HOME"] and "AWS_PROFILE" not in worker
    finally:
        release(root)
    assert root is not None and not root.exists()


@pytest.mark.parametrize(("reason", "ci", "fails"), [
    ("root reads any file; permission denial cannot be produced", "true", True),
    ("needs unshare (mount namespaces)", "true", True),
    ("needs macOS, xcrun stapler", "true", False),
    ("systemd units are Linux-only", "true", False),
    ("root reads any file", "", False),
])
def test_on_ci_only_another_platform_may_skip(reason: str, ci: str, fails: bool) -> None:
    assert skip_hides_a_gap(reason, {"CI": ci}) is fails
