"""One module per command group; each has ``register(subparsers)`` (see ``service.cli``).

``add_command`` makes one sub-command's parser with its handler set, ``add_group`` a command whose
sub-commands are actions (``notaryd state prune``): every module registers through them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from service.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(subparsers: Subparsers, name: str, handler: Handler, *, help: str,
                description: str, epilog: str | None = None, **options: Any) -> argparse.ArgumentParser:
    """The parser of sub-command ``name``, which runs ``handler``; the caller adds its arguments."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, **options)
    parser.set_defaults(handler=handler)
    return parser


def add_group(subparsers: Subparsers, name: str, *, dest: str, help: str,
              description: str) -> Subparsers:
    """Command ``name`` whose actions (``notaryd NAME ACTION``) the caller adds to the result."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest=dest, metavar="ACTION", required=True)
