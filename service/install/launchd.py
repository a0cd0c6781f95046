"""launchd registration on macOS: a LaunchAgent (per user) or a LaunchDaemon (``--system``).

Choices, per launchd.plist(5):

* ``KeepAlive = {SuccessfulExit: false}``: launchd restarts notaryd after a crash, a SIGKILL
  (jetsam) or an error exit, but not after a clean exit. notaryd exits 0 only after SIGTERM
  has drained it, so ``launchctl kill SIGTERM <service>`` pauses it until ``launchctl
  kickstart``, while bootout/uninstall stop it for good either way.
* ``ExitTimeOut`` is the shutdown grace plus a margin (>= 30 s) so launchd never SIGKILLs a
  daemon that is still committing state (launchd's default is 20 s).
* ``ThrottleInterval = 30``: a daemon that cannot start (bad config) retries twice a minute
  rather than every 10 s, without flooding the log.
* ``ProcessType = Standard``, no ``LowPriorityIO`` and no ``Nice``: notarisation sits on the
  release's critical path, and Background throttling would slow the read of a 25 GB archive.
* ``SoftResourceLimits.NumberOfFiles = 4096``: launchd jobs start with a soft limit of 256 open
  files; parts in flight, their sockets and SQLite must fit.
* A LaunchDaemon runs as the build account (``UserName``) so it can read the builds and shares
  that account's state directory (and API token file) with the ``notaryd`` CLI.
"""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

from service.install.plan import MakeDirectory, RemoveFile, Run, ServicePlan, WriteFile
from service.install.request import ServiceRequest

AGENT_LABEL = "com.notaryd.agent"
DAEMON_LABEL = "com.notaryd.daemon"
LAUNCHCTL = "launchctl"
THROTTLE_INTERVAL_SECONDS = 30
OPEN_FILES_SOFT_LIMIT = 4096
# launchd passes no PATH of its own beyond this; notaryd calls only system tools (codesign, ditto).
LAUNCHD_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def label(request: ServiceRequest) -> str:
    return DAEMON_LABEL if request.system else AGENT_LABEL


def plist_path(request: ServiceRequest) -> Path:
    if request.system:
        return Path("/Library/LaunchDaemons") / f"{DAEMON_LABEL}.plist"
    return request.account.home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"


def state_dir(request: ServiceRequest) -> Path:
    # The same default as Settings.state_dir for that account on macOS.
    if request.state_dir is not None:
        return request.state_dir
    return request.account.home / "Library" / "Application Support" / "notaryd"


def log_dir(request: ServiceRequest) -> Path:
    return request.account.home / "Library" / "Logs" / "notaryd"


def log_file(request: ServiceRequest) -> Path:
    return log_dir(request) / "notaryd.log"


def domain_target(request: ServiceRequest) -> str:
    """``gui/<uid>`` for an agent of the logged-in user, ``system`` for a daemon."""
    return "system" if request.system else f"gui/{request.account.uid}"


def service_target(request: ServiceRequest) -> str:
    return f"{domain_target(request)}/{label(request)}"


def render(request: ServiceRequest) -> dict[str, Any]:
    """The property list (as plistlib values) for this request."""
    environment = {
        "NOTARYD_STATE_DIR": str(state_dir(request)),
        "PATH": LAUNCHD_PATH,
        "PYTHONUNBUFFERED": "1",
    }
    if request.config_file is not None:
        environment["NOTARYD_CONFIG"] = str(request.config_file)
    plist: dict[str, Any] = {
        "Label": label(request),
        "ProgramArguments": [*request.program, "serve"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_INTERVAL_SECONDS,
        "ExitTimeOut": request.stop_timeout_seconds,
        "ProcessType": "Standard",
        "WorkingDirectory": str(state_dir(request)),
        "StandardOutPath": str(log_file(request)),
        "StandardErrorPath": str(log_file(request)),
        "EnvironmentVariables": environment,
        "SoftResourceLimits": {"NumberOfFiles": OPEN_FILES_SOFT_LIMIT},
        "Umask": 0o077,  # the state dir holds the API token and upload state
    }
    if request.system:
        plist["UserName"] = request.account.name
    return plist


def render_bytes(request: ServiceRequest) -> bytes:
    return plistlib.dumps(render(request), fmt=plistlib.FMT_XML, sort_keys=True)


def plan_install(request: ServiceRequest) -> ServicePlan:
    owner = request.account if request.system else None
    target = service_target(request)
    path = plist_path(request)
    return ServicePlan.changing(
        "install", "launchd", path, system=request.system,
        steps=(
            MakeDirectory(state_dir(request), 0o700, owner),
            MakeDirectory(log_dir(request), 0o755, owner),
            # launchd ignores a plist that is group/world-writable or (daemons) not owned by root.
            WriteFile(path, render_bytes(request), 0o644),
            # Re-installing replaces a loaded job: unload it first (fails harmlessly if absent).
            Run((LAUNCHCTL, "bootout", target), check=False),
            # A job once disabled with `launchctl disable` refuses to bootstrap until enabled.
            Run((LAUNCHCTL, "enable", target)),
            Run(
                (LAUNCHCTL, "bootstrap", domain_target(request), str(path)),
                hint=_bootstrap_hint(request),
            ),
        ),
        notes=(
            f"{label(request)} is loaded and starts at "
            + ("boot" if request.system else "login")
            + f"; logs: {log_file(request)}; check with `notaryd service status"
            + (" --system`" if request.system else "`"),
        ),
    )


def plan_uninstall(request: ServiceRequest) -> ServicePlan:
    path = plist_path(request)
    return ServicePlan.changing(
        "uninstall", "launchd", path, system=request.system,
        steps=(
            # bootout sends SIGTERM and waits up to ExitTimeOut; not loaded is not an error.
            Run((LAUNCHCTL, "bootout", service_target(request)), check=False),
            RemoveFile(path),
        ),
        notes=(f"{label(request)} is unloaded and {path} removed; state in {state_dir(request)} is kept",),
    )


def plan_status(request: ServiceRequest) -> ServicePlan:
    return ServicePlan.asking("launchd", plist_path(request), (LAUNCHCTL, "print", service_target(request)))


def _bootstrap_hint(request: ServiceRequest) -> str:
    if request.system:
        return f"check the plist with `plutil -lint {plist_path(request)}`"
    return (
        "a LaunchAgent needs the user logged in to the desktop (gui domain); on a headless "
        "build Mac use `sudo notaryd service install --system`"
    )
