"""Who may call the emulated notary API: team keys, JWT checks, and the hourly request budget.

A request carries ``Authorization: Bearer <JWT>``. The token must be ES256 with a registered
``kid``, ``iss`` equal to that key's issuer, ``aud`` ``appstoreconnect-v1``, a lifetime
(``exp - iat``) of at most 20 minutes plus a tolerance, an ``iat`` not in the future and an
``exp`` not in the past (both within the clock leeway), and no ``sub: "user"`` (individual keys
cannot notarise). Every refusal is recorded with its reason in ``auth_failures``; accepted
tokens are summarised in ``token_stats`` so tests can see how a client mints and reuses them.
"""

from __future__ import annotations

import collections
import os
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

AUDIENCE = "appstoreconnect-v1"


@dataclass(frozen=True)
class TokenRules:
    max_lifetime_seconds: float = 20 * 60
    lifetime_tolerance_seconds: float = 60.0
    clock_leeway_seconds: float = 60.0


@dataclass
class TeamKey:
    key_id: str
    issuer_id: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    path: Path | None = None  # where TeamKeys.make wrote the private key


@dataclass
class TokenStats:
    accepted: int = 0
    distinct: int = 0
    max_lifetime_seconds: float = 0.0  # largest exp - iat accepted
    max_age_seconds: float = 0.0  # largest now - iat seen on an accepted token
    _seen: set[str] = field(default_factory=set, repr=False)

    def record(self, token: str, lifetime: float, age: float) -> None:
        self.accepted += 1
        if token not in self._seen:
            self._seen.add(token)
            self.distinct += 1
        self.max_lifetime_seconds = max(self.max_lifetime_seconds, lifetime)
        self.max_age_seconds = max(self.max_age_seconds, age)


class Refused(Exception):
    """The request is not authenticated; ``reason`` says why (for tests, never for the client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TeamKeys:
    """The registered team keys, and the check of each request's bearer token against them."""

    def __init__(self, rules: TokenRules, clock: Callable[[], float]) -> None:
        self.rules = rules
        self._clock = clock
        self.keys: dict[str, TeamKey] = {}
        self.token_stats = TokenStats()
        self.auth_failures: list[str] = []

    def register(
        self, key_id: str, issuer_id: str, public_key: ec.EllipticCurvePublicKey
    ) -> TeamKey:
        team_key = TeamKey(key_id=key_id, issuer_id=issuer_id, public_key=public_key)
        self.keys[key_id] = team_key
        return team_key

    def make(
        self, directory: Path, *, key_id: str | None = None, issuer_id: str | None = None
    ) -> TeamKey:
        """Generate a P-256 team key, write ``AuthKey_<KEYID>.p8`` (0600) and register it.

        Writes a small file synchronously: call before serving traffic or via to_thread.
        """
        key_id = key_id or "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10)
        )
        issuer_id = issuer_id or str(uuid.uuid4())
        private_key = ec.generate_private_key(ec.SECP256R1())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"AuthKey_{key_id}.p8"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        team_key = self.register(key_id, issuer_id, private_key.public_key())
        team_key.path = path
        return team_key

    def authenticate(self, authorization: str) -> TeamKey:
        """The team key that signed this ``Authorization`` header; ``Refused`` otherwise."""
        try:
            return self._verify(authorization)
        except Refused as refused:
            self.auth_failures.append(refused.reason)
            raise

    def _verify(self, authorization: str) -> TeamKey:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme != "Bearer" or not token:
            raise Refused("no Bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Refused(f"malformed token: {error}") from None
        if header.get("alg") != "ES256":
            raise Refused(f"alg {header.get('alg')!r} is not ES256")
        team_key = self.keys.get(str(header.get("kid")))
        if team_key is None:
            raise Refused(f"unknown kid {header.get('kid')!r}")
        try:
            claims = jwt.decode(
                token,
                team_key.public_key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                options={
                    "require": ["iat", "exp", "aud"],
                    "verify_exp": False,  # checked below against the emulator's clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as error:
            raise Refused(f"token rejected: {error}") from None
        if claims.get("sub") == "user":
            raise Refused("individual key (sub=user) cannot use the notary service")
        if claims.get("iss") != team_key.issuer_id:
            raise Refused(f"iss {claims.get('iss')!r} does not own kid {team_key.key_id!r}")
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        now, leeway = self._clock(), self.rules.clock_leeway_seconds
        lifetime = expires_at - issued_at
        limit = self.rules.max_lifetime_seconds + self.rules.lifetime_tolerance_seconds
        if lifetime > limit:
            raise Refused(f"token lifetime {lifetime:g} s exceeds {limit:g} s")
        if issued_at > now + leeway:
            raise Refused(f"iat {issued_at:g} is in the future (now {now:g})")
        if expires_at <= now - leeway:
            raise Refused(f"token expired at {expires_at:g} (now {now:g})")
        self.token_stats.record(token, lifetime, now - issued_at)
        return team_key


class RequestBudget:
    """At most ``limit`` requests per key id in any sliding hour (None: unlimited)."""

    WINDOW_SECONDS = 3600.0

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._spent: dict[str, collections.deque[float]] = {}

    def spend(self, key_id: str, now: float) -> bool:
        """Count one request at ``now``; False (and not counted) when the hour's budget is gone."""
        if self.limit is None:
            return True
        window = self._spent.setdefault(key_id, collections.deque())
        while window and window[0] <= now - self.WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.limit:
            return False
        window.append(now)
        return True
