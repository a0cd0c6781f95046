"""`notaryd doctor [--json]`: set-up checks with their fixes; exit 0 all pass, 1 otherwise."""

from __future__ import annotations

import argparse
import json
from typing import Any

from service import exit_codes
from service.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    d = subparsers.add_parser(
        "doctor", help="check the set-up: key, clock, network, agreement (each with its fix)",
        description="Checks the API key, ids, clock skew, the notary API, S3 and ticket "
                    "endpoints in effect, proxies, and an authenticated read.")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=doctor)


def doctor(args: argparse.Namespace, settings: Settings) -> int:
    from service import runtime
    from service.doctor import render, run_checks

    checks = runtime.run(run_checks(settings))
    if args.json:
        print(json.dumps({"ok": all(c.ok for c in checks),
                          "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        print(render(checks))
    return exit_codes.SUCCESS if all(c.ok for c in checks) else exit_codes.FAILURE
