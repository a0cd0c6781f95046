"""`notaryd serve` (the daemon) and its clients: `submit`, `jobs`, `job`, `watch`, `cancel`.

Exit codes of `submit --wait` follow `notaryd notarize` (``service.exit_codes.for_job``): 0
Accepted, 2 Invalid or Rejected, 1 any other failure.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from service import exit_codes
from service.commands import Subparsers, add_command
from service.commands.notary import add_last_mile_options
from service.daemon.job_states import VERDICTS, JobOutcome
from uploader.terminal import printable

if TYPE_CHECKING:
    from service.client.client import DaemonClient
    from service.daemon.snapshot import JobSnapshot
    from service.settings import Settings

T = TypeVar("T")
# Following a job survives a daemon restart (launchd brings it back within seconds).
RECONNECT_ATTEMPTS = 30
RECONNECT_DELAY_SECONDS = 2.0


class _StreamEnded(Exception):
    """The daemon's event stream closed before the job reached a verdict."""


def register(subparsers: Subparsers) -> None:
    from service.commands.notary import AUTH_HELP

    add_command(
        subparsers, "serve", _serve,
        help="run the daemon in the foreground (control API, job queue, metrics)",
        description="Run the daemon in the foreground: the control API and live page at "
                    "NOTARYD_LISTEN, the job queue, and /metrics. launchd or systemd run it "
                    "this way (`notaryd service install`).",
        epilog=AUTH_HELP)
    submit = add_command(
        subparsers, "submit", _submit, help="hand an archive to the running daemon",
        description="Queue a .app bundle or a .zip, .pkg or .dmg with the running daemon; "
                    "--wait follows it to Apple's verdict (exit codes as `notaryd notarize`).",
        epilog="The daemon notarises with its own settings: " + AUTH_HELP[0].lower()
               + AUTH_HELP[1:] + " Set them where the daemon runs (its environment or config "
               "file); the client needs only NOTARYD_LISTEN and the API token.")
    submit.add_argument("path", help="the .app bundle, .zip, .pkg or .dmg to notarise")
    submit.add_argument("--wait", action="store_true", help="follow the job until Apple decides")
    submit.add_argument("--name", help="submission name (default: the file name)")
    submit.add_argument("--webhook", help="URL the notary service calls when it has decided")
    submit.add_argument("--skip-preflight", action="store_true", help="skip the offline signing check")
    add_last_mile_options(submit)
    jobs = add_command(subparsers, "jobs", _jobs, help="list the daemon's jobs",
                       description="List the daemon's recent jobs with their progress.")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    job = add_command(subparsers, "job", _job, help="show one job",
                      description="Show one of the daemon's jobs, field by field.")
    job.add_argument("job_id", metavar="ID")
    job.add_argument("--json", action="store_true", help="print JSON")
    watch = add_command(
        subparsers, "watch", _watch, help="live view of every job, or follow one (Ctrl-C to leave)",
        description="Without ID: a live view of every job until Ctrl-C. With ID: follow that "
                    "job to its verdict, with the exit codes of `notaryd submit --wait`.")
    watch.add_argument("job_id", metavar="ID", nargs="?")
    cancel = add_command(subparsers, "cancel", _cancel, help="cancel a job and abort its upload",
                         description="Cancel a queued or running job of the daemon and abort "
                                     "its multipart upload.")
    cancel.add_argument("job_id", metavar="ID")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.daemon.app import serve
    from service.runtime import run
    from service.settings import check_listen_resolves

    check_listen_resolves(settings)
    return run(serve(settings))


def _client(settings: Settings) -> DaemonClient:
    from service.client.client import DaemonClient

    return DaemonClient.from_settings(settings)


def _ask(settings: Settings, question: Callable[[DaemonClient], Awaitable[T]]) -> T:
    """One conversation with the running daemon: ``question(client)``'s answer."""
    from service.runtime import run

    async def main() -> T:
        async with _client(settings) as client:
            return await question(client)

    return run(main())


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    import sys
    from pathlib import Path

    from service.runtime import run

    path = Path(args.path).expanduser().absolute()  # the daemon resolves symlinks itself
    queued: list[str] = []

    async def main() -> int:
        async with _client(settings) as client:
            job = await client.submit(
                path, name=args.name, webhook=args.webhook, skip_preflight=args.skip_preflight,
                options={"staple": not args.no_staple, "force": args.force,
                         "keep_archive": args.keep_archive},
            )
            queued.append(job.id)
            if not args.wait:
                print(printable(job.id))
                print(printable(f"notaryd: queued job {job.id} for {job.path}"), file=sys.stderr)
                return exit_codes.SUCCESS
            return await _follow(client, job)

    try:
        return run(main())
    except KeyboardInterrupt:
        if not queued:
            raise
        # The job is the daemon's: leaving the view does not stop it.
        print(f"notaryd: still running as job {queued[0]}; follow it with "
              f"`notaryd watch {queued[0]}`", file=sys.stderr)
        return exit_codes.INTERRUPTED


