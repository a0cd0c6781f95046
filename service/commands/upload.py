"""`notaryd upload PATH --bucket B --key K`: resumable multipart upload of any file.

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; state from
NOTARYD_STATE_DIR; tuning from NOTARYD_PART_SIZE / NOTARYD_CONCURRENCY / NOTARYD_STALL_TIMEOUT.
Running the same command again after a crash resumes where the last one stopped: the state
database keeps the upload's plan and acknowledged parts, never the credentials (they are read
from the environment on every run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from service import exit_codes
from service.settings import Settings
from uploader.constants import DEFAULT_REGION
from uploader.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "upload", help="resumable S3 multipart upload of any file (re-run resumes)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--restart", action="store_true",
                        help="discard an unfinished upload of a file that has since changed")
    parser.set_defaults(handler=run)


def _credentials_from_environment() -> Any:
    from uploader.credentials import Credentials

    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        raise ConfigError(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (and AWS_SESSION_TOKEN for "
            "temporary credentials)"
        )
    return Credentials(key_id, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from service import runtime
    from service.progress import ProgressDisplay, human_bytes
    from uploader.engine import MultipartUploader
    from uploader.postgres import open_database

    if not args.path.is_file():
        raise ConfigError(f"{args.path}: no such file (give the path of the file to upload)")
    credentials = _credentials_from_environment()
    config = replace(
        settings.engine_config(endpoint_url=args.endpoint_url, accelerate=False), region=args.region
    )

    async def main() -> int:
        db = await open_database(settings.database_path, settings.database_url)
        try:
            with ProgressDisplay() as display:
                uploader = MultipartUploader(db, config, hooks=[display])
                result = await uploader.upload(
                    args.path, args.bucket, args.key, credentials, restart=args.restart
                )
        finally:
            await db.close()
        resumed = " (resumed)" if result.resumed else ""
        print(
            f"uploaded {args.path} to s3://{result.bucket}/{result.key}{resumed}: "
            f"{human_bytes(result.size)} in {result.part_count} parts, "
            f"{result.checksum_algorithm.lower()} {result.checksum or '(composite)'} verified by S3, "
            f"{human_bytes(result.bytes_sent)} sent ({human_bytes(result.bytes_resent)} re-sent)",
            file=sys.stdout,
        )
        return exit_codes.SUCCESS

    return runtime.run(main())
