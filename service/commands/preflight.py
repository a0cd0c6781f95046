"""`notaryd preflight PATH [--json]`: offline check for what the notary service would reject.

Exit codes (contract): 0 clean (warnings allowed), 2 errors found, 1 PATH could not be checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.exit_codes import CLEAN, ERRORS_FOUND

if TYPE_CHECKING:
    from service.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help="offline check of signing problems the notary service rejects",
        description=(
            "Check a .zip, .app folder, flat .pkg or Mach-O for what Apple's notary service "
            "rejects (unsigned code, no Developer ID, no secure timestamp, no hardened runtime, "
            "get-task-allow, SDK older than 10.9), without uploading anything. Exit 0 when "
            "clean, 2 when errors were found (a member that could not be read is one), 1 when "
            "PATH could not be checked."
        ),
    )
    parser.add_argument("path", type=Path, metavar="PATH", help=".zip, .app, .pkg or Mach-O")
    parser.add_argument("--json", action="store_true", help="print the notary-log-shaped JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    del settings  # preflight needs no credentials or state
    from uploader.preflight import run_preflight

    report = run_preflight(args.path)
    print(report.to_json() if args.json else report.render_text(), end="\n" if args.json else "")
    return ERRORS_FOUND if report.has_errors else CLEAN