async def _follow(client: DaemonClient, job: JobSnapshot) -> int:
    import sys

    from service.client.client import DaemonUnreachable, UnreadableAnswer
    from service.client.display import JobFollower, verdict_line
    from uploader.errors import NotarydError
    from uploader.retry import Retrier, RetryPolicy

    # A steady pace, no growth: the daemon is local, and back after a restart within seconds.
    reconnecting = Retrier(RetryPolicy(initial_delay_seconds=RECONNECT_DELAY_SECONDS,
                                       max_delay_seconds=RECONNECT_DELAY_SECONDS, multiplier=1))
    failures = 0

    async def follow() -> None:
        nonlocal job, failures
        async for snapshot in client.events(job.id):
            failures = 0  # progress: the count of failures in a row starts again
            job = snapshot
            view.update(job)
        if not job.terminal:
            raise _StreamEnded

    def decide(exc: Exception, _retry_number: int) -> float:
        nonlocal failures
        if isinstance(exc, _StreamEnded):
            return 0.0  # the stream ended before the verdict: listen again at once
        if not isinstance(exc, NotarydError) or isinstance(exc, UnreadableAnswer):
            raise exc  # a bug, or a daemon that speaks another shape: trying again will not help
        failures += 1
        if failures > RECONNECT_ATTEMPTS:
            raise exc
        if failures == 1:
            reason = "it is not running" if isinstance(exc, DaemonUnreachable) else str(exc)
            view.message(printable(f"notaryd: lost the daemon ({reason}); reconnecting"))
        return RECONNECT_DELAY_SECONDS

    with JobFollower(sys.stderr) as view:
        view.update(job)
        if not job.terminal:
            await reconnecting.run(follow, decide)
        state = job.state
        if state in VERDICTS:  # Apple decided: there is a log
            try:
                report = (await client.log(job.id)).get("report")
            except NotarydError:
                report = None
            if report and state is not JobOutcome.ACCEPTED:
                view.message(printable(str(report), multiline=True))
    print(printable(verdict_line(job)), file=sys.stderr)
    print(printable(job.id))
    return exit_codes.for_job(state)


def _jobs(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from service import machine
    from service.client.display import jobs_table

    jobs = _ask(settings, lambda client: client.jobs())
    if args.json:
        print(machine.dumps([machine.with_times(job.to_json()) for job in jobs]))
    elif not jobs:
        print("no jobs; queue one with `notaryd submit PATH`")
    else:
        import sys

        # Piped output keeps whole ids and paths; a terminal gets its own width.
        width = None if sys.stdout.isatty() else 250
        Console(width=width).print(jobs_table(jobs))
    return exit_codes.SUCCESS


def _job(args: argparse.Namespace, settings: Settings) -> int:
    from service import machine
    from service.client.display import describe

    job = _ask(settings, lambda client: client.job(args.job_id))
    print(machine.dumps(machine.with_times(job.to_json())) if args.json else describe(job))
    return exit_codes.SUCCESS


def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from service.client.display import JobsWatcher
    from service.runtime import run

    if args.job_id is not None:
        return _watch_one(args.job_id, settings)

    async def main() -> int:
        async with _client(settings) as client:
            with JobsWatcher() as view:
                for job in await client.jobs():
                    view.update(job)
                async for job in client.events():
                    view.update(job)
        return exit_codes.SUCCESS

    try:
        return run(main())
    except KeyboardInterrupt:
        return exit_codes.SUCCESS


def _watch_one(job_id: str, settings: Settings) -> int:
    import sys

    async def follow(client: DaemonClient) -> int:
        return await _follow(client, await client.job(job_id))

    try:
        return _ask(settings, follow)
    except KeyboardInterrupt:
        print(f"notaryd: job {job_id} keeps running in the daemon", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    job = _ask(settings, lambda client: client.cancel(args.job_id))
    print(printable(f"notaryd: job {job.id} {job.state}"), file=sys.stderr)
    return exit_codes.SUCCESS
