"""Service registration as a plan of small, printable steps, and the one place that performs them.

``notaryd service install|uninstall|status`` first builds a :class:`ServicePlan` (pure: no file
or process is touched), then either prints it (``--dry-run``) or hands it to :func:`apply`. Tests
inject a :class:`CommandRunner` that records the commands instead of running ``launchctl`` or
``systemctl``, so the exact argv that would run on a build Mac is checked on Linux.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from service import exit_codes
from uploader.errors import NotarydError


class ServiceSetupError(NotarydError):
    """Registering, removing or inspecting the service failed; the message says what to do."""


@dataclass(frozen=True)
class Account:
    """The account a system-wide service runs as (it owns the state and log directories)."""

    name: str
    uid: int
    gid: int
    home: Path


@dataclass(frozen=True)
class MakeDirectory:
    path: Path
    mode: int = 0o700
    owner: Account | None = None  # chown to this account (system installs run as root)

    def describe(self) -> str:
        owner = f" owned by {self.owner.name}" if self.owner else ""
        return f"mkdir -p -m {self.mode:o} {shlex.quote(str(self.path))}{owner}"


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: bytes
    mode: int = 0o644
    owner: Account | None = None

    def describe(self) -> str:
        return f"write {shlex.quote(str(self.path))} (mode {self.mode:o}):"


@dataclass(frozen=True)
class RemoveFile:
    path: Path

    def describe(self) -> str:
        return f"rm -f {shlex.quote(str(self.path))}"


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    # False for best-effort steps, e.g. unloading a service that may not be loaded yet.
    check: bool = True
    # Print the command's output (status); otherwise it is shown only when the step fails.
    show_output: bool = False
    hint: str = ""  # appended to the error when the step fails

    def describe(self) -> str:
        suffix = "   # failure ignored" if not self.check else ""
        return shlex.join(self.argv) + suffix


Step = MakeDirectory | WriteFile | RemoveFile | Run


@dataclass(frozen=True)
class ServicePlan:
    """What one ``notaryd service`` action does, in order."""

    action: str  # "install", "uninstall" or "status"
    manager: str  # "launchd" or "systemd"
    definition_path: Path  # the plist or unit file
    steps: tuple[Step, ...]
    needs_root: bool = False
    notes: tuple[str, ...] = field(default=())  # printed after a successful install

    @classmethod
    def changing(cls, action: str, manager: str, path: Path, steps: Sequence[Step], *,
                 system: bool, notes: Sequence[str] = ()) -> ServicePlan:
        """An install or uninstall of the service defined at ``path`` (root for a system one)."""
        return cls(action=action, manager=manager, definition_path=path, steps=tuple(steps),
                   needs_root=system, notes=tuple(notes))

    @classmethod
    def asking(cls, manager: str, path: Path, argv: tuple[str, ...]) -> ServicePlan:
        """``notaryd service status``: the manager's own view, its output shown as it is."""
        return cls(action="status", manager=manager, definition_path=path,
                   steps=(Run(argv, check=False, show_output=True),))

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [step.argv for step in self.steps if isinstance(step, Run)]

    @property
    def written(self) -> dict[Path, bytes]:
        return {step.path: step.content for step in self.steps if isinstance(step, WriteFile)}

    def render(self) -> str:
        """The human-readable plan that ``--dry-run`` prints."""
        lines = [f"# notaryd service {self.action} ({self.manager}): dry run, nothing was changed"]
        for step in self.steps:
            lines.append(step.describe())
            if isinstance(step, WriteFile):
                lines.extend("    " + line for line in step.content.decode().splitlines())
        lines.extend(f"# then: {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class CommandRunner(Protocol):
    def __call__(self, argv: Sequence[str]) -> CommandResult: ...


def run_subprocess(argv: Sequence[str]) -> CommandResult:
    """The real runner: waits for the command (launchctl/systemctl return quickly)."""
    completed = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


def apply(
    plan: ServicePlan,
    *,
    runner: CommandRunner = run_subprocess,
    euid: int | None = None,
    which: Callable[[str], str | None] | None = None,
    out: TextIO | None = None,
) -> int:
    """Performs the plan; returns the exit code of a status query, else 0.

    Checks everything that can be checked up front (root, every tool present) before touching a
    file, so a missing ``launchctl`` never leaves a half-installed service behind.
    """
    out = sys.stdout if out is None else out
    euid = os.geteuid() if euid is None else euid
    if plan.needs_root and euid != 0:
        raise ServiceSetupError(
            f"{plan.action} of a system-wide service changes {plan.definition_path.parent}: "
            "re-run with sudo (or drop --system for a per-user service)"
        )
    if which is not None:
        for tool in sorted({step.argv[0] for step in plan.steps if isinstance(step, Run)}):
            if which(tool) is None:
                raise ServiceSetupError(_missing_tool_message(tool, plan.manager))

    code = exit_codes.SUCCESS
    for step in plan.steps:
        if isinstance(step, MakeDirectory):
            _make_directory(step)
        elif isinstance(step, WriteFile):
            _write_file(step)
        elif isinstance(step, RemoveFile):
            step.path.unlink(missing_ok=True)
        else:
            code = _run(step, runner, out, plan.manager)
    if plan.action == "status":
        return code
    for note in plan.notes:
        print(f"notaryd: {note}", file=out)
    return exit_codes.SUCCESS


def _run(step: Run, runner: CommandRunner, out: TextIO, manager: str) -> int:
    try:
        result = runner(step.argv)
    except FileNotFoundError:
        raise ServiceSetupError(_missing_tool_message(step.argv[0], manager)) from None
    if step.show_output:
        out.write(result.stdout)
        out.write(result.stderr)
    if step.check and result.returncode != 0:
        detail = " ".join((result.stderr or result.stdout).split())[:400] or "no output"
        hint = f"; {step.hint}" if step.hint else ""
        raise ServiceSetupError(
            f"`{shlex.join(step.argv)}` failed with exit code {result.returncode}: {detail}{hint}"
        )
    return result.returncode


def _missing_tool_message(tool: str, manager: str) -> str:
    if manager == "launchd":
        return f"{tool} not found: registering a launchd service needs macOS (/bin/launchctl)"
    return f"{tool} not found: registering a systemd service needs systemd (systemctl on PATH)"


def _make_directory(step: MakeDirectory) -> None:
    step.path.mkdir(parents=True, exist_ok=True, mode=step.mode)
    if step.owner is not None:
        os.chown(step.path, step.owner.uid, step.owner.gid)


def _write_file(step: WriteFile) -> None:
    # Write next to the target and rename, so launchd/systemd never read half a file.
    step.path.parent.mkdir(parents=True, exist_ok=True)
    partial = step.path.with_name(f".{step.path.name}.partial")
    partial.write_bytes(step.content)
    partial.chmod(step.mode)
    if step.owner is not None:
        os.chown(partial, step.owner.uid, step.owner.gid)
    os.replace(partial, step.path)
