"""``notaryd service install|uninstall|status``: launchd (macOS) / systemd (Linux) registration.

All three take the same options so that ``uninstall``/``status`` find what ``install`` wrote.
``--dry-run`` prints the file and the exact commands without changing anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service import exit_codes
from service.commands import add_command, add_group

if TYPE_CHECKING:
    from service.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    actions = add_group(
        subparsers, "service", dest="service_action",
        help="register notaryd serve with launchd (macOS) or systemd (Linux)",
        description="Register, remove or inspect notaryd as a background service.",
    )
    helps = {
        "install": "write the plist/unit for this machine and start the service",
        "uninstall": "stop the service and remove its plist/unit (state is kept)",
        "status": "show the service manager's view (launchctl print / systemctl status)",
    }
    for action, text in helps.items():
        parser = add_command(actions, action, _handle, help=text, description=text)
        parser.add_argument(
            "--system",
            action="store_true",
            help="LaunchDaemon / system unit started at boot (needs sudo) instead of a per-user service",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print the file and commands; change nothing"
        )
        parser.add_argument(
            "--user",
            dest="run_as",
            metavar="NAME",
            help="with --system: the account the daemon runs as (default: whoever ran sudo)",
        )
        if action == "install":
            parser.add_argument(
                "--executable",
                type=Path,
                metavar="PATH",
                help="absolute path of notaryd (default: this installation's notaryd)",
            )
            parser.add_argument(
                "--state-dir",
                type=Path,
                metavar="DIR",
                help="state directory of the service (default: the account's notaryd state dir)",
            )


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    from service.install import Host, apply, default_program, plan_service, resolve_request

    host = Host.current()
    system: bool = args.system
    executable: Path | None = getattr(args, "executable", None)
    explicit_state_dir: Path | None = getattr(args, "state_dir", None)
    # A per-user service shares the CLI's state dir (and so its API token file); a system one
    # uses the manager's default unless told otherwise.
    state_dir = explicit_state_dir or (None if system else settings.state_dir)
    request = resolve_request(
        host,
        system=system,
        run_as=args.run_as,
        needs_account=args.service_action == "install",
        program=(str(executable),) if executable is not None else default_program(host.which),
        state_dir=state_dir,
        config_file=_config_file(args, settings, system=system),
        shutdown_grace=settings.shutdown_grace,
        allowed_roots=_configured_roots(settings),
    )
    plan = plan_service(args.service_action, request, host.platform)
    if args.dry_run:
        print(plan.render(), end="")
        return exit_codes.SUCCESS
    return apply(plan, euid=host.euid, which=host.which)


def _configured_roots(settings: Settings) -> tuple[Path, ...] | None:
    """NOTARYD_ALLOWED_ROOTS when set; None for the default, which is the service account's
    (under sudo this process's default would be root's home)."""
    from service.settings import default_allowed_roots

    return None if settings.allowed_roots == default_allowed_roots() else settings.allowed_roots


def _config_file(args: argparse.Namespace, settings: Settings, *, system: bool) -> Path | None:
    """The config file the service should read, exported as NOTARYD_CONFIG.

    Under sudo the default config path is root's, which the service account cannot read: a
    system service then uses its own account's default unless ``notaryd --config FILE`` says so.
    """
    explicit: Path | None = getattr(args, "config", None)
    if explicit is not None:
        return explicit
    return None if system else settings.config_file
