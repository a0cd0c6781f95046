"""Fixtures for the preflight tests (one generated certificate hierarchy per session), and the
report of what the hostile inputs cost a real `notaryd preflight` process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_inputs import HOSTILE_FIGURES
from preflight_builders import Pki, Signing, make_pki
from seal_builders import CodeSigning

from uploader.preflight import PreflightReport, run_preflight


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def signing(pki: Pki) -> CodeSigning:
    """A Developer ID code signing for the seal builders."""
    return CodeSigning(identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert])


@pytest.fixture
def developer_id(pki: Pki) -> Callable[..., Signing]:
    """A correct Developer ID signing (runtime, timestamp), with overrides."""

    def make(**overrides: object) -> Signing:
        signing = Signing(
            identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert, pki.root.cert]
        )
        for key, value in overrides.items():
            setattr(signing, key, value)
        return signing

    return make


@pytest.fixture
def preflight(pki: Pki) -> Callable[[Path], PreflightReport]:
    """run_preflight trusting the generated root instead of Apple Root CA."""

    def run(path: Path) -> PreflightReport:
        return run_preflight(path, trust_anchors=[pki.root.cert])

    return run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures test_preflight_hostile_cli.py measured (size, exit, wall time, peak RSS, temp
    space), one line per hostile input; recorded as test properties, so xdist workers' runs
    reach this controller too."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == HOSTILE_FIGURES
    ]
    if lines:
        terminalreporter.write_sep("-", "hostile preflight inputs: what each run cost")
        for line in sorted(lines):
            terminalreporter.write_line(line)
