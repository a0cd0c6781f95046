"""`notaryd staple PATH [--check]`: the end of the line.

``staple`` looks the ticket up at ``NOTARYD_TICKET_URL`` (retrying NOT_FOUND for up to
``--max-wait`` seconds) and writes it into the .app/.dmg/.pkg atomically; ``--check`` says
offline whether a ticket for the current signature is stapled (exit 0 yes, 1 no).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service import exit_codes
from service.commands import add_command
from service.setting_values import DAY, seconds_option
from service.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    s = add_command(
        subparsers, "staple", staple,
        help="staple the notarisation ticket into a .app, .dmg or flat .pkg (any OS)",
        description="Fetch the ticket for the artifact's signature and staple it; --check only "
                    "verifies, offline, that a ticket for the current signature is stapled.")
    s.add_argument("path", type=Path)
    s.add_argument("--check", action="store_true", help="verify offline; change nothing")
    s.add_argument("--max-wait", type=seconds_option(DAY, zero=True), default=1800.0, metavar="S",
                   help="how long to keep asking while the ticket propagates (default 1800)")
    s.add_argument("--json", action="store_true")


def staple(args: argparse.Namespace, settings: Settings) -> int:
    from uploader.errors import NotarydError

    try:
        return _staple(args, settings)
    except OSError as error:  # unreadable file, full disk, read-only volume...
        raise NotarydError(f"{args.path}: {error.strerror or error}; check the path, its "
                           "permissions and free space, then run notaryd staple again") from None


def _staple(args: argparse.Namespace, settings: Settings) -> int:
    from service import runtime
    from uploader import staple as stapling
    from uploader.artifact import for_stapling
    from uploader.staple.check import check_staple

    opened = for_stapling(args.path)  # what it is, or one line saying what can be stapled
    if args.check:
        result = check_staple(opened)
        if args.json:
            print(json.dumps({"path": str(args.path), "outcome": result.outcome.value,
                              "record": result.key.record_name, "ok": result.ok}, indent=2))
        else:
            print(result.message)
        return exit_codes.STAPLED if result.ok else exit_codes.NOT_STAPLED

    def waiting(why: str, delay: float) -> None:
        print(f"{args.path.name}: ticket not available yet ({why}); asking again in "
              f"{delay:.0f} s", flush=True)

    done = runtime.run(stapling.staple(opened, settings.ticket_url,
                                       max_wait_seconds=args.max_wait, on_retry=waiting))
    if args.json:
        print(json.dumps({"path": str(args.path), "outcome": "stapled",
                          "record": done.key.record_name, "ticket_bytes": done.ticket_bytes},
                         indent=2))
    else:
        print(done.message)
    return exit_codes.STAPLED

