"""App Store Connect team API key and the ES256 JWTs the notary service wants.

Token rules (developer.apple.com, "Generating tokens for API requests"): header ``alg`` ES256,
``kid`` key id, ``typ`` JWT; claims ``iss`` issuer id, ``iat``, ``exp``, ``aud``
``appstoreconnect-v1``; ``exp - iat`` at most 20 minutes. ``TokenSource`` mints 15-minute tokens
and mints a new one once fewer than 3 minutes are left, so every request carries a token that is
neither expired (with more than the request timeout to spare) nor longer-lived than allowed, however
long a wait lasts. Times are Unix seconds from an injected clock.

``load_api_key`` reads a file (or takes an ``InlineKey``, a key held in memory: the environment's
PEM or a keychain profile's, never written to disk): call it before the event loop starts or via
``asyncio.to_thread``. Neither the key nor a token is ever logged or put in a message; ``repr``
hides both.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from uploader.keytext import InlineKey, KeySource
from uploader.notary.errors import KeyFileError
from uploader.private_file import NotRegularFile, read_small_file, readable_by_others

AUDIENCE = "appstoreconnect-v1"
MAX_TOKEN_LIFETIME_SECONDS = 20 * 60
DEFAULT_TOKEN_LIFETIME_SECONDS = 15 * 60
DEFAULT_REFRESH_MARGIN_SECONDS = 3 * 60

_KEY_FILE_NAME = re.compile(r"^AuthKey_([A-Za-z0-9]+)\.p8$")
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class ApiKey:
    """A loaded team key. ``repr`` shows the ids and path, never the key."""

    key_id: str
    issuer_id: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    path: Path | None = None

    @property
    def key_id_from_file_name(self) -> str | None:
        """The id in ``AuthKey_<KEYID>.p8``, if the file still has Apple's name."""
        match = _KEY_FILE_NAME.match(self.path.name) if self.path else None
        return match.group(1) if match else None

    def mismatch_hint(self) -> str:
        """A hint for 401 messages when the file name names another key id."""
        from_name = self.key_id_from_file_name
        if from_name and from_name != self.key_id:
            return (
                f"the key file {self.path} is named for key id {from_name!r}, not {self.key_id!r}"
            )
        return ""


def load_api_key(source: KeySource | str, *, key_id: str, issuer_id: str) -> ApiKey:
    """Read and check ``AuthKey_<KEYID>.p8`` (or an in-memory key); every failure names the
    file or the key's origin, and the fix."""
    key_id = key_id.strip()
    issuer_id = issuer_id.strip()
    if not key_id:
        raise KeyFileError("no API key id given: set NOTARYD_KEY_ID (the 10-character Key ID)")
    if not issuer_id:
        raise KeyFileError(
            "no issuer id given: set NOTARYD_ISSUER_ID (the UUID shown above the team keys in "
            "App Store Connect → Users and Access → Integrations)"
        )
    if isinstance(source, InlineKey):
        return ApiKey(key_id=key_id, issuer_id=issuer_id,
                      private_key=parse_p8(source.pem, source.origin))
    path = Path(source).expanduser()
    data = read_key_file(path)
    return ApiKey(key_id=key_id, issuer_id=issuer_id, private_key=parse_p8(data, path), path=path)


def read_key_file(path: Path) -> bytes:
    try:
        data, info = read_small_file(path, 64 * 1024)
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: API key file not found; set NOTARYD_PRIVATE_KEY to the AuthKey_<KEYID>.p8 "
            "file downloaded from App Store Connect"
        ) from None
    except NotRegularFile:
        raise KeyFileError(f"{path}: not a regular file; point NOTARYD_PRIVATE_KEY at the .p8 file") from None
    except PermissionError:
        raise KeyFileError(
            f"{path}: permission denied reading the API key file; it must be readable by user "
            f"id {os.getuid()} (fix the owner, then `chmod 600 {path}`)"
        ) from None
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read the API key file ({error.strerror})") from None
    problem = readable_by_others(path, info, "the private key")
    if problem:
        raise KeyFileError(problem)
    return data


