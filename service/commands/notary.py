"""`notaryd notarize`, `status`, `log`, `history`: the notary service, driven in-process.

Exit codes (``service.exit_codes``): 0 Accepted (or submitted with --no-wait); 2 Invalid or
Rejected, or preflight errors; 3 Accepted but not stapled; 1 any other failure, with one line on
stderr that says what to do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service.exit_codes import ACCEPTED, ACCEPTED_NOT_STAPLED, FAILURE, REJECTED
from service.settings import Settings
from uploader.errors import NotarydError
from uploader.lifecycle import NotaryStatus

if TYPE_CHECKING:
    from service.progress import ProgressDisplay
    from uploader.notary.pipeline import NotarizeOutcome, Notarizer
    from uploader.progress import Progress as RunProgress

T = TypeVar("T")

AUTH_HELP = (
    "Authentication: an App Store Connect team API key, from three settings: NOTARYD_KEY_ID "
    "(the key's id), NOTARYD_ISSUER_ID (the issuer UUID) and NOTARYD_PRIVATE_KEY (the path of "
    "AuthKey_<KEYID>.p8). Each comes from the environment or, as key_id, issuer_id and "
    "private_key, from the TOML config file (--config, else $NOTARYD_CONFIG, else the default "
    "path in the README); the environment wins."
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "notarize", help="hash, submit, upload, wait and fetch the log; re-run resumes",
        description="Notarise a .app bundle (zipped for you) or an archive (.zip, .pkg or .dmg) "
                    "in this process, then staple the ticket. Running the same command again "
                    "after a crash or a --timeout resumes the same submission and upload.",
        epilog=AUTH_HELP)
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="submission name (default: the file name)")
    p.add_argument("--webhook", help="URL the notary service notifies when processing ends")
    p.add_argument("--no-wait", action="store_true", help="return once the upload is complete")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument("--skip-preflight", action="store_true",
                   help="upload even if the offline signing check finds errors")
    p.add_argument("--timeout", type=_duration, metavar="DURATION",
                   help="give up (exit 1) after this long, e.g. 90m or 2h; a re-run resumes "
                        "(default: NOTARYD_TIMEOUT, else no limit)")
    add_last_mile_options(p)
    p.set_defaults(handler=notarize)

    s = subparsers.add_parser("status", help="the notary service's status of a submission",
                              description="Ask the notary service for one submission's status.",
                              epilog=AUTH_HELP)
    s.add_argument("submission_id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=status)

    info = subparsers.add_parser("info", help="notarytool's name for status",
                                 description="The notary service's status of a submission "
                                             "(the same as `notaryd status`).",
                                 epilog=AUTH_HELP)
    info.add_argument("submission_id")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=status)

    lg = subparsers.add_parser("log", help="fetch, store and explain a submission's log",
                               description="Download a decided submission's log, keep it in the "
                                           "state dir and explain its issues.",
                               epilog=AUTH_HELP)
    lg.add_argument("submission_id")
    lg.add_argument("--json", action="store_true", help="print the log document itself")
    lg.set_defaults(handler=show_log)

    h = subparsers.add_parser("history", help="the team's 100 most recent submissions",
                              description="List the team's 100 most recent submissions, as the "
                                          "notary service knows them.",
                              epilog=AUTH_HELP)
    h.add_argument("--json", action="store_true")
    h.set_defaults(handler=history)


def _duration(text: str) -> float:
    from service.settings import DAY, duration

    try:
        return duration(30 * DAY)(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


class _TimedOut(Exception):
    """The run's --timeout expired."""


def _with_notarizer(settings: Settings, use: Callable[[Notarizer], Awaitable[T]],
                    hooks: list[Any] | None = None, *, timeout: float | None = None,
                    display: ProgressDisplay | None = None) -> T:
    import asyncio
    import contextlib

    from service import runtime
    from service.progress import ticking
    from uploader.notary.pipeline import Notarizer
    from uploader.postgres import open_database

    config = settings.notary_config()

    async def main() -> T:
        db = await open_database(settings.database_path, settings.database_url)
        notarizer = Notarizer(db, config, hooks=hooks or [])
        ticks = ticking(display) if display is not None else contextlib.nullcontext()
        try:
            async with ticks:
                async with asyncio.timeout(timeout) as deadline:
                    try:
                        return await use(notarizer)
                    finally:
                        expired = deadline.expired()
        except TimeoutError:
            if expired:
                raise _TimedOut from None
            raise
        finally:
            await notarizer.close()
            await db.close()

    return runtime.run(main())


def print_outcome(outcome: NotarizeOutcome, as_json: bool, waited: bool) -> None:
    if as_json:
        from service import machine

        print(machine.dumps({
            "path": str(outcome.path), "submission_id": outcome.submission_id,
            "status": outcome.status, "log_path": str(outcome.log_path) if outcome.log_path else None,
            "report": outcome.report, "staple": machine.staple(outcome.staple),
        }))
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
    from uploader.inputs import input_kind
    from uploader.notary.pipeline import NotarizeRequest, PreflightFailed

    input_kind(args.path)  # one line now for a missing path or a format the service refuses
    request = NotarizeRequest(args.path, name=args.name, webhook=args.webhook,
                              skip_preflight=args.skip_preflight, wait=not args.no_wait,
                              staple=not args.no_staple, force=args.force,
                              keep_archive=args.keep_archive)
    timeout = args.timeout if args.timeout is not None else settings.timeout
    with ProgressDisplay() as display:
        try:
            outcome = _with_notarizer(settings, lambda n: n.run(request), hooks=[display],
                                      timeout=timeout, display=display)
        except PreflightFailed as failed:
            if args.json:
                raise
            print(failed.report)
            print(f"notaryd: {failed}", file=sys.stderr)
            return REJECTED
        except _TimedOut:
            assert timeout is not None
            raise NotarydError(_timed_out(display.progress, timeout)) from None
    print_outcome(outcome, args.json, waited=request.wait)
    if outcome.accepted and outcome.staple is not None and outcome.staple.failed:
        return ACCEPTED_NOT_STAPLED
    return exit_code_for(outcome.status, waited=request.wait)


def _timed_out(progress: RunProgress, timeout: float) -> str:
    """What a run stopped by --timeout had left, and that a re-run resumes."""
    from service.outages import human_duration
    from service.progress import human_bytes
    from uploader.lifecycle import NotaryStage

    stage, sub = progress.stage, progress.submission_id
    if stage is NotaryStage.UPLOADING and progress.bytes_total:
        left = (f"the upload was at {human_bytes(progress.bytes_done)} of "
                f"{human_bytes(progress.bytes_total)} (submission {sub})")
    elif stage is NotaryStage.WAITING and sub:
        left = (f"submission {sub} is still in progress at Apple (`notaryd wait {sub}` "
                "follows it)")
    elif stage is None:
        left = "it had not started (waiting for another notaryd on this build?)"
    else:
        left = f"it was {stage.value}" + (f" (submission {sub})" if sub else "")
    return (f"gave up after the --timeout of {human_duration(timeout)}: {left}; run the same "
            "command again to resume where it stopped")


def status(args: argparse.Namespace, settings: Settings) -> int:
    from service import machine

    result = _with_notarizer(settings, lambda n: n.status(args.submission_id))
    if args.json:
        print(machine.dumps(machine.submission(result)))
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
        from service import machine

        print(machine.dumps([machine.submission(i) for i in items]))
    else:
        for i in items:
            print(f"{i.id}  {i.status:<12} {i.created_date}  {i.name}")
    return 0
