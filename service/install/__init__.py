"""Registering ``notaryd serve`` with the machine's service manager.

macOS: a launchd LaunchAgent (``gui/<uid>``) or, with ``system=True``, a LaunchDaemon.
Linux: a systemd user unit or, with ``system=True``, a system unit.

Usage::

    host = Host.current()
    request = resolve_request(host, system=False, run_as=None, program=default_program(), ...)
    plan = plan_service("install", request, host.platform)
    print(plan.render())          # --dry-run
    apply(plan, runner=...)       # or do it

The deploy/ examples are these renderings for an example machine (``service.install.examples``).
"""

from __future__ import annotations

from service.install import launchd, systemd
from service.install.plan import (
    Account,
    CommandResult,
    CommandRunner,
    ServicePlan,
    ServiceSetupError,
    apply,
    run_subprocess,
)
from service.install.request import Host, ServiceRequest, default_program, resolve_request

ACTIONS = ("install", "uninstall", "status")

__all__ = [
    "ACTIONS",
    "Account",
    "CommandResult",
    "CommandRunner",
    "Host",
    "ServicePlan",
    "ServiceRequest",
    "ServiceSetupError",
    "apply",
    "default_program",
    "plan_service",
    "resolve_request",
    "run_subprocess",
]


def plan_service(action: str, request: ServiceRequest, platform: str) -> ServicePlan:
    """The plan for ``action`` on ``platform`` (a ``sys.platform`` value)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown service action {action!r}")
    if platform == "darwin":
        planners = {
            "install": launchd.plan_install,
            "uninstall": launchd.plan_uninstall,
            "status": launchd.plan_status,
        }
    elif platform.startswith("linux"):
        planners = {
            "install": systemd.plan_install,
            "uninstall": systemd.plan_uninstall,
            "status": systemd.plan_status,
        }
    else:
        raise ServiceSetupError(
            f"`notaryd service` supports macOS (launchd) and Linux (systemd), not {platform}; "
            "run `notaryd serve` under your own supervisor"
        )
    return planners[action](request)
