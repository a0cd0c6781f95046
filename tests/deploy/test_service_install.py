"""`notaryd service install|uninstall|status`: the files written and the exact commands run.

launchctl does not exist here, so a build Mac is described by an injected Host and the commands
are recorded by an injected runner; files are written for real under a temporary home.
"""

from __future__ import annotations

import argparse
import io
import os
import plistlib
import pwd
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from service.install import (
    Account,
    CommandResult,
    Host,
    ServiceRequest,
    ServiceSetupError,
    apply,
    plan_service,
    resolve_request,
)

NOTARYD = "/opt/notaryd/bin/notaryd"


class RecordingRunner:
    """Records argv; answers with the scripted result for a command's first two words."""

    def __init__(self, results: dict[tuple[str, str], CommandResult] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.results = results or {}

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(tuple(argv))
        words = [word for word in argv if not word.startswith("--")]
        return self.results.get((words[0], words[1]), CommandResult(0))


def present(tool: str) -> str | None:
    return f"/usr/bin/{tool}"


def mac(tmp_path: Path, *, euid: int = 501, sudo_user: str | None = None) -> Host:
    builder = Account("builder", 501, 20, tmp_path / "Users" / "builder")
    root = Account("root", 0, 0, tmp_path / "var" / "root")
    accounts = {"builder": builder, "root": root}
    return Host(
        platform="darwin",
        euid=euid,
        account=root if euid == 0 else builder,
        sudo_user=sudo_user,
        lookup=accounts.__getitem__,
        which=present,
    )


def linux(tmp_path: Path, *, euid: int = 1000) -> Host:
    builder = Account("builder", 1000, 1000, tmp_path / "home" / "builder")
    return Host(platform="linux", euid=euid, account=builder, which=present, lookup={"builder": builder}.__getitem__)


def request_for(
    host: Host, *, system: bool = False, grace: float = 15.0, run_as: str | None = None
) -> ServiceRequest:
    return resolve_request(
        host,
        system=system,
        run_as=run_as,
        program=(NOTARYD,),
        state_dir=None,
        config_file=None,
        shutdown_grace=grace,
    )


# --- launchd -------------------------------------------------------------------------------


def test_agent_install_writes_plist_and_bootstraps_into_gui_domain(tmp_path: Path) -> None:
    host = mac(tmp_path)
    plan = plan_service("install", request_for(host), host.platform)
    runner = RecordingRunner()

    assert apply(plan, runner=runner, euid=host.euid, which=host.which, out=io.StringIO()) == 0

    home = host.account.home
    plist_file = home / "Library/LaunchAgents/com.notaryd.agent.plist"
    assert runner.calls == [
        ("launchctl", "bootout", "gui/501/com.notaryd.agent"),
        ("launchctl", "enable", "gui/501/com.notaryd.agent"),
        ("launchctl", "bootstrap", "gui/501", str(plist_file)),
    ]
    plist = plistlib.loads(plist_file.read_bytes())
    state = home / "Library/Application Support/notaryd"
    log = home / "Library/Logs/notaryd/notaryd.log"
    assert plist["Label"] == "com.notaryd.agent"
    assert plist["ProgramArguments"] == [NOTARYD, "serve"]
    assert plist["RunAtLoad"] is True
    # exit 0 only follows a drained SIGTERM: restart after crashes and errors, not after that
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ExitTimeOut"] >= 15 + 10
    assert plist["ThrottleInterval"] >= 10
    assert plist["StandardErrorPath"] == plist["StandardOutPath"] == str(log)
    assert plist["EnvironmentVariables"]["NOTARYD_STATE_DIR"] == str(state)
    assert "UserName" not in plist
    assert stat.S_IMODE(plist_file.stat().st_mode) == 0o644  # launchd ignores writable plists
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert log.parent.is_dir()
    assert not list(plist_file.parent.glob(".*partial"))


def test_exit_timeout_follows_a_longer_shutdown_grace(tmp_path: Path) -> None:
    host = mac(tmp_path)
    plan = plan_service("install", request_for(host, grace=42.5), host.platform)
    plist = plistlib.loads(next(iter(plan.written.values())))
    assert plist["ExitTimeOut"] == 53


def test_daemon_install_plan_targets_system_domain_as_the_sudo_caller(tmp_path: Path) -> None:
    host = mac(tmp_path, euid=0, sudo_user="builder")
    plan = plan_service("install", request_for(host, system=True), host.platform)

    plist_file = Path("/Library/LaunchDaemons/com.notaryd.daemon.plist")
    assert plan.needs_root
    assert plan.commands == [
        ("launchctl", "bootout", "system/com.notaryd.daemon"),
        ("launchctl", "enable", "system/com.notaryd.daemon"),
        ("launchctl", "bootstrap", "system", str(plist_file)),
    ]
    plist = plistlib.loads(plan.written[plist_file])
    assert plist["Label"] == "com.notaryd.daemon"
    assert plist["UserName"] == "builder"
    # the daemon shares the build account's state dir, so that account's CLI finds the token
    assert plist["EnvironmentVariables"]["NOTARYD_STATE_DIR"] == str(
        tmp_path / "Users/builder/Library/Application Support/notaryd"
    )
    rendered = plan.render()
    assert "launchctl bootstrap system /Library/LaunchDaemons/com.notaryd.daemon.plist" in rendered
    assert "<string>com.notaryd.daemon</string>" in rendered


def test_daemon_install_without_root_changes_nothing(tmp_path: Path) -> None:
    host = mac(tmp_path)
    plan = plan_service("install", request_for(host, system=True, run_as="builder"), host.platform)
    runner = RecordingRunner()
    with pytest.raises(ServiceSetupError, match="re-run with sudo"):
        apply(plan, runner=runner, euid=501, which=host.which)
    assert runner.calls == []


def test_missing_launchctl_is_reported_before_anything_is_written(tmp_path: Path) -> None:
    host = mac(tmp_path)
    plan = plan_service("install", request_for(host), host.platform)
    with pytest.raises(ServiceSetupError, match=r"launchctl not found.*macOS"):
        apply(plan, runner=RecordingRunner(), euid=501, which=lambda tool: None)
    assert not (host.account.home / "Library").exists()


def test_failed_bootstrap_names_the_command_the_output_and_the_fix(tmp_path: Path) -> None:
    host = mac(tmp_path)
    plan = plan_service("install", request_for(host), host.platform)
    runner = RecordingRunner(
        {
            # not loaded yet: bootout fails, which install tolerates
            ("launchctl", "bootout"): CommandResult(3, "", "Boot-out failed: 3: No such process\n"),
            ("launchctl", "bootstrap"): CommandResult(
                125, "", "Bootstrap failed: 125: Domain does not support specified action\n"
            ),
        }
    )
    with pytest.raises(ServiceSetupError) as failure:
        apply(plan, runner=runner, euid=501, which=host.which)
    message = str(failure.value)
    said = ("launchctl bootstrap gui/501", "exit code 125", "Domain does not support specified action",
            "--system")
    assert [part for part in said if part not in message] == [], message
    assert "\n" not in message


def test_agent_uninstall_boots_out_then_removes_the_plist(tmp_path: Path) -> None:
    host = mac(tmp_path)
    request = request_for(host)
    apply(plan_service("install", request, "darwin"), runner=RecordingRunner(), euid=501, out=io.StringIO())
    plist_file = host.account.home / "Library/LaunchAgents/com.notaryd.agent.plist"
    assert plist_file.exists()

    runner = RecordingRunner()
    apply(plan_service("uninstall", request, "darwin"), runner=runner, euid=501, out=io.StringIO())
    assert runner.calls == [("launchctl", "bootout", "gui/501/com.notaryd.agent")]
    assert not plist_file.exists()
    # uninstall is idempotent and keeps the state
    apply(plan_service("uninstall", request, "darwin"), runner=runner, euid=501, out=io.StringIO())
    assert (host.account.home / "Library/Application Support/notaryd").is_dir()


def test_status_prints_launchctl_print_and_returns_its_exit_code(tmp_path: Path) -> None:
    host = mac(tmp_path)
    runner = RecordingRunner(
        {("launchctl", "print"): CommandResult(113, "", "Could not find service \"com.notaryd.agent\"\n")}
    )
    out = io.StringIO()
    code = apply(plan_service("status", request_for(host), "darwin"), runner=runner, out=out)
    assert code == 113
    assert runner.calls == [("launchctl", "print", "gui/501/com.notaryd.agent")]
    assert "Could not find service" in out.getvalue()


# --- systemd -------------------------------------------------------------------------------


def test_user_unit_install_writes_unit_and_enables_it(tmp_path: Path) -> None:
    host = linux(tmp_path)
    plan = plan_service("install", request_for(host), host.platform)
    runner = RecordingRunner()
    out = io.StringIO()

    apply(plan, runner=runner, euid=1000, which=host.which, out=out)

    unit_file = host.account.home / ".config/systemd/user/notaryd.service"
    assert runner.calls == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "--now", "notaryd.service"),
    ]
    unit = unit_file.read_text()
    state = host.account.home / ".local/state/notaryd"
    assert f"ExecStart={NOTARYD} serve\n" in unit
    assert f"Environment=NOTARYD_STATE_DIR={state}\n" in unit
    assert "Restart=on-failure\n" in unit
    assert "TimeoutStopSec=30s\n" in unit
    assert "WantedBy=default.target\n" in unit
    assert "User=" not in unit and "ProtectSystem" not in unit  # no namespaces in user units
    assert "MemoryDenyWriteExecute=yes\n" in unit
    assert state.is_dir()
    assert "enable-linger builder" in out.getvalue()


