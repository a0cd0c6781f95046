"""systemd registration on Linux: a user unit (default) or a system unit (``--system``).

Choices, per systemd.service(5) and systemd.exec(5):

* ``Type=notify``: ``notaryd serve`` stays in the foreground and sends ``READY=1`` once the
  control API listens (service/daemon/readiness.py), so ``systemctl start`` returns when the
  daemon can be used, and fails when it cannot listen or a binary is missing.
* ``Restart=on-failure``: restart after crashes, signals and error exits, not after the exit 0
  that follows a drained SIGTERM (``systemctl kill -s TERM`` pauses the daemon).
* ``KillMode=mixed``: SIGTERM reaches the main process only, which drains within
  ``shutdown_grace``; ``TimeoutStopSec`` (grace + margin, >= 30 s) is the SIGKILL deadline.
* Hardening that needs no namespaces (seccomp: ``SystemCallFilter``, ``MemoryDenyWriteExecute``,
  ``RestrictAddressFamilies`` ...) goes into both units. Mount/namespace options
  (``ProtectSystem=strict``, ``ProtectHome=read-only``, ``PrivateTmp`` ...) go into the system
  unit only: in a user manager they depend on unprivileged user namespaces, which some
  distributions forbid, and a unit that cannot start protects nothing.
* ``MemoryDenyWriteExecute=yes`` is compatible: CPython, uvloop, aiohttp, cryptography and awscrt
  never map memory writable and executable (tests/deploy checks this under a seccomp filter
  with the same rule); libffi >= 3.4 uses static trampolines for ctypes/cffi callbacks.
* ``SystemCallErrorNumber=EPERM``: an unexpected system call fails with an error notaryd reports,
  instead of killing the daemon with SIGSYS mid-upload.
* No ``ProcSubset=pid``: prometheus_client's process collector reads ``/proc/stat``.
"""

from __future__ import annotations

from pathlib import Path

from service.install.plan import MakeDirectory, RemoveFile, Run, ServicePlan, WriteFile
from service.install.request import ServiceRequest

UNIT_NAME = "notaryd.service"
SYSTEMCTL = "systemctl"
SYSTEM_STATE_DIR = Path("/var/lib/notaryd")  # StateDirectory=notaryd in a system unit
OPEN_FILES_LIMIT = 8192

_SECCOMP_HARDENING = (
    "NoNewPrivileges=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "RestrictNamespaces=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    "SystemCallErrorNumber=EPERM",
    "UMask=0077",
)

_NAMESPACE_HARDENING = (
    "ProtectSystem=strict",
    # Builds live in home directories: read-only, except the allowed roots (ReadWritePaths=
    # below), where stapling writes the ticket into the build.
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "PrivateMounts=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "KeyringMode=private",
    "RemoveIPC=yes",
)


def unit_path(request: ServiceRequest) -> Path:
    if request.system:
        return Path("/etc/systemd/system") / UNIT_NAME
    return request.account.home / ".config" / "systemd" / "user" / UNIT_NAME


def state_dir(request: ServiceRequest) -> Path:
    if request.state_dir is not None:
        return request.state_dir
    if request.system:
        return SYSTEM_STATE_DIR
    # Settings.state_dir's default on Linux (platformdirs user_state_dir).
    return request.account.home / ".local" / "state" / "notaryd"


def _uses_state_directory(request: ServiceRequest) -> bool:
    """A system unit with the default state dir lets systemd create and chown /var/lib/notaryd."""
    return request.system and state_dir(request) == SYSTEM_STATE_DIR


