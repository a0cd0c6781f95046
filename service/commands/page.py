"""`notaryd open`: a one-time login URL for the daemon's live page at `/`.

Prints the URL (it works once, for two minutes) and, on a desktop, opens it in the default
browser. A desktop is macOS outside an SSH session, or a Linux/BSD session with a display
(``DISPLAY`` or ``WAYLAND_DISPLAY``); elsewhere (a build server over SSH) copy the URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from service import exit_codes
from service.commands import add_command

if TYPE_CHECKING:
    from service.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    page = add_command(
        subparsers, "open", _open,
        help="print (and on a desktop open) a one-time login URL for the daemon's page",
        description="Ask the running daemon for a one-time login URL of its live page at / "
                    "(jobs, progress, verdicts); print it, and open it in the browser on a desktop. "
                    "The link works once, for two minutes.",
    )
    page.add_argument("--no-browser", action="store_true", help="only print the URL")


def has_desktop(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if sys.platform == "darwin":
        return not env.get("SSH_CONNECTION")
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _open(args: argparse.Namespace, settings: Settings) -> int:
    from service.client.client import DaemonClient
    from service.runtime import run

    async def main() -> str:
        async with DaemonClient.from_settings(settings) as client:
            return await client.login_link()

    url = run(main())
    print(url, flush=True)
    if not args.no_browser and has_desktop():
        import webbrowser

        if not webbrowser.open(url):
            print("notaryd: no browser could be started; open the URL above", file=sys.stderr)
    else:
        print("notaryd: open the URL above in a browser on this machine (it works once, "
              "for two minutes)", file=sys.stderr)
    return exit_codes.SUCCESS
