"""`notaryd completion bash|zsh|fish`: the shell completion script, generated from the parser
(shtab), so it always knows every command and option of this version.

Install: bash ``notaryd completion bash > ~/.local/share/bash-completion/completions/notaryd``;
zsh ``notaryd completion zsh > "${fpath[1]}/_notaryd"``; fish
``notaryd completion fish > ~/.config/fish/completions/notaryd.fish``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from service import exit_codes
from service.commands import add_command

if TYPE_CHECKING:
    from service.settings import Settings

SHELLS = ("bash", "zsh", "fish")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    example = "notaryd completion bash > ~/.local/share/bash-completion/completions/notaryd"
    completion = add_command(subparsers, "completion", print_completion,
                             help="print the shell completion script for bash, zsh or fish",
                             description=f"Print a completion script; e.g. `{example}`.")
    completion.add_argument("shell", choices=SHELLS)


def script(shell: str) -> str:
    import shtab

    from service.cli import build_parser

    text: str = shtab.complete(build_parser(), shell=shell)
    return text


def print_completion(args: argparse.Namespace, settings: Settings) -> int:
    print(script(args.shell), end="")
    return exit_codes.SUCCESS
