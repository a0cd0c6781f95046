"""`notaryd state set-aside` and `notaryd state prune`: looking after the state and work dirs.

`prune` removes the zips made from bundles (and their temporary files) that nothing needs any
more: not a run in progress, not a daemon job still queued or running, not a submission that
still has to upload one (``uploader.work_dir``); it says how much it freed.

`set-aside` moves a damaged state database aside, on request only.

notaryd never moves or deletes a damaged database by itself: it holds the ids of submissions in
progress, which someone may want to recover by hand. This command renames the database and its
``-wal``/``-shm`` files to ``notaryd.sqlite3.damaged-<UTC time>`` (and so on) in the same
directory, after checking that the database really is damaged and no daemon is using it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service import exit_codes
from service.commands import add_command, add_group
from service.serve_lock import holding_serve_lock
from uploader.bundle_zip import archive_dir
from uploader.errors import NotarydError

if TYPE_CHECKING:
    from service.settings import Settings



def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    actions = add_group(subparsers, "state", dest="state_command",
                        help="look after the local state database",
                        description="Maintenance of the state database in NOTARYD_STATE_DIR.")
    add_command(
        actions, "set-aside", run_set_aside,
        help="move a damaged state database aside and start with an empty one",
        description=(
            "Rename a damaged notaryd.sqlite3 (and its -wal/-shm files) to "
            "notaryd.sqlite3.damaged-<time> in the state directory. Refuses a healthy database "
            "and one a running `notaryd serve` uses. Submissions in progress are not resumed "
            "afterwards."
        ),
    )
    prune = add_command(
        actions, "prune", run_prune,
        help="remove zips and temporary files no unfinished job needs; says how much it freed",
        description=(
            "Remove the zips made from .app bundles (in NOTARYD_WORK_DIR, else the state "
            "directory) that no running notarisation, no unfinished daemon job and no "
            "submission still uploading needs, with their temporary files."
        ),
    )
    prune.add_argument("--older-than", metavar="D", type=_duration,
                       help="only what was last written more than D ago (90s, 30m, 12h, 7d)")


def _duration(text: str) -> float:
    from service.setting_values import DAY, duration

    try:
        return duration(10 * 365 * DAY)(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_prune(args: argparse.Namespace, settings: Settings) -> int:
    from service.daemon.job_store import JobStore
    from service.runtime import run
    from uploader.bundle_zip import archive_path_for
    from uploader.postgres import open_database
    from uploader.work_dir import needed_by_submissions, prune

    work_dirs = list(dict.fromkeys([settings.work_dir_in_effect, settings.state_dir]))

    async def main() -> str:
        db = await open_database(settings.database_path, settings.database_url)
        try:
            keep = await needed_by_submissions(db)
            jobs = await (await JobStore.open(db)).unfinished()
            keep |= {archive_path_for(job.path, d) for job in jobs for d in work_dirs}
            report = await asyncio.to_thread(prune, work_dirs, keep,
                                             older_than_seconds=args.older_than)
        finally:
            await db.close()
        return report.summary(archive_dir(d) for d in work_dirs)

    print(run(main()))
    return exit_codes.SUCCESS


def run_set_aside(args: argparse.Namespace, settings: Settings) -> int:
    del args
    from service.runtime import run
    from uploader.database import CorruptDatabaseError, Database

    path = settings.database_path
    if not path.exists():
        print(f"notaryd: no state database at {path}; nothing to set aside")
        return exit_codes.SUCCESS
    busy = f"a running `notaryd serve` uses {settings.state_dir}; stop it first"
    with holding_serve_lock(settings.state_dir, busy=busy):  # no daemon starts mid-move

        async def check() -> None:
            db = await Database.open(path)
            await db.close()

        try:
            run(check())
        except CorruptDatabaseError:
            pass
        else:
            raise NotarydError(f"{path} is healthy; nothing was moved")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = []
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                target = source.with_name(f"{source.name}.damaged-{stamp}")
                os.rename(source, target)
                moved.append(target.name)
    print(f"moved the damaged state database aside in {path.parent}: {', '.join(moved)}")
    return exit_codes.SUCCESS