def _quote(value: str, *, command: bool = False) -> str:
    """One word for ExecStart=/Environment=/ReadWritePaths= (systemd.syntax(7)).

    Specifiers make % special everywhere; ExecStart= also expands $VARIABLES.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if command:
        escaped = escaped.replace("$", "$$")
    plain = escaped == value and value != "" and not any(c.isspace() or c in "'\";" for c in value)
    return value if plain else f'"{escaped}"'


def render(request: ServiceRequest) -> str:
    """The unit file for this request."""
    state = state_dir(request)
    exec_start = " ".join(_quote(arg, command=True) for arg in (*request.program, "serve"))
    environment = [f"NOTARYD_STATE_DIR={state}", "PYTHONUNBUFFERED=1"]
    if request.config_file is not None:
        environment.append(f"NOTARYD_CONFIG={request.config_file}")
    if request.allowed_roots is not None:  # the sandbox below opens exactly these
        environment.append("NOTARYD_ALLOWED_ROOTS=" + ":".join(map(str, request.allowed_roots)))
    scope = "system" if request.system else "user"
    lines = [
        f"# notaryd {scope} unit, written by `notaryd service install"
        + (" --system`." if request.system else "`."),
        "# Control API and /metrics on NOTARYD_LISTEN (default 127.0.0.1:7780); logs go to the journal.",
        "[Unit]",
        "Description=notaryd: resumable notarisation of macOS builds",
    ]
    if request.system:
        # A user manager cannot order itself after system targets; it starts after login anyway.
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        f"ExecStart={exec_start}",
    ]
    if request.system:
        lines.append(f"User={request.account.name}")
    lines += [f"Environment={_quote(item)}" for item in environment]
    if _uses_state_directory(request):
        lines += ["StateDirectory=notaryd", "StateDirectoryMode=0700"]
    lines += [
        f"WorkingDirectory={str(state).replace('%', '%%')}",
        "Restart=on-failure",
        "RestartSec=5s",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"# The daemon drains in shutdown_grace ({request.shutdown_grace:g} s), then exits 0.",
        f"TimeoutStopSec={request.stop_timeout_seconds}s",
        f"LimitNOFILE={OPEN_FILES_LIMIT}",
        "",
        "# Hardening (see `systemd-analyze security notaryd.service`)",
        *_SECCOMP_HARDENING,
    ]
    if request.system:
        lines += list(_NAMESPACE_HARDENING)
        if not _uses_state_directory(request):
            lines.append(f"ReadWritePaths={_quote(str(state))}")
        # Stapling writes the ticket into the build, wherever the daemon may read builds from;
        # "-": a root that does not exist (/Volumes on Linux) is skipped, not a failed start.
        lines.append("ReadWritePaths=" + " ".join(
            _quote("-" + str(root)) for root in request.daemon_roots))
    lines += [
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if request.system else 'default.target'}",
    ]
    return "\n".join(lines) + "\n"


def _systemctl(request: ServiceRequest, *args: str) -> tuple[str, ...]:
    scope = () if request.system else ("--user",)
    return (SYSTEMCTL, *scope, *args)


def plan_install(request: ServiceRequest) -> ServicePlan:
    path = unit_path(request)
    state = state_dir(request)
    steps: list[MakeDirectory | WriteFile | Run] = []
    if not _uses_state_directory(request):
        # WorkingDirectory= and ReadWritePaths= must exist before the unit starts.
        steps.append(MakeDirectory(state, 0o700, request.account if request.system else None))
    steps += [
        WriteFile(path, render(request).encode(), 0o644),
        Run(_systemctl(request, "daemon-reload")),
        Run(
            _systemctl(request, "enable", "--now", UNIT_NAME),
            hint=f"see `{' '.join(_systemctl(request, 'status', UNIT_NAME))}` and "
            + (f"`journalctl -u {UNIT_NAME}`" if request.system else f"`journalctl --user -u {UNIT_NAME}`"),
        ),
    ]
    notes = [f"{UNIT_NAME} is enabled and started; state in {state}"]
    if request.system and state != request.account.home / ".local" / "state" / "notaryd":
        notes.append(
            f"clients on this machine find the daemon's token with NOTARYD_STATE_DIR={state} "
            f"(or state_dir in the config file of {request.account.name})"
        )
    if not request.system:
        notes.append(
            f"user services stop at logout unless lingering is on: `loginctl enable-linger {request.account.name}`"
        )
    return ServicePlan.changing(
        "install", "systemd", path, steps, system=request.system, notes=notes,
    )


def plan_uninstall(request: ServiceRequest) -> ServicePlan:
    path = unit_path(request)
    return ServicePlan.changing(
        "uninstall", "systemd", path, system=request.system,
        steps=(
            # Not installed or already disabled is fine: uninstall is idempotent.
            Run(_systemctl(request, "disable", "--now", UNIT_NAME), check=False),
            RemoveFile(path),
            Run(_systemctl(request, "daemon-reload")),
        ),
        notes=(f"{UNIT_NAME} is stopped and {path} removed; state in {state_dir(request)} is kept",),
    )


def plan_status(request: ServiceRequest) -> ServicePlan:
    return ServicePlan.asking("systemd", unit_path(request),
                              _systemctl(request, "status", "--no-pager", UNIT_NAME))
