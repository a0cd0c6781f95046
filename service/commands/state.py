"""`notaryd state set-aside`: move a damaged state database aside, on request only.

notaryd never moves or deletes a damaged database by itself: it holds the ids of submissions in
progress, which someone may want to recover by hand. This command renames the database and its
``-wal``/``-shm`` files to ``notaryd.sqlite3.damaged-<UTC time>`` (and so on) in the same
directory, after checking that the database really is damaged and no daemon is using it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.serve_lock import holding_serve_lock
from uploader.errors import NotarydError

if TYPE_CHECKING:
    from service.settings import Settings



def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    state = subparsers.add_parser(
        "state",
        help="look after the local state database",
        description="Maintenance of the state database in NOTARYD_STATE_DIR.",
    )
    actions = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    set_aside = actions.add_parser(
        "set-aside",
        help="move a damaged state database aside and start with an empty one",
        description=(
            "Rename a damaged notaryd.sqlite3 (and its -wal/-shm files) to "
            "notaryd.sqlite3.damaged-<time> in the state directory. Refuses a healthy database "
            "and one a running `notaryd serve` uses. Submissions in progress are not resumed "
            "afterwards."
        ),
    )
    set_aside.set_defaults(handler=run_set_aside)


def run_set_aside(args: argparse.Namespace, settings: Settings) -> int:
    del args
    from service.runtime import run
    from uploader.database import CorruptDatabaseError, Database

    path = settings.database_path
    if not path.exists():
        print(f"notaryd: no state database at {path}; nothing to set aside")
        return 0
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
    return 0
