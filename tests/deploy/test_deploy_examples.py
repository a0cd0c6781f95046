"""deploy/launchd and deploy/systemd hold exactly what `notaryd service install` renders for the
example machine (regenerate them with `python -m service.install.examples deploy`), and what
they hold is right: the fields that matter are written out below by hand, not taken from the
renderer. `systemd-analyze verify` checks the units in test_systemd_unit.py."""

from __future__ import annotations

import plistlib
from collections import defaultdict
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


def unit(relative: str) -> dict[str, dict[str, list[str]]]:
    """A committed unit as section -> directive -> values (a directive may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for line in (DEPLOY / relative).read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            sections[section][key].append(value)
    return sections


# What each unit must say, whatever renders it: how it runs, restarts and stops, and how it is
# confined. One value each unless a list is given.
RUNS = {
    "Type": ["notify"], "ExecStart": ["/usr/local/bin/notaryd serve"], "Restart": ["on-failure"],
    "RestartSec": ["5s"], "KillSignal": ["SIGTERM"], "KillMode": ["mixed"], "TimeoutStopSec": ["30s"],
    "LimitNOFILE": ["8192"], "UMask": ["0077"],
}
HARDENING = {
    "NoNewPrivileges": ["yes"], "LockPersonality": ["yes"], "MemoryDenyWriteExecute": ["yes"],
    "RestrictRealtime": ["yes"], "RestrictSUIDSGID": ["yes"], "RestrictNamespaces": ["yes"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"], "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"], "SystemCallErrorNumber": ["EPERM"],
}
SYSTEM_ONLY_HARDENING = {
    "ProtectSystem": ["strict"], "ProtectHome": ["read-only"], "PrivateTmp": ["yes"], "PrivateDevices": ["yes"],
    "ProtectKernelTunables": ["yes"], "ProtectKernelModules": ["yes"], "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"], "ProtectClock": ["yes"], "ProtectHostname": ["yes"],
    "ProtectProc": ["invisible"], "PrivateMounts": ["yes"], "CapabilityBoundingSet": [""],
    "AmbientCapabilities": [""], "KeyringMode": ["private"], "RemoveIPC": ["yes"],
}


def test_system_unit_runs_confined_as_its_user_writing_only_its_state() -> None:
    sections = unit("systemd/notaryd.service")
    service = sections["Service"]
    assert {key: service[key] for key in (*RUNS, *HARDENING, *SYSTEM_ONLY_HARDENING)} == {
        **RUNS, **HARDENING, **SYSTEM_ONLY_HARDENING}
    assert service["User"] == ["builder"]
    # ProtectSystem=strict leaves one writable place, the state directory systemd makes 0700
    # (/var/lib/ + StateDirectory); no ReadWritePaths opens another
    assert service["StateDirectory"] == ["notaryd"] and service["StateDirectoryMode"] == ["0700"]
    assert "ReadWritePaths" not in service
    assert "NOTARYD_STATE_DIR=/var/lib/notaryd" in service["Environment"]
    assert service["WorkingDirectory"] == ["/var/lib/notaryd"]
    assert sections["Unit"]["After"] == sections["Unit"]["Wants"] == ["network-online.target"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_user_unit_runs_confined_as_the_user_in_the_users_state_dir() -> None:
    sections = unit("systemd/user/notaryd.service")
    service = sections["Service"]
    assert {key: service[key] for key in (*RUNS, *HARDENING)} == {**RUNS, **HARDENING}
    # a user manager cannot set up mount namespaces or switch users: none of that is asked for
    assert not set(service) & {*SYSTEM_ONLY_HARDENING, "User", "StateDirectory", "ReadWritePaths"}
    assert "NOTARYD_STATE_DIR=/home/builder/.local/state/notaryd" in service["Environment"]
    assert service["WorkingDirectory"] == ["/home/builder/.local/state/notaryd"]
    assert sections["Install"]["WantedBy"] == ["default.target"]


STATE = "/Users/builder/Library/Application Support/notaryd"
LOG = "/Users/builder/Library/Logs/notaryd/notaryd.log"


@pytest.mark.parametrize(("name", "user"), [("agent", None), ("daemon", "builder")])
def test_launchd_examples_keep_the_daemon_alive_with_its_limits(name: str, user: str | None) -> None:
    plist = plistlib.loads((DEPLOY / f"launchd/com.notaryd.{name}.plist").read_bytes())
    assert plist == {
        "Label": f"com.notaryd.{name}",
        "ProgramArguments": ["/usr/local/bin/notaryd", "serve"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restarted after a crash, not after a clean stop
        "ThrottleInterval": 30,
        # launchd's own default ExitTimeOut is 20 s; the daemon's default grace is 15 s
        "ExitTimeOut": 30,
        "ProcessType": "Standard",
        "Umask": 0o077,
        "SoftResourceLimits": {"NumberOfFiles": 4096},
        "EnvironmentVariables": {
            "NOTARYD_STATE_DIR": STATE, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONUNBUFFERED": "1",
        },
        "WorkingDirectory": STATE,
        "StandardOutPath": LOG,
        "StandardErrorPath": LOG,
        **({"UserName": user} if user else {}),
    }
