"""The App Store Connect API key in effect: key id, issuer id and the private key.

Four sources, each value taken from the first that has it: ``CredentialFlags`` (``--key``,
``--key-id``, ``--issuer``), then a keychain profile (``--profile``, else ``NOTARYD_PROFILE``,
else ``profile`` in the file), then the environment, then the config file. Key text (a PEM or its
base64) stays in memory (``InlineKey``) with every line registered for redaction; it is never
quoted in a message, and never taken from the command line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from service.keychain import StoredCredentials
from service.setting_values import as_path, as_str
from uploader.errors import ConfigError
from uploader.keytext import InlineKey, KeySource, NotAKey, pem_from_text, secret_lines
from uploader.redaction import register_secret

if TYPE_CHECKING:
    from service.setting_sources import SettingSource

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True)
class CredentialFlags:
    """``--profile``, ``--key``, ``--key-id``, ``--issuer`` as given on the command line of a
    command that authenticates (None: not given). ``--key`` is a path, never the key itself."""

    profile: str | None = None
    key: str | None = None
    key_id: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class _Credentials:
    key_id: str | None
    issuer_id: str | None
    private_key: KeySource | None
    profile: str | None


def resolve_credentials(src: SettingSource, file: Path, flags: CredentialFlags | None,
                 keychain: Callable[[str], StoredCredentials] | None) -> _Credentials:
    """Key id, issuer id and key: flags, then the profile, then environment, then file."""
    profile_name = (flags.profile if flags else None) or src.get("profile", as_str, None)
    stored: StoredCredentials | None = None
    if flags is not None and profile_name and not all((flags.key, flags.key_id, flags.issuer)):
        from service import keychain as os_keychain

        stored = (keychain or os_keychain.load)(os_keychain.check_profile_name(profile_name))
    flags = flags or CredentialFlags()
    # environment, then file: asked for always, so that a misspelt key in the file is caught
    env_or_file_key_id = src.get("key_id", as_str, None)
    env_or_file_issuer = src.get("issuer_id", as_str, None)
    raw_key = src.get("private_key", as_str, None)
    key_origin = ("NOTARYD_PRIVATE_KEY" if src.environ.get("NOTARYD_PRIVATE_KEY")
                  else f"{file}, key 'private_key'")
    private_key: KeySource | None = None
    if flags.key:
        private_key = _flag_key_path(flags.key)
    elif stored is not None:
        private_key = inline_key(stored.pem, f"keychain profile {profile_name!r}")
    elif raw_key is not None:
        private_key = key_source(raw_key, key_origin)
    return _Credentials(
        key_id=flags.key_id or (stored.key_id if stored else None) or env_or_file_key_id,
        issuer_id=flags.issuer or (stored.issuer_id if stored else None) or env_or_file_issuer,
        private_key=private_key,
        profile=profile_name if stored is not None else None,
    )


def key_source(raw: str, origin: str) -> KeySource:
    """``NOTARYD_PRIVATE_KEY``'s value: key text (kept in memory) or a path. The value is never
    quoted in a message: it may be the secret itself."""
    try:
        return inline_key(pem_from_text(raw), origin, raw)
    except NotAKey as not_a_key:
        compact = "".join(raw.split())
        if "\n" in raw.strip() or (len(compact) >= 64 and _BASE64.match(compact)):
            raise ConfigError(
                f"{origin} {not_a_key}; give the path of AuthKey_<KEYID>.p8, the PEM itself "
                "or `base64 < AuthKey_<KEYID>.p8`") from None
    return as_path(raw)


def inline_key(pem: str, origin: str, raw: str | None = None) -> InlineKey:
    """A key held in memory, every line of it (as given and decoded) registered for redaction."""
    register_key_text(pem, raw)
    return InlineKey(pem.encode("ascii", "replace"), origin)


def register_key_text(pem: str, raw: str | None = None) -> None:
    """Redact every line of a private key, as given (``raw``) and as PEM, from every log."""
    for line in secret_lines(raw or pem, pem):
        register_secret(line)


def _flag_key_path(raw: str) -> Path:
    try:
        pem_from_text(raw)
    except NotAKey:
        return as_path(raw)
    raise ConfigError("--key takes the path of AuthKey_<KEYID>.p8; pass the key itself through "
                      "NOTARYD_PRIVATE_KEY, never on the command line (other users can see it)")
