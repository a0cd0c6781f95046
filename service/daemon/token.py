"""The bearer token that guards every ``/v1`` route of the control API.

Where it comes from, for the daemon and the CLI alike:

1. ``NOTARYD_API_TOKEN`` (or ``api_token`` in the config file), else
2. the file ``<state dir>/api-token``, which the daemon creates 0600 on its first start.

Anyone who can read that file can drive the daemon, so it is created with ``O_EXCL`` and mode
0600 (no window where it exists with looser permissions), and tightened if found looser.
Comparisons are constant-time. The token is never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from uploader.errors import ConfigError, NotarydError

from .logfmt import quote

log = logging.getLogger(__name__)

TOKEN_FILE_NAME = "api-token"


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE_NAME


def ensure_token(configured: str | None, state_dir: Path) -> str:
    """The daemon's token: the configured one, else the state-dir file (created if missing)."""
    if configured:
        return configured
    path = token_path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    log.info("created API token file path=%s mode=0600", quote(path))
    return _read(path)


def find_token(configured: str | None, state_dir: Path) -> str:
    """The CLI's token: the configured one, else the file the daemon created."""
    if configured:
        return configured
    path = token_path(state_dir)
    if not path.exists():
        raise NotarydError(
            f"no API token: {path} does not exist and NOTARYD_API_TOKEN is not set. "
            "Start the daemon once (`notaryd serve`) to create it, or set NOTARYD_API_TOKEN "
            "to the daemon's token"
        )
    return _read(path)


def token_matches(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode(), presented.encode())


def _read(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("tightening token file permissions path=%s old_mode=%o new_mode=600", quote(path), mode)
            os.chmod(path, 0o600)
        token = path.read_text(encoding="ascii").strip()
    except PermissionError:
        raise NotarydError(
            f"{path}: permission denied reading the API token; run as the daemon's user "
            "or set NOTARYD_API_TOKEN"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the API token: {exc}") from None
    if not token:
        raise ConfigError(f"{path}: the API token file is empty; delete it and restart the daemon")
    return token
