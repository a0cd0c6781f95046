"""Credentials profiles in the OS keychain, the way notarytool's ``store-credentials`` keeps them.

One keychain item per profile (service ``notaryd``, account = the profile name) holds the key id,
the issuer id and the PEM as one JSON document, through ``keyring``: the macOS Keychain, the
Secret Service (GNOME Keyring, KWallet) on a Linux desktop. The profile *names* are not secret:
they are kept in ``profiles.json`` in the config dir so that ``credentials list`` needs no unlock.

Where keyring finds no real keychain (a headless Linux host: its fail or null backend), or only a
plain-text file backend, every call fails with one line pointing at the other ways to give the
key; nothing is ever written in plain text.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uploader.errors import ConfigError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "notaryd"
INDEX_NAME = "profiles.json"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_ITEM_BYTES = 64 * 1024
# keyring's stand-ins for "no keychain", and file backends that keep secrets readable
_REFUSED_BACKENDS = ("keyring.backends.fail.", "keyring.backends.null.")
OTHER_WAYS = ("give the key with NOTARYD_PRIVATE_KEY (a path, the PEM or its base64), "
              "NOTARYD_KEY_ID and NOTARYD_ISSUER_ID, or --key/--key-id/--issuer, or the config file")


class NoKeychain(ConfigError):
    """No OS keychain here; the message says so and names the other ways."""


@dataclass(frozen=True)
class StoredCredentials:
    key_id: str
    issuer_id: str
    pem: str = field(repr=False)


def check_profile_name(name: str) -> str:
    if not _PROFILE_NAME.match(name):
        raise ConfigError(f"profile {name[:70]!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def _describe(backend: object) -> str:
    kind = type(backend)
    return f"{kind.__module__}.{kind.__qualname__}"


def _refused(backend: object) -> bool:
    name = _describe(backend)
    return name.startswith(_REFUSED_BACKENDS) or "plaintext" in name.lower()


def backend() -> KeyringBackend:
    """The keychain to use: keyring's choice (``PYTHON_KEYRING_BACKEND`` or its config file
    included), or the first real keychain behind its chainer; never a plain-text one."""
    try:
        import keyring
        from keyring.backends.chainer import ChainerBackend

        chosen = keyring.get_keyring()
    except Exception as exc:  # keyring raises its own errors and plain ImportErrors alike
        raise NoKeychain(f"no OS keychain: keyring cannot start ({type(exc).__name__}); "
                         + OTHER_WAYS) from None
    candidates = list(chosen.backends) if isinstance(chosen, ChainerBackend) else [chosen]
    usable = [b for b in candidates if not _refused(b)]
    if not usable:
        found = ", ".join(_describe(b) for b in candidates) or "none"
        raise NoKeychain(
            f"no OS keychain on this host (keyring found: {found}; a headless Linux host has no "
            "Secret Service, and plain-text storage is refused); " + OTHER_WAYS)
    return usable[0]


def _call(what: str, profile: str, action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except NoKeychain:
        raise
    except Exception as exc:  # a locked, denied or broken keychain: one line, no traceback
        raise ConfigError(f"profile {profile!r}: the keychain refused to {what} "
                          f"({type(exc).__name__}); unlock it and try again, or " + OTHER_WAYS
                          ) from None


def store(profile: str, credentials: StoredCredentials, config_dir: Path) -> None:
    check_profile_name(profile)
    secret = json.dumps({"key_id": credentials.key_id, "issuer_id": credentials.issuer_id,
                         "private_key": credentials.pem})
    keychain = backend()
    _call("store the credentials", profile, keychain.set_password, SERVICE, profile, secret)
    _write_index(config_dir, sorted({*profiles(config_dir), profile}))


def load(profile: str) -> StoredCredentials:
    check_profile_name(profile)
    keychain = backend()
    secret = _call("read the credentials", profile, keychain.get_password, SERVICE, profile)
    if secret is None:
        raise ConfigError(
            f"profile {profile!r}: no credentials stored under this name; store them with "
            f"`notaryd credentials store {profile} --key AuthKey_<KEYID>.p8 --key-id KEYID "
            "--issuer ISSUER_UUID` (see `notaryd credentials list`)")
    try:
        document = json.loads(secret[:_MAX_ITEM_BYTES])
        return StoredCredentials(str(document["key_id"]), str(document["issuer_id"]),
                                 str(document["private_key"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"profile {profile!r}: the keychain item is not one notaryd stored; "
                          f"store it again with `notaryd credentials store {profile} ...`") from None


def delete(profile: str, config_dir: Path) -> bool:
    """Remove the profile; False when there was none."""
    check_profile_name(profile)
    keychain = backend()
    existed = _call("read the credentials", profile, keychain.get_password, SERVICE,
                    profile) is not None
    if existed:
        _call("delete the credentials", profile, keychain.delete_password, SERVICE, profile)
    known = profiles(config_dir)
    if profile in known:
        _write_index(config_dir, [name for name in known if name != profile])
    return existed or profile in known


def profiles(config_dir: Path) -> list[str]:
    """The stored profiles' names (the index; no keychain access)."""
    path = config_dir / INDEX_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the profile list ({exc.strerror}); remove it "
                          "and store the profiles again") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfigError(f"{path}: not a regular file; remove it")
        data = handle.read(_MAX_ITEM_BYTES + 1)
    try:
        names = json.loads(data)["profiles"]
        return sorted({check_profile_name(str(name)) for name in names})
    except (ValueError, KeyError, TypeError, ConfigError):
        raise ConfigError(f"{path}: not a profile list notaryd wrote; remove it and store the "
                          "profiles again") from None


def _write_index(config_dir: Path, names: list[str]) -> None:
    from uploader.state_dir import write_private

    write_private(config_dir / INDEX_NAME, (json.dumps({"profiles": names}) + "\n").encode())
