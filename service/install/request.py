"""What the operator asked for (:class:`ServiceRequest`) on which machine (:class:`Host`).

The host is injected so tests can describe a build Mac (``platform="darwin"``, uid 501) while
running on Linux; :meth:`Host.current` describes the real machine.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.install.plan import Account, ServiceSetupError

# launchd and systemd must wait longer than the daemon's own drain (Settings.shutdown_grace)
# before they SIGKILL it: the grace covers in-flight parts, the margin covers committing state.
STOP_MARGIN_SECONDS = 10
MIN_STOP_TIMEOUT_SECONDS = 30


def lookup_account(name: str) -> Account:
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceSetupError(f"--user {name}: no such account on this machine") from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _account_by_uid(uid: int) -> Account:
    import pwd

    entry = pwd.getpwuid(uid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


@dataclass(frozen=True)
class Host:
    platform: str  # sys.platform: "darwin" or "linux"
    euid: int
    account: Account  # the effective user (root under sudo)
    sudo_user: str | None = None  # who ran sudo: the default account of a system service
    lookup: Callable[[str], Account] = field(default=lookup_account)
    which: Callable[[str], str | None] = field(default=shutil.which)

    @classmethod
    def current(cls) -> Host:
        euid = os.geteuid()
        return cls(
            platform=sys.platform,
            euid=euid,
            account=_account_by_uid(euid),
            sudo_user=os.environ.get("SUDO_USER") or None,
        )


@dataclass(frozen=True)
class ServiceRequest:
    """The options of ``notaryd service install`` after defaults were filled in."""

    system: bool  # LaunchDaemon / system unit instead of LaunchAgent / user unit
    program: tuple[str, ...]  # the argv that starts notaryd; " serve" is appended
    account: Account  # the account the daemon runs as
    state_dir: Path | None  # None: the manager's default (see launchd.py / systemd.py)
    config_file: Path | None  # exported as NOTARYD_CONFIG when given
    shutdown_grace: float  # the daemon's drain on SIGTERM (Settings.shutdown_grace)
    # NOTARYD_ALLOWED_ROOTS as configured; None: the daemon's default for the account
    allowed_roots: tuple[Path, ...] | None = None

    @property
    def daemon_roots(self) -> tuple[Path, ...]:
        """Where the daemon reads builds and staples them (Settings.allowed_roots' default)."""
        if self.allowed_roots is not None:
            return self.allowed_roots
        return (self.account.home, Path("/Volumes"))

    @property
    def stop_timeout_seconds(self) -> int:
        return max(MIN_STOP_TIMEOUT_SECONDS, math.ceil(self.shutdown_grace) + STOP_MARGIN_SECONDS)


def default_program(which: Callable[[str], str | None] = shutil.which) -> tuple[str, ...]:
    """The absolute command that starts this very installation of notaryd.

    The console script next to the running interpreter wins (a virtualenv that is not on the
    service manager's PATH); then ``notaryd`` on PATH; then ``python -m service``.
    """
    beside_python = Path(sys.executable).parent / "notaryd"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return (str(beside_python.absolute()),)
    found = which("notaryd")
    if found:
        return (str(Path(found).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "service")


def resolve_request(
    host: Host,
    *,
    system: bool,
    run_as: str | None,
    program: tuple[str, ...],
    state_dir: Path | None,
    config_file: Path | None,
    shutdown_grace: float,
    needs_account: bool = True,
    allowed_roots: tuple[Path, ...] | None = None,
) -> ServiceRequest:
    """Picks the account: yourself for a per-user service, the sudo caller for a system one.

    ``needs_account=False`` (status, uninstall): a system service is found by its file and
    label alone, so root may ask without naming the account it runs as.
    """
    if system:
        name = run_as or host.sudo_user
        if not needs_account and (name is None or name == "root"):
            name = host.account.name
        elif name is None or name == "root":
            raise ServiceSetupError(
                "--system needs the account the daemon runs as (it must read the builds): "
                "run `sudo notaryd service install --system` from that account, or add --user NAME"
            )
        account = host.lookup(name)
    else:
        if run_as is not None and run_as != host.account.name:
            raise ServiceSetupError(
                f"--user {run_as} applies to --system services only; a per-user service runs as "
                f"{host.account.name}: run the command as {run_as} instead"
            )
        if host.euid == 0:
            raise ServiceSetupError(
                "a per-user service is registered by that user, not root: run without sudo, "
                "or add --system for a service that starts at boot"
            )
        account = host.account
    if not program or not Path(program[0]).is_absolute():
        raise ServiceSetupError(
            f"--executable {program[0] if program else ''!r}: give the absolute path of notaryd "
            "(launchd and systemd do not search PATH the way a shell does)"
        )
    return ServiceRequest(
        system=system,
        program=program,
        account=account,
        state_dir=state_dir.absolute() if state_dir is not None else None,
        config_file=config_file.absolute() if config_file is not None else None,
        shutdown_grace=shutdown_grace,
        allowed_roots=(tuple(root.absolute() for root in allowed_roots)
                       if allowed_roots is not None else None),
    )
