"""`notaryd notarize`, `status`, `log`, `history`: the notary service, driven in-process.

Exit codes (``service.exit_codes``): 0 Accepted (or submitted with --no-wait); 2 Invalid or
Rejected, or preflight errors; 3 Accepted but not stapled; 1 any other failure, with one line on
stderr that says what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service.exit_codes import ACCEPTED, ACCEPTED_NOT_STAPLED, FAILURE, REJECTED
from service.settings import Settings
from uploader.errors import ConfigError
from uploader.lifecycle import NotaryStatus

if TYPE_CHECKING:
    from uploader.notary.pipeline import NotarizeOutcome, Notarizer

T = TypeVar("T")

def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "notarize", help="hash, submit, upload, wait and fetch the log; re-run resumes",
        description="Notarise an archive (.zip, .pkg or .dmg) in this process. Running the same "
                    "command again after a crash resumes the same submission and upload.")
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="submission name (default: the file name)")
    p.add_argument("--webhook", help="URL the notary service notifies when processing ends")
    p.add_argument("--no-wait", action="store_true", help="return once the upload is complete")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument("--skip-preflight", action="store_true",
                   help="upload even if the offline signing check finds errors")
    add_last_mile_options(p)
    p.set_defaults(handler=notarize)

    s = subparsers.add_parser("status", help="the notary service's status of a submission")
    s.add_argument("submission_id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=status)

    info = subparsers.add_parser("info", help="notarytool's name for status",
                                 description="The notary service's status of a submission "
                                             "(the same as `notaryd status`).")
    info.add_argument("submission_id")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=status)

    lg = subparsers.add_parser("log", help="fetch, store and explain a submission's log")
    lg.add_argument("submission_id")
    lg.add_argument("--json", action="store_true", help="print the log document itself")
    lg.set_defaults(handler=show_log)

    h = subparsers.add_parser("history", help="the team's 100 most recent submissions")
    h.add_argument("--json", action="store_true")
    h.set_defaults(handler=history)


def add_last_mile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-staple", action="store_true",
                        help="do not staple the ticket into the .app/.dmg/.pkg after Accepted")
    parser.add_argument("--force", action="store_true",
                        help="submit even if this archive already has an Accepted submission")
    parser.add_argument("--keep-archive", action="store_true",
                        help="keep the zip made from a .app bundle (in NOTARYD_WORK_DIR)")


def exit_code_for(status: str, waited: bool = True) -> int:
    if status == NotaryStatus.ACCEPTED or (not waited and status == NotaryStatus.IN_PROGRESS):
        return ACCEPTED
    if status in (NotaryStatus.INVALID, NotaryStatus.REJECTED):
        return REJECTED
    return FAILURE


def _with_notarizer(settings: Settings, use: Callable[[Notarizer], Awaitable[T]],
                    hooks: list[Any] | None = None) -> T:
    from service import runtime
    from uploader.database import Database
    from uploader.notary.pipeline import Notarizer

    config = settings.notary_config()

    async def main() -> T:
        db = await Database.open(settings.database_path)
        notarizer = Notarizer(db, config, hooks=hooks or [])
        try:
            return await use(notarizer)
        finally:
            await notarizer.close()
            await db.close()

    return runtime.run(main())


def print_outcome(outcome: NotarizeOutcome, as_json: bool, waited: bool) -> None:
    if as_json:
        print(json.dumps({
            "path": str(outcome.path), "submission_id": outcome.submission_id,
            "status": outcome.status, "log_path": str(outcome.log_path) if outcome.log_path else None,
            "report": outcome.report,
            "staple": outcome.staple.text if outcome.staple else None,
        }, indent=2))
        return
    if outcome.report:
        print(outcome.report)
    where = f"; log saved to {outcome.log_path}" if outcome.log_path else ""
    verb = "submitted (not waiting)" if not waited else outcome.status
    submission = f", submission {outcome.submission_id}" if outcome.submission_id else ""
    print(f"{outcome.path.name}: {verb}{submission}{where}")
    if outcome.staple:
        print(outcome.staple.text, file=sys.stderr if outcome.staple.failed else sys.stdout)


def notarize(args: argparse.Namespace, settings: Settings) -> int:
    from service.progress import ProgressDisplay
    from uploader.notary.pipeline import NotarizeRequest, PreflightFailed

    if not args.path.is_file() and not (args.path.is_dir() and args.path.suffix == ".app"):
        raise ConfigError(f"{args.path}: no such file (give a .app bundle or the archive to "
                          "notarise: .zip, .pkg or .dmg)")
    request = NotarizeRequest(args.path, name=args.name, webhook=args.webhook,
                              skip_preflight=args.skip_preflight, wait=not args.no_wait,
                              staple=not args.no_staple, force=args.force,
                              keep_archive=args.keep_archive)
    with ProgressDisplay() as display:
        try:
            outcome = _with_notarizer(settings, lambda n: n.run(request), hooks=[display])
        except PreflightFailed as failed:
            print(failed.report, file=sys.stdout if not args.json else sys.stderr)
            print(f"notaryd: {failed}", file=sys.stderr)
            return REJECTED
    print_outcome(outcome, args.json, waited=request.wait)
    if outcome.accepted and outcome.staple is not None and outcome.staple.failed:
        return ACCEPTED_NOT_STAPLED
    return exit_code_for(outcome.status, waited=request.wait)


def status(args: argparse.Namespace, settings: Settings) -> int:
    async def ask(notarizer: Notarizer) -> Any:
        return await (await notarizer.client()).status(args.submission_id)

    result = _with_notarizer(settings, ask)
    if args.json:
        print(json.dumps({"id": result.id, "name": result.name, "status": result.status,
                          "createdDate": result.created_date}, indent=2))
    else:
        print(f"{result.id}  {result.status:<12} {result.created_date}  {result.name}")
    return 0


def show_log(args: argparse.Namespace, settings: Settings) -> int:
    path, report = _with_notarizer(settings, lambda n: n.fetch_log(args.submission_id))
    if args.json:
        print(path.read_text(encoding="utf-8"))
    else:
        print(report)
        print(f"log saved to {path}")
    return 0


def history(args: argparse.Namespace, settings: Settings) -> int:
    async def ask(notarizer: Notarizer) -> Any:
        return await (await notarizer.client()).history()

    items = _with_notarizer(settings, ask)
    if args.json:
        print(json.dumps([{"id": i.id, "name": i.name, "status": i.status,
                           "createdDate": i.created_date} for i in items], indent=2))
    else:
        for i in items:
            print(f"{i.id}  {i.status:<12} {i.created_date}  {i.name}")
    return 0
