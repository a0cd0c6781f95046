"""deploy/launchd and deploy/systemd hold exactly what `notaryd service install` renders for the
example machine (regenerate them with `python -m service.install.examples deploy`), and what
they hold is right: the fields that matter are written out below by hand, not taken from the
renderer. `systemd-analyze verify` checks the units in test_systemd_unit.py."""

from __future__ import annotations

import plistlib
import re
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
    # ProtectSystem=strict leaves the state directory systemd makes 0700 (/var/lib/ +
    # StateDirectory) writable, and the allowed roots (stapling writes the builds in place):
    # the service account's home and /Volumes by default, "-" so a missing one is no error
    assert service["StateDirectory"] == ["notaryd"] and service["StateDirectoryMode"] == ["0700"]
    assert service["ReadWritePaths"] == ["-/home/builder -/Volumes"]
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
