"""Pointing real ``notaryd`` processes at the notary emulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from service.emulator.auth import TeamKey
from service.emulator.notary import BackgroundEmulator, NotaryEmulator
from tests.support.files import PART


def notary_settings(emulator: NotaryEmulator, key: TeamKey) -> dict[str, str]:
    """NOTARYD_* settings that point notaryd at the emulator with ``key``."""
    return {
        "NOTARYD_API_URL": emulator.api_url,
        "NOTARYD_S3_ENDPOINT_URL": emulator.s3_endpoint_url,
        "NOTARYD_S3_ACCELERATE": "0",
        "NOTARYD_KEY_ID": key.key_id,
        "NOTARYD_ISSUER_ID": key.issuer_id,
        "NOTARYD_PRIVATE_KEY": str(key.path),
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