def parse_p8(data: bytes, path: Path | str = "<key>") -> ec.EllipticCurvePrivateKey:
    """Parse a PEM PKCS#8 P-256 private key, explaining exactly what is wrong otherwise."""
    labels = _PEM_LABEL.findall(data)
    if not labels:
        raise KeyFileError(
            f"{path}: not a PEM file (no '-----BEGIN PRIVATE KEY-----' line); use the .p8 file "
            "exactly as downloaded from App Store Connect"
        )
    label = labels[0].decode()
    if label == "ENCRYPTED PRIVATE KEY":
        raise KeyFileError(
            f"{path}: the private key is encrypted; App Store Connect keys are not, so use the "
            "original .p8 file (or decrypt it: `openssl pkcs8 -in KEY -out AuthKey_<KEYID>.p8`)"
        )
    if label == "EC PRIVATE KEY":
        raise KeyFileError(
            f"{path}: the key is in SEC1 'EC PRIVATE KEY' form, not PKCS#8 'PRIVATE KEY'; convert "
            "it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out AuthKey_<KEYID>.p8`"
        )
    if label != "PRIVATE KEY":
        raise KeyFileError(
            f"{path}: the PEM block is '{label}', not the PKCS#8 'PRIVATE KEY' of an App Store "
            "Connect API key"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(
            f"{path}: the 'PRIVATE KEY' block cannot be decoded ({error}); the file is damaged, "
            "download a new key from App Store Connect"
        ) from None
    except Exception as error:  # cryptography raises UnsupportedAlgorithm for odd keys
        raise KeyFileError(f"{path}: unsupported private key ({type(error).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(
            f"{path}: this is a {type(key).__name__.removeprefix('_').replace('PrivateKey', '')} "
            "key, not the EC (P-256) key App Store Connect issues"
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(
            f"{path}: the EC key is on curve {key.curve.name}, but ES256 needs P-256 (secp256r1)"
        )
    return key


class TokenSource:
    """Mints and caches ES256 JWTs; thread-safe.

    ``token()`` returns the cached token while more than ``refresh_margin_seconds`` of it remain,
    else mints a new one valid for ``lifetime_seconds`` from now.
    """

    def __init__(
        self,
        key: ApiKey,
        *,
        lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
        scope: tuple[str, ...] | None = None,
    ) -> None:
        if not 60 <= lifetime_seconds <= MAX_TOKEN_LIFETIME_SECONDS:
            raise ValueError(
                f"token lifetime must be within 60..{MAX_TOKEN_LIFETIME_SECONDS} s "
                f"(Apple rejects longer tokens), got {lifetime_seconds}"
            )
        if not 0 <= refresh_margin_seconds < lifetime_seconds:
            raise ValueError("refresh_margin_seconds must be within [0, lifetime_seconds)")
        self.key = key
        self.lifetime_seconds = int(lifetime_seconds)
        self.refresh_margin_seconds = refresh_margin_seconds
        self._clock = clock
        self._scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.minted = 0  # how many tokens were minted (for tests and diagnostics)

    def __repr__(self) -> str:
        return (
            f"<TokenSource key_id={self.key.key_id!r} issuer_id={self.key.issuer_id!r} "
            f"lifetime={self.lifetime_seconds}s minted={self.minted}>"
        )

    @property
    def key_id(self) -> str:
        return self.key.key_id

    @property
    def issuer_id(self) -> str:
        return self.key.issuer_id

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or self._expires_at - now < self.refresh_margin_seconds:
                self._token, self._expires_at = self._mint(now)
            return self._token

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.token()}"

    def _mint(self, now: float) -> tuple[str, float]:
        issued_at = int(now)
        expires_at = issued_at + self.lifetime_seconds
        claims: dict[str, object] = {
            "iss": self.key.issuer_id,
            "iat": issued_at,
            "exp": expires_at,
            "aud": AUDIENCE,
        }
        if self._scope:
            claims["scope"] = list(self._scope)
        token = jwt.encode(
            claims,
            self.key.private_key,
            algorithm="ES256",
            headers={"kid": self.key.key_id, "typ": "JWT"},
        )
        self.minted += 1
        return token, float(expires_at)
