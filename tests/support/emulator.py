"""Pointing real ``notaryd`` processes at the notary emulator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from service.emulator.auth import TeamKey
from service.emulator.notary import BackgroundEmulator, NotaryEmulator
from tests.support.files import PART
from tests.support.files import file_sha256 as file_sha256  # also known from here


def notary_settings(emulator: NotaryEmulator, key: TeamKey) -> dict[str, str]:
    """NOTARYD_* settings that point notaryd at the emulator with ``key``."""
    return {
        **emulator.environment(key),
        "NOTARYD_PART_SIZE": str(PART),
        "NOTARYD_POLL_INITIAL": "0.2",
        "NOTARYD_POLL_MAX": "0.5",
    }


def notary_env(notary: BackgroundEmulator, key_dir: Path) -> dict[str, str]:
    """:func:`notary_settings` with a new team key written to ``key_dir``."""
    key = notary.call(lambda e: e.make_team_key(key_dir))
    return notary_settings(notary.emulator, key)


def cli_environment(emulator: NotaryEmulator, key: TeamKey, home: Path) -> dict[str, str]:
    """The whole environment of a `notaryd` CLI run against the emulator, its state under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(notary_settings(emulator, key))
    env.update(
        HOME=str(home),
        NOTARYD_STATE_DIR=str(home / "state"),
        NOTARYD_CONCURRENCY="4",
        NOTARYD_POLL_INITIAL="0.3",
        NOTARYD_POLL_MAX="1",
    )
    return env


def cli_environment_with_new_key(notary: BackgroundEmulator, home: Path) -> dict[str, str]:
    """:func:`cli_environment` with a new team key written under ``home``."""
    key = notary.call(lambda e: e.make_team_key(home / "keys"))
    return cli_environment(notary.emulator, key, home)


def notarize_command(archive: Path, *extra: str) -> list[str]:
    """`notaryd notarize ARCHIVE --skip-preflight ...`: test archives hold data, no code, which
    preflight refuses (nothing to ticket); the emulator takes them."""
    return [sys.executable, "-m", "service", "notarize", str(archive), "--skip-preflight", *extra]


def stored_sha256(notary: BackgroundEmulator, submission_id: str) -> str:
    """SHA-256 of the object the submission's upload left in the bucket, streamed back from S3."""

    async def digest_of(emulator: NotaryEmulator) -> str:
        digest = hashlib.sha256()
        submission = emulator.submissions[submission_id]
        async for chunk in emulator.s3.read_object(emulator.config.bucket, submission.object):
            await asyncio.to_thread(digest.update, chunk)
        return digest.hexdigest()

    return notary.run(digest_of, timeout_seconds=120)
