"""Shell completion (`notaryd completion bash|zsh|fish`) and the man page (`make man`) know
every command, sub-command and option of the parser: each shell is asked what it completes."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from service.cli import build_parser

REPOSITORY = Path(__file__).resolve().parents[2]


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                  ) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command and sub-command (``("credentials", "store")``) with its parser."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[(*prefix, name)] = sub
                found.update(command_paths(sub, (*prefix, name)))
    return found


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - {"--help"}


COMMANDS = command_paths(build_parser())


def test_the_walk_finds_the_commands_users_know() -> None:
    assert {("notarize",), ("info",), ("credentials", "store"), ("credentials", "list"),
            ("credentials", "delete"), ("completion",), ("service", "install")} <= set(COMMANDS)


def make_man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_man", REPOSITORY / "scripts" / "make_man.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def roff(text: str) -> str:
    return text.replace("-", "\\-")


def test_the_man_page_covers_every_command_and_option() -> None:
    page = make_man().render()
    for path, parser in COMMANDS.items():
        assert roff(f"'notaryd {' '.join(path)}'") in page, path
        for option in options_of(parser):
            assert roff(option) in page, (path, option)
    assert ".SH CREDENTIALS" in page and "NOTARYD_PROFILE" in page


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          **kwargs)  # type: ignore[call-overload]


def script(shell: str, folder: Path) -> Path:
    done = run([sys.executable, "-m", "service", "completion", shell])
    assert done.returncode == 0, done.stderr
    path = folder / f"notaryd.{shell}"
    path.write_text(done.stdout)
    return path


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} missing: run scripts/install-system-deps.sh")
    return found


BASH_COMPLETE = """source "$1"; COMP_LINE="$2"; read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMP_POINT=${#COMP_LINE}
_shtab_notaryd notaryd "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"; printf '%s\\n' "${COMPREPLY[@]}"
"""


def completions(shell: str, path: Path, line: str) -> set[str]:
    if shell == "bash":
        done = run([need("bash"), "--norc", "-c", BASH_COMPLETE, "_", str(path), line])
    else:
        done = run([need("fish"), "--no-config", "-c", f"source {path}; complete -C '{line}'"])
    assert done.returncode == 0, done.stderr
    return {entry.split("\t")[0] for entry in done.stdout.splitlines() if entry}


@pytest.mark.process
@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_bash_and_fish_complete_every_command_and_option(shell: str, tmp_path: Path) -> None:
    need(shell)
    path = script(shell, tmp_path)
    groups = {path[:-1] for path in COMMANDS}
    for group in groups:
        expected = {p[-1] for p in COMMANDS if p[:-1] == group}
        line = " ".join(("notaryd", *group)) + " "
        assert expected <= completions(shell, path, line), line
    for command in (("notarize",), ("credentials", "store"), ("history",)):
        line = " ".join(("notaryd", *command)) + " --"
        assert options_of(COMMANDS[command]) <= completions(shell, path, line), line


@pytest.mark.process
def test_zsh_defines_every_command_and_option(tmp_path: Path) -> None:
    zsh = need("zsh")
    path = script("zsh", tmp_path)
    assert run([zsh, "-n", str(path)]).returncode == 0
    listing = run([zsh, "-f", "-c", "autoload -U compinit && compinit -u -D && source $1 "
                   "2>/dev/null; for name in ${(k)parameters[(I)_shtab_notaryd*_options]}; "
                   "do print -r -- \"$name ${(P)name}\"; done", "_", str(path)],
                  env={**os.environ, "HOME": str(tmp_path)})
    arrays = dict(line.split(" ", 1) for line in listing.stdout.splitlines())
    for command, parser in COMMANDS.items():
        name = "_shtab_notaryd_" + "_".join(command).replace("-", "_") + "_options"
        assert name in arrays, command
        for option in options_of(parser):
            assert option in arrays[name], (command, option)


@pytest.mark.process
def test_make_man_writes_a_page_man_renders(tmp_path: Path) -> None:
    need("man")
    output = tmp_path / "notaryd.1"
    done = run([sys.executable, str(REPOSITORY / "scripts" / "make_man.py"), str(output)])
    assert done.returncode == 0, done.stderr
    shown = run(["man", "-l", str(output)], env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"})
    assert shown.returncode == 0, shown.stderr
    assert "notaryd credentials store" in shown.stdout and "CREDENTIALS" in shown.stdout
