"""On a Mac with Xcode: Apple's own `stapler` and `notaryd staple --check` agree on real artifacts.

Test-only and skipped elsewhere: it needs ``xcrun stapler`` and an artifact Apple notarised
(``NOTARYD_TEST_STAPLED`` = a .app, .dmg or .pkg stapled by ``xcrun stapler staple``), because
only Apple signs real tickets. It checks the assumption ``--check`` rests on: a real ticket names
the cdhash of the artifact's current signature.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uploader.staple.check import check_staple

STAPLED = os.environ.get("NOTARYD_TEST_STAPLED")

pytestmark = pytest.mark.skipif(
    sys.platform != "darwin" or shutil.which("xcrun") is None or not STAPLED,
    reason="needs macOS, xcrun stapler and NOTARYD_TEST_STAPLED (an artifact Apple notarised)",
)


def test_stapler_and_check_agree_on_a_real_stapled_artifact() -> None:
    assert STAPLED is not None
    path = Path(STAPLED)
    validated = subprocess.run(["xcrun", "stapler", "validate", str(path)],
                               capture_output=True, text=True, timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert check_staple(path).ok
