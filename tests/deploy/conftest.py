"""Fixtures for the deploy/ checks: the Debian tools they drive, and the daemon's metrics."""

from __future__ import annotations

import re
import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make system-deps` (Debian package prometheus)")
    return found


@pytest.fixture(scope="session")
def daemon_metric_names() -> set[str]:
    """Every series name the real DaemonMetrics exposes (from its # TYPE lines)."""
    from types import SimpleNamespace

    from service.daemon.metrics import DaemonMetrics
    from service.fleet.wiring import fleet_gauges

    metrics = DaemonMetrics()
    metrics.registry.register(fleet_gauges(SimpleNamespace(queue_depth=0, live_workers=0)))  # a fleet worker's
    exposition = metrics.render().decode()
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.MULTILINE):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names
