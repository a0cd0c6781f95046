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
from collections.abc import Sequence
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
    parser.add_argument("--config", type=Path, help="TOML config file (default: see README)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    credentials.add_to_authenticating(subparsers)  # --profile, --key, --key-id, --issuer
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redaction.install()  # on every handler: third-party loggers print credentials at DEBUG
    from service.settings import load_settings

    try:
        if isinstance(path := getattr(args, "path", None), (Path, str)):
            refuse_non_utf8(path)  # a name SQLite, JSON and the notary service cannot carry
        settings = load_settings(config_path=args.config, flags=credentials.credential_flags(args))
        code: int = args.handler(args, settings)
        return code
    except NotarydError as exc:
        print(f"notaryd: {printable(redaction.redact(str(exc)))}", file=sys.stderr)
        return exit_codes.FAILURE
    except KeyboardInterrupt:
        print("notaryd: interrupted; re-run the same command to resume", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen OS error: one line; the traceback with -v
        logging.getLogger("notaryd").debug("unexpected error", exc_info=True)
        print(f"notaryd: unexpected error ({type(exc).__name__}: "
              f"{printable(redaction.redact(str(exc)))}); "
              "re-run with -v for the details", file=sys.stderr)
        return exit_codes.FAILURE


if __name__ == "__main__":
    sys.exit(main())
