"""``python -m service.emulator``: a notary-service emulator with a SeaweedFS bucket, on loopback.

Makes a throw-away team key, prints the ``NOTARYD_*`` settings that point notaryd at it (API,
S3 endpoint, ticket lookup, key), and serves until SIGINT/SIGTERM. Example::

    python -m service.emulator --key-dir /tmp/notary-keys --processing-delay 5 > notary.env
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from pathlib import Path

from service.emulator.config import EmulatorConfig
from service.emulator.faults import Faults
from service.emulator.world import EmulatedWorld, WorldConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--s3-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--key-dir", type=Path, default=Path("notary-emulator-keys"))
    parser.add_argument("--processing-delay", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--credential-lifetime", type=float, default=12 * 3600, help="S3 credentials, seconds"
    )
    parser.add_argument("--stuck-next", type=int, default=0, help="never finish the next N")
    parser.add_argument("--agreement-missing", action="store_true")
    parser.add_argument("--put-object-only", action="store_true",
                        help="S3 credentials deny ListParts, Abort, HeadObject and GetObject")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    config = WorldConfig(
        emulator=EmulatorConfig(processing_delay_seconds=args.processing_delay,
                                credential_lifetime_seconds=args.credential_lifetime),
        emulator_faults=Faults(stuck_next=args.stuck_next, agreement_missing=args.agreement_missing),
        host=args.host, api_port=args.api_port, s3_port=args.s3_port,
        put_object_only=args.put_object_only,
    )
    async with EmulatedWorld(config) as world:
        key = await asyncio.to_thread(world.team_key, args.key_dir.resolve())
        for name, value in world.environment(key).items():
            print(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()  # whoever reads a redirected stdout gets the settings now
        print("# serving; Ctrl-C to stop", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print(f"# {world.emulator.submissions_created} submission(s) created", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from service.runtime import run

    return run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
