"""`notaryd notarize`, `status`, `log`, `history`, `wait`: the notary service, driven in-process.

Exit codes: the table in ``service.exit_codes`` (0 Accepted, or submitted with --no-wait; 2
Invalid or Rejected, or preflight errors; 1 any other failure, Accepted but not stapled among
them, with one line on stderr that says what to do). ``wait`` follows any submission to its
verdict, with the exit codes of ``notarize``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service import exit_codes
from service.commands import Handler, Subparsers, add_command
from service.setting_values import DAY, seconds_option
from service.settings import Settings
from uploader.errors import NotarydError

if TYPE_CHECKING:
    from service.progress import ProgressDisplay
    from uploader.notary.client import SubmissionStatus
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


def register(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "notarize", notarize,
        help="hash, submit, upload, wait and fetch the log; re-run resumes",
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
    # The commands about one submission, by its id: (name, handler, help, description, --json help)
    by_id: tuple[tuple[str, Handler, str, str, str | None], ...] = (
        ("status", status, "the notary service's status of a submission",
         "Ask the notary service for one submission's status.", None),
        ("info", status, "notarytool's name for status",
         "The notary service's status of a submission (the same as `notaryd status`).", None),
        ("log", show_log, "fetch, store and explain a submission's log",
         "Download a decided submission's log, keep it in the state dir and explain its issues.",
         "print the log document itself"),
    )
    for name, handler, summary, description, json_help in by_id:
        one = add_command(subparsers, name, handler, help=summary, description=description,
                          epilog=AUTH_HELP)
        one.add_argument("submission_id")
        one.add_argument("--json", action="store_true", help=json_help)
    h = add_command(subparsers, "history", history,
                    help="the team's 100 most recent submissions",
                    description="List the team's 100 most recent submissions, as the notary "
                                "service knows them.",
                    epilog=AUTH_HELP)
    h.add_argument("--json", action="store_true")
    w = add_command(subparsers, "wait", wait, help="follow a submission to its verdict",
                    description="Poll the notary service until a submission has its verdict "
                                "(exit codes as `notaryd notarize`).",
                    epilog=AUTH_HELP)
    w.add_argument("submission_id")
    w.add_argument("--timeout", type=seconds_option(30 * DAY), metavar="S",
                   help="give up (exit 1) after S seconds; default: wait as long as it takes")
    w.add_argument("--json", action="store_true")


def _duration(text: str) -> float:
    from service.setting_values import duration

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
    from uploader.artifact import Artifact
    from uploader.notary.pipeline import NotarizeRequest, PreflightFailed

    # One line now for a missing path or a format the service refuses; the run uses this one.
    opened = Artifact.open(args.path)
    request = NotarizeRequest(args.path, artifact=opened, name=args.name, webhook=args.webhook,
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
            return exit_codes.ERRORS_FOUND
        except _TimedOut:
            assert timeout is not None
            raise NotarydError(_timed_out(display.progress, timeout)) from None
    print_outcome(outcome, args.json, waited=request.wait)
    if outcome.accepted and outcome.staple is not None and outcome.staple.failed:
        return exit_codes.ACCEPTED_NOT_STAPLED
    return exit_codes.for_status(outcome.status, waited=request.wait)


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


def print_statuses(statuses: Sequence[SubmissionStatus], as_json: bool, *, one: bool = True) -> None:
    """Submissions as the notary service reports them: one line each, or JSON (an object for
    ``one``, else a list). ``status``, ``wait`` and ``history`` all print through here."""
    if as_json:
        from service import machine

        documents = [machine.submission(s) for s in statuses]
        print(machine.dumps(documents[0] if one else documents))
        return
    for s in statuses:
        print(f"{s.id}  {s.status:<12} {s.created_date}  {s.name}")


def status(args: argparse.Namespace, settings: Settings) -> int:
    result = _with_notarizer(settings, lambda n: n.status(args.submission_id))
    print_statuses([result], args.json)
    return exit_codes.SUCCESS


def show_log(args: argparse.Namespace, settings: Settings) -> int:
    path, report = _with_notarizer(settings, lambda n: n.fetch_log(args.submission_id))
    if args.json:
        print(path.read_text(encoding="utf-8"))
    else:
        print(report)
        print(f"log saved to {path}")
    return exit_codes.SUCCESS


def history(args: argparse.Namespace, settings: Settings) -> int:
    async def ask(notarizer: Notarizer) -> Any:
        return await (await notarizer.client()).history()

    print_statuses(_with_notarizer(settings, ask), args.json, one=False)
    return exit_codes.SUCCESS


def wait(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    async def follow(notarizer: Notarizer) -> SubmissionStatus:
        try:
            return await asyncio.wait_for(notarizer.wait(args.submission_id), args.timeout)
        except TimeoutError:
            raise NotarydError(
                f"submission {args.submission_id} is still in progress after {args.timeout:g} s; "
                f"run notaryd wait {args.submission_id} again later") from None

    result = _with_notarizer(settings, follow)
    print_statuses([result], args.json)
    return exit_codes.for_status(result.status)