def test_system_unit_runs_as_the_build_account_with_full_hardening(tmp_path: Path) -> None:
    host = linux(tmp_path, euid=0)
    plan = plan_service("install", request_for(host, system=True, run_as="builder"), host.platform)

    unit_file = Path("/etc/systemd/system/notaryd.service")
    assert plan.needs_root
    assert plan.commands == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "notaryd.service"),
    ]
    unit = plan.written[unit_file].decode()
    for line in (
        "User=builder",
        "StateDirectory=notaryd",
        "Environment=NOTARYD_STATE_DIR=/var/lib/notaryd",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "KillSignal=SIGTERM",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in unit, line


def test_custom_state_dir_in_a_system_unit_becomes_a_writable_path(tmp_path: Path) -> None:
    host = linux(tmp_path, euid=0)
    request = resolve_request(
        host,
        system=True,
        run_as="builder",
        program=("/opt/my tools/notaryd",),
        state_dir=Path("/srv/notary state"),
        config_file=Path("/etc/notaryd/config.toml"),
        shutdown_grace=15.0,
    )
    unit = plan_service("install", request, "linux").written[Path("/etc/systemd/system/notaryd.service")].decode()
    assert 'ExecStart="/opt/my tools/notaryd" serve\n' in unit
    assert '\nReadWritePaths="/srv/notary state"\n' in unit
    assert '\nEnvironment="NOTARYD_STATE_DIR=/srv/notary state"\n' in unit
    assert "\nEnvironment=NOTARYD_CONFIG=/etc/notaryd/config.toml\n" in unit
    assert "StateDirectory=" not in unit


def test_user_unit_uninstall_disables_removes_and_reloads(tmp_path: Path) -> None:
    host = linux(tmp_path)
    request = request_for(host)
    apply(plan_service("install", request, "linux"), runner=RecordingRunner(), euid=1000, out=io.StringIO())
    runner = RecordingRunner({("systemctl", "disable"): CommandResult(1, "", "not loaded")})
    apply(plan_service("uninstall", request, "linux"), runner=runner, euid=1000, out=io.StringIO())
    assert runner.calls == [
        ("systemctl", "--user", "disable", "--now", "notaryd.service"),
        ("systemctl", "--user", "daemon-reload"),
    ]
    assert not (host.account.home / ".config/systemd/user/notaryd.service").exists()


# --- choosing the account --------------------------------------------------------------------


def test_system_service_needs_a_non_root_account(tmp_path: Path) -> None:
    with pytest.raises(ServiceSetupError, match="--user NAME"):
        request_for(mac(tmp_path, euid=0), system=True)


def test_per_user_service_refuses_root(tmp_path: Path) -> None:
    with pytest.raises(ServiceSetupError, match="run without sudo"):
        request_for(mac(tmp_path, euid=0))


def test_relative_executable_is_refused(tmp_path: Path) -> None:
    host = mac(tmp_path)
    with pytest.raises(ServiceSetupError, match="absolute path"):
        resolve_request(
            host, system=False, run_as=None, program=("notaryd",),
            state_dir=None, config_file=None, shutdown_grace=15.0,
        )


def test_unsupported_platform_is_a_clear_error(tmp_path: Path) -> None:
    request = request_for(mac(tmp_path))
    with pytest.raises(ServiceSetupError, match="not win32"):
        plan_service("install", request, "win32")


# --- the command line ------------------------------------------------------------------------


def test_cli_dry_run_prints_the_unit_and_commands_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.commands import install
    from service.settings import load_settings

    parser = argparse.ArgumentParser(prog="notaryd")
    install.register(parser.add_subparsers(dest="command", required=True))
    if os.geteuid() == 0:  # root may only install a system service, for some other account
        account = next(entry.pw_name for entry in pwd.getpwall() if entry.pw_uid != 0)
        argv = ["service", "install", "--dry-run", "--system", "--user", account]
    else:
        argv = ["service", "install", "--dry-run"]
    args = parser.parse_args([*argv, "--executable", sys.executable])
    settings = load_settings(environ={"NOTARYD_STATE_DIR": str(tmp_path / "state")})

    assert args.handler(args, settings) == 0

    printed = capsys.readouterr().out
    assert "dry run, nothing was changed" in printed
    assert f"ExecStart={sys.executable} serve" in printed
    assert "systemctl" in printed and "enable --now notaryd.service" in printed
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("action", ["status", "uninstall"])
@pytest.mark.parametrize("user", [[], ["--user", "builder"]])
def test_root_may_ask_about_or_remove_the_system_service_with_or_without_user(
    tmp_path: Path, action: str, user: list[str]
) -> None:
    host = mac(tmp_path, euid=0)  # root in a root shell: no SUDO_USER
    request = resolve_request(
        host, system=True, run_as=user[1] if user else None, program=(NOTARYD,), state_dir=None,
        config_file=None, shutdown_grace=15.0, needs_account=False,
    )
    plan = plan_service(action, request, host.platform)
    assert "system/com.notaryd.daemon" in plan.render()


@pytest.mark.parametrize("action", ["status", "uninstall"])
def test_cli_status_and_uninstall_accept_system_and_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    from service.commands import install
    from service.settings import load_settings

    parser = argparse.ArgumentParser(prog="notaryd")
    install.register(parser.add_subparsers(dest="command", required=True))
    account = next(entry.pw_name for entry in pwd.getpwall() if entry.pw_uid != 0)
    settings = load_settings(environ={"NOTARYD_STATE_DIR": str(tmp_path / "state")})
    for extra in ([], ["--user", account]):
        args = parser.parse_args(["service", action, "--system", "--dry-run", *extra])
        assert args.handler(args, settings) == 0
        assert "notaryd.service" in capsys.readouterr().out


def test_system_unit_opens_the_configured_allowed_roots_for_stapling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.commands import install
    from service.settings import load_settings

    parser = argparse.ArgumentParser(prog="notaryd")
    install.register(parser.add_subparsers(dest="command", required=True))
    account = next(entry.pw_name for entry in pwd.getpwall() if entry.pw_uid != 0)
    args = parser.parse_args(["service", "install", "--dry-run", "--system", "--user", account,
                              "--executable", sys.executable])
    settings = load_settings(environ={"NOTARYD_STATE_DIR": str(tmp_path / "state"),
                                      "NOTARYD_ALLOWED_ROOTS": "/srv/builds:/data/ci"})
    assert args.handler(args, settings) == 0
    unit = capsys.readouterr().out
    assert "ReadWritePaths=-/srv/builds -/data/ci\n" in unit
    assert "Environment=NOTARYD_ALLOWED_ROOTS=/srv/builds:/data/ci\n" in unit

    default = load_settings(environ={"NOTARYD_STATE_DIR": str(tmp_path / "state")})
    assert args.handler(args, default) == 0
    home = pwd.getpwnam(account).pw_dir
    assert f"ReadWritePaths=-{home} -/Volumes\n" in capsys.readouterr().out
