"""Fixtures for the preflight tests: one generated certificate hierarchy per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_builders import Pki, Signing, make_pki

from uploader.preflight import PreflightReport, run_preflight


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


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
