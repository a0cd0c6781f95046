"""`notaryd` command line: parses arguments and hands off to one module per command group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its sub-commands
and sets ``handler(args, settings) -> exit code`` on each parser. Command modules import their
heavy dependencies inside the handlers so that ``notaryd --help`` stays fast.

Exit codes: the table in ``service.exit_codes`` (0 success / Accepted / clean; 2 Invalid or
Rejected / preflight errors; 3 Accepted but not stapled; 1 any other failure, with one line on
stderr that says what to do).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from service import exit_codes
from service.commands import credentials
from uploader import redaction
from uploader.errors import NotarydError
from uploader.source_file import refuse_non_utf8
from uploader.terminal import printable

COMMAND_MODULES = (
    "service.commands.upload",
    "service.commands.notary",
    "service.commands.preflight",
    "service.commands.demo",
    "service.commands.daemon",
    "service.commands.install",
    "service.commands.staple",
    "service.commands.doctor",
    "service.commands.state",
    "service.commands.page",
    "service.commands.credentials",
    "service.commands.completion",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="notaryd",
        description="Resumable notarisation of large macOS builds through Apple's Notary REST API.",
    )
    parser.add_argument("--version", action="version", version=f"notaryd {_version()}")
    parser.add_argument("--config", type=Path, help="TOML config file (default: see README)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    credentials.add_to_authenticating(subparsers)  # --profile, --key, --key-id, --issuer
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("notaryd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # A line per HTTP request is for servers' operators, never for a person at a terminal (the
    # emulator and fault proxy of `notaryd demo` serve in-process).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    redaction.install()  # on every handler: third-party loggers print credentials at DEBUG


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    from service.settings import load_settings

    try:
        if isinstance(path := getattr(args, "path", None), (Path, str)):
            refuse_non_utf8(path)  # a name SQLite, JSON and the notary service cannot carry
        try:
            settings = load_settings(config_path=args.config,
                                     flags=credentials.credential_flags(args))
            code: int = args.handler(args, settings)
            return code
        except BaseExceptionGroup as group:  # a TaskGroup's: what failed is inside
            raise user_facing(group) from None
    except NotarydError as exc:
        return _fail(args, exc, printable(redaction.redact(str(exc))),
                     exit_codes.for_error(exc))
    except KeyboardInterrupt:
        print("notaryd: interrupted; re-run the same command to resume", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen OS error: one line; the traceback with -v
        logging.getLogger("notaryd").debug("unexpected error", exc_info=True)
        text = printable(redaction.redact(f"unexpected error ({type(exc).__name__}: {exc}); "
                                          "re-run with -v for the details"))
        return _fail(args, exc, text, exit_codes.FAILURE)


def user_facing(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a person should read from an exception group: ours first, else the first leaf."""
    leaves = list(_leaves(group))
    for leaf in leaves:
        if isinstance(leaf, (NotarydError, KeyboardInterrupt)):
            return leaf
    return next((leaf for leaf in leaves if isinstance(leaf, Exception)), leaves[0])


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _fail(args: argparse.Namespace, exc: BaseException, text: str, code: int) -> int:
    """One line on stderr; with --json the error document on stdout too."""
    if getattr(args, "json", False):
        from service import machine

        print(machine.dumps(machine.error_document(exc, text)))
    print(f"notaryd: {text}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
