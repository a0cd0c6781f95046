"""`notaryd` command line: parses arguments and hands off to one module per command group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its sub-commands
and sets ``handler(args, settings) -> exit code`` on each parser. Command modules import their
heavy dependencies inside the handlers so that ``notaryd --help`` stays fast.

Exit codes (contract): 0 success / Accepted / clean; 2 Invalid or Rejected / preflight errors;
1 any other failure, with one line on stderr that says what to do.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from service.commands import credentials
from uploader import redaction
from uploader.errors import NotarydError

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
        settings = load_settings(config_path=args.config, flags=credentials.credential_flags(args))
        code: int = args.handler(args, settings)
        return code
    except NotarydError as exc:
        print(f"notaryd: {redaction.redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("notaryd: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen OS error: one line; the traceback with -v
        logging.getLogger("notaryd").debug("unexpected error", exc_info=True)
        print(f"notaryd: unexpected error ({type(exc).__name__}: {redaction.redact(str(exc))}); "
              "re-run with -v for the details", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
