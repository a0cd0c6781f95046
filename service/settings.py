"""The one place that reads the environment and the TOML config file.

Every setting can come from ``NOTARYD_<NAME>`` in the environment or ``<name>`` (lower case) in
the TOML file; the environment wins. The API key (key id, issuer id, private key) has two more
sources, above both: ``CredentialFlags`` (``--key``, ``--key-id``, ``--issuer``) first, then a
keychain profile (``--profile``, else ``NOTARYD_PROFILE``, else ``profile`` in the file). Each of
the three values is taken from the first source that has it.

``NOTARYD_PRIVATE_KEY`` (and ``private_key``) is a path, or the PEM itself, or its base64 (how CI
secrets arrive); key text stays in memory (``InlineKey``) and is registered for redaction. The file is ``--config PATH``, else ``$NOTARYD_CONFIG``, else
``<user config dir>/notaryd/config.toml`` (``~/Library/Application Support/notaryd/config.toml``
on macOS, ``~/.config/notaryd/config.toml`` on Linux) when it exists.

Errors name the variable or key, the source and the fix, and never echo secret values. A config
file that holds a secret (``api_token``, ``notify_secret``, a URL with credentials or a query
token) must be readable by its owner only, like the API key file: otherwise it is refused with
the ``chmod`` that fixes it.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import socket
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import platformdirs

from service.daemon.broker import MAX_EVENT_STREAMS
from service.fleet.names import (
    DEFAULT_LEASE_SECONDS,
    default_worker_name,
    lease_seconds,
    worker_name,
)
from service.keychain import StoredCredentials
from uploader.checksum import ChecksumAlgorithm
from uploader.config import EngineConfig, GiB, MiB
from uploader.constants import DEFAULT_API_URL, STUCK_AFTER_SECONDS
from uploader.errors import ConfigError
from uploader.keytext import InlineKey, KeySource, NotAKey, pem_from_text, secret_lines
from uploader.postgres import database_url
from uploader.private_file import NotRegularFile, read_small_file, readable_by_others
from uploader.redaction import redact_url, register_secret
from uploader.staple.lookup import DEFAULT_TICKET_URL

DEFAULT_LISTEN = "127.0.0.1:7780"
APP_NAME = "notaryd"
_MAX_CONFIG_BYTES = 256 * 1024
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

if TYPE_CHECKING:
    from uploader.notary.pipeline import NotaryConfig

T = TypeVar("T")


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_state_dir() -> Path:
    # macOS: ~/Library/Application Support/notaryd; Linux: ~/.local/state/notaryd
    if sys.platform == "darwin":
        return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def default_allowed_roots() -> tuple[Path, ...]:
    return (Path.home(), Path("/Volumes"))


@dataclass(frozen=True)
class CredentialFlags:
    """``--profile``, ``--key``, ``--key-id``, ``--issuer`` as given on the command line."""

    profile: str | None = None
    key: str | None = None
    key_id: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class Settings:
    # Notary API credentials (App Store Connect team API key)
    key_id: str | None = None
    issuer_id: str | None = None
    private_key: KeySource | None = None
    profile: str | None = None  # the keychain profile the key came from
    api_url: str = DEFAULT_API_URL
    # S3 upload
    s3_endpoint_url: str | None = None
    s3_accelerate: bool = True
    part_size: int = EngineConfig.part_size
    concurrency: int = EngineConfig.concurrency
    stall_timeout: float = EngineConfig.stall_timeout_seconds
    checksum: ChecksumAlgorithm = EngineConfig.checksum
    # local state
    state_dir: Path = field(default_factory=default_state_dir)
    work_dir: Path | None = None  # zips made from bundles; None: in the state dir
    # notarisation wait
    stuck_after: float = STUCK_AFTER_SECONDS
    poll_initial: float = 10.0
    poll_max: float = 180.0
    timeout: float | None = None  # bounds a whole `notarize` (NOTARYD_TIMEOUT / --timeout)
    # daemon
    listen: str = DEFAULT_LISTEN
    api_token: str | None = None
    allowed_roots: tuple[Path, ...] = field(default_factory=default_allowed_roots)
    allowed_hosts: tuple[str, ...] = ()  # Host names the daemon answers to besides its own
    max_jobs: int = 2
    max_parts_in_flight: int = 16
    bandwidth_limit: int | None = None
    shutdown_grace: float = 15.0
    max_event_streams: int = MAX_EVENT_STREAMS  # open GET /v1/events streams; more get 429
    # stapling and job-end notifications
    ticket_url: str = DEFAULT_TICKET_URL
    notify_url: str | None = None
    notify_secret: str | None = field(default=None, repr=False)
    config_file: Path | None = None
    # the fleet store (issue 22): "" = SQLite in the state dir, else postgresql://… (uploader/postgres)
    database_url: str = field(default="", repr=False)
    worker_name: str = field(default_factory=default_worker_name)  # names this worker of the fleet
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # a fleet worker renews its job leases every third

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def database_path(self) -> Path:
        return self.state_dir / "notaryd.sqlite3"

    @property
    def work_dir_in_effect(self) -> Path:
        """Where zips made from bundles go: NOTARYD_WORK_DIR, else the state dir."""
        return self.work_dir or self.state_dir

    def engine_config(
        self, *, endpoint_url: str | None = None, accelerate: bool | None = None
    ) -> EngineConfig:
        """Engine settings; the notary layer decides endpoint and acceleration per upload."""
        endpoint = endpoint_url if endpoint_url is not None else self.s3_endpoint_url
        use_accelerate = self.s3_accelerate if accelerate is None else accelerate
        return EngineConfig(
            part_size=self.part_size,
            concurrency=self.concurrency,
            stall_timeout_seconds=self.stall_timeout,
            checksum=self.checksum,
            endpoint_url=endpoint,
            accelerate=use_accelerate and endpoint is None,
        )

    def notary_config(self) -> NotaryConfig:
        """Settings of the notarisation pipeline; names what is missing and where to set it."""
        from uploader.notary.pipeline import NotaryConfig

        missing = [
            f"NOTARYD_{name.upper()} (or '{name}' in {self.config_file or default_config_path()})"
            for name, value in (("key_id", self.key_id), ("issuer_id", self.issuer_id),
                                ("private_key", self.private_key))
            if not value
        ]
        if missing:
            raise ConfigError(
                "App Store Connect API key not configured: set " + ", ".join(missing)
                + ". Create a team key under Users and Access > Integrations > App Store Connect API."
            )
        assert self.key_id and self.issuer_id and self.private_key
        return NotaryConfig(
            api_url=self.api_url,
            key_path=self.private_key,
            key_id=self.key_id,
            issuer_id=self.issuer_id,
            engine=self.engine_config(),
            state_dir=self.state_dir,
            work_dir=self.work_dir,
            poll_initial_seconds=self.poll_initial,
            poll_max_seconds=self.poll_max,
            stuck_after_seconds=self.stuck_after,
            ticket_url=self.ticket_url,
        )

    def __repr__(self) -> str:  # never show the API token
        token = "set" if self.api_token else "unset"
        return f"Settings(api_url={self.api_url!r}, state_dir={str(self.state_dir)!r}, api_token={token})"


class _Source:
    """Looks a setting up in the environment, then the file, and names where it came from.

    Remembers every name asked for, so that ``unknown_file_keys`` can catch a misspelt key.
    """

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, Any], file: Path | None):
        self.environ = environ
        self.file_values = file_values
        self.file = file
        self.asked: set[str] = set()

    def get(self, name: str, parse: Callable[[Any], T], default: T) -> T:
        self.asked.add(name)
        env_name = f"NOTARYD_{name.upper()}"
        if env_name in self.environ and self.environ[env_name] != "":
            raw: Any = self.environ[env_name]
            where = f"environment variable {env_name}"
        elif name in self.file_values:
            raw = self.file_values[name]
            where = f"{self.file}, key '{name}'"
        else:
            return default
        try:
            return parse(raw)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def check_no_unknown_keys(self) -> None:
        unknown = sorted(set(self.file_values) - self.asked - {"config"})
        if not unknown:
            return
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(self.asked), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "remove it"
        raise ConfigError(f"{self.file}, key '{key}': not a notaryd setting; {hint}")


# Validation: every number is finite, in a sane range, and keeps its kind (TOML 1.5 is not an
# integer setting's 1). Environment values are text; TOML values arrive typed.

def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(minimum: int, maximum: int, unit: str = "") -> Callable[[Any], int]:
    """Parser of an integer setting within ``minimum..maximum``."""
    suffix = f" {unit}" if unit else ""

    def parse(raw: Any) -> int:
        if isinstance(raw, str):
            try:
                value = int(raw.strip().replace("_", ""), 10)
            except ValueError:
                raise ValueError(f"must be a whole number{suffix}, got {_shown(raw)}") from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise ValueError(f"must be a whole number{suffix}, got {_shown(raw)}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum:,} and {maximum:,}{suffix}, got {value:,}")
        return value

    return parse


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def seconds(maximum: float, minimum: float = 0.0, *,
            zero: bool = False) -> Callable[[Any], float]:
    """Parser of a duration in seconds: finite, more than ``minimum`` (at least 0 with
    ``zero``), at most ``maximum``."""
    lowest = "at least 0" if zero else f"more than {_number(minimum)}"

    def parse(raw: Any) -> float:
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise ValueError(f"must be a number of seconds, got {_shown(raw)}") from None
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        else:
            raise ValueError(f"must be a number of seconds, got {_shown(raw)}")
        low_enough = value >= 0 if zero else value > minimum
        if not math.isfinite(value) or not low_enough or value > maximum:
            raise ValueError(
                f"must be {lowest} and at most {_number(maximum)} seconds, got {_shown(raw)}")
        return value

    return parse


def seconds_option(maximum: float, *, zero: bool = False) -> Callable[[str], float]:
    """argparse ``type=`` for a command-line duration in seconds: the same rule as ``seconds``
    (finite, more than 0 or with ``zero`` at least 0, at most ``maximum``), refused with
    argparse's usage error."""
    parse = seconds(maximum, zero=zero)

    def option(text: str) -> float:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return option


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                       r"(?:(\d+(?:\.\d+)?)s?)?")


def duration(maximum: float) -> Callable[[Any], float]:
    """Parser of a duration: seconds (``5400``) or with units (``90m``, ``1h30m``, ``2d``)."""
    as_seconds = seconds(maximum)

    def parse(raw: Any) -> float:
        if not isinstance(raw, str):
            return as_seconds(raw)
        text = raw.strip().lower().replace(" ", "")
        match = _DURATION.fullmatch(text)
        if not text or match is None or not any(match.groups()):
            raise ValueError(f"must be a duration such as 90m, 2h or 5400 (seconds), got {_shown(raw)}")
        days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        return as_seconds(((days * 24 + hours) * 60 + minutes) * 60 + secs)

    return parse


HOUR = 3600.0
DAY = 24 * HOUR



_positive_int = whole_number(1, 2**31 - 1)
_positive_float = seconds(30 * DAY)
_part_size = whole_number(5 * MiB, 5 * GiB, "bytes")  # S3's multipart limits
# 64 connections at S3's ~85 MB/s each is over 5 GB/s: more only adds sockets and memory
_concurrency = whole_number(1, 64)
_bandwidth = whole_number(1, 10**12, "bytes per second")


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"must be true or false, got {_shown(raw)}")
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be 1/0, true/false, yes/no or on/off, got {_shown(raw)}")


def _text(raw: Any, what: str = "text") -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be {what} (a quoted string in TOML), got {_shown(raw)}")
    if "\x00" in raw or len(raw) > 4096:
        raise ValueError(f"must be {what} without NUL characters and under 4096 characters")
    return raw


def _path(raw: Any) -> Path:
    return Path(os.path.expanduser(_text(raw, "a path")))


def _paths(raw: Any) -> tuple[Path, ...]:
    items = raw if isinstance(raw, list) else _text(raw, "a path list").split(os.pathsep)
    return tuple(_path(item) for item in items if item != "")


def _host_names(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else _text(raw, "a list of host names").split(",")
    names = tuple(_text(item, "a host name").strip().lower().rstrip(".") for item in items)
    for name in names:
        if any(c.isspace() or c in "/:@[]" for c in name):
            raise ValueError(f"must be host names separated by commas, got {_shown(name)}")
    return tuple(name for name in names if name)


def _listen(raw: Any) -> str:
    text = _text(raw, "HOST:PORT").strip()
    host, sep, port = text.rpartition(":")
    bare_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (not sep or not bare_host or not port.isdigit() or not 0 <= int(port) <= 65535
            or any(c.isspace() or c in "/[]@" for c in bare_host)
            or (":" in bare_host and not host.startswith("["))):
        raise ValueError(
            f"must be HOST:PORT such as 127.0.0.1:7780 or [::1]:7780, got {_shown(text)}"
        )
    return text


def check_listen_resolves(settings: Settings) -> None:
    """Resolve ``listen``'s host now, so that an unresolvable one is one line, not a traceback."""
    try:
        socket.getaddrinfo(settings.listen_host, settings.listen_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"NOTARYD_LISTEN {settings.listen!r}: cannot resolve host {settings.listen_host!r} "
            f"({getattr(exc, 'strerror', None) or exc}); use an address such as 127.0.0.1:7780"
        ) from None


def _url(raw: Any) -> str:
    text = _text(raw, "a URL").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {_shown(text)}")
    return text


def _checksum(raw: Any) -> ChecksumAlgorithm:
    return ChecksumAlgorithm.from_setting(str(raw))


def _str(raw: Any) -> str:
    return _text(raw)


def load_settings(
    environ: Mapping[str, str] | None = None, config_path: Path | None = None,
    flags: CredentialFlags | None = None,
    keychain: Callable[[str], StoredCredentials] | None = None,
) -> Settings:
    """The settings in effect. ``flags`` is given by commands that authenticate: only they
    consult the keychain profile (``keychain`` looks one up; default: the OS keychain)."""
    environ = os.environ if environ is None else environ
    explicit = config_path or (Path(environ["NOTARYD_CONFIG"]) if environ.get("NOTARYD_CONFIG") else None)
    path = explicit or default_config_path()
    file_values: dict[str, Any] = {}
    try:
        present = path.exists()
    except OSError as exc:  # a folder on the way that this user may not enter
        raise ConfigError(f"{path}: cannot look for the config file ({exc.strerror or exc}); let "
                          "this user reach its folder, or set NOTARYD_CONFIG") from None
    if present:
        file_values = _read_config(path)
    elif explicit is not None:
        raise ConfigError(f"{path}: config file not found (given by --config or NOTARYD_CONFIG)")

    src = _Source(environ, file_values, path)
    d = Settings()
    credentials = _credentials(src, path, flags, keychain)
    settings = Settings(
        key_id=credentials.key_id,
        issuer_id=credentials.issuer_id,
        private_key=credentials.private_key,
        profile=credentials.profile,
        api_url=src.get("api_url", _url, d.api_url),
        s3_endpoint_url=src.get("s3_endpoint_url", _url, d.s3_endpoint_url),
        s3_accelerate=src.get("s3_accelerate", _bool, d.s3_accelerate),
        part_size=src.get("part_size", _part_size, d.part_size),
        concurrency=src.get("concurrency", _concurrency, d.concurrency),
        stall_timeout=src.get("stall_timeout", seconds(HOUR), d.stall_timeout),
        checksum=src.get("checksum", _checksum, d.checksum),
        state_dir=src.get("state_dir", _path, d.state_dir),
        work_dir=src.get("work_dir", _path, d.work_dir),
        stuck_after=src.get("stuck_after", seconds(30 * DAY), d.stuck_after),
        poll_initial=src.get("poll_initial", seconds(HOUR), d.poll_initial),
        poll_max=src.get("poll_max", seconds(HOUR), d.poll_max),
        timeout=src.get("timeout", duration(30 * DAY), d.timeout),
        listen=src.get("listen", _listen, d.listen),
        api_token=src.get("api_token", _str, d.api_token),
        allowed_roots=src.get("allowed_roots", _paths, d.allowed_roots),
        allowed_hosts=src.get("allowed_hosts", _host_names, d.allowed_hosts),
        max_jobs=src.get("max_jobs", whole_number(1, 64), d.max_jobs),
        max_parts_in_flight=src.get(
            "max_parts_in_flight", whole_number(1, 1024), d.max_parts_in_flight),
        bandwidth_limit=src.get("bandwidth_limit", _bandwidth, d.bandwidth_limit),
        shutdown_grace=src.get("shutdown_grace", seconds(HOUR), d.shutdown_grace),
        max_event_streams=src.get("max_event_streams", whole_number(1, 4096),
                                  d.max_event_streams),
        ticket_url=src.get("ticket_url", _url, d.ticket_url),
        notify_url=src.get("notify_url", _url, d.notify_url),
        notify_secret=src.get("notify_secret", _str, d.notify_secret),
        config_file=path if present else None,
        database_url=src.get("database_url", database_url, d.database_url),
        worker_name=src.get("worker_name", worker_name, d.worker_name),
        lease_seconds=src.get("lease_seconds", lease_seconds, d.lease_seconds),
    )
    src.check_no_unknown_keys()
    register_secret(settings.api_token)
    register_secret(settings.notify_secret)
    return settings


@dataclass(frozen=True)
class _Credentials:
    key_id: str | None
    issuer_id: str | None
    private_key: KeySource | None
    profile: str | None


def _credentials(src: _Source, file: Path, flags: CredentialFlags | None,
                 keychain: Callable[[str], StoredCredentials] | None) -> _Credentials:
    """Key id, issuer id and key: flags, then the profile, then environment, then file."""
    profile_name = (flags.profile if flags else None) or src.get("profile", _str, None)
    stored: StoredCredentials | None = None
    if flags is not None and profile_name and not all((flags.key, flags.key_id, flags.issuer)):
        from service import keychain as os_keychain

        stored = (keychain or os_keychain.load)(os_keychain.check_profile_name(profile_name))
    flags = flags or CredentialFlags()
    # environment, then file: asked for always, so that a misspelt key in the file is caught
    env_or_file_key_id = src.get("key_id", _str, None)
    env_or_file_issuer = src.get("issuer_id", _str, None)
    raw_key = src.get("private_key", _str, None)
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
    return _path(raw)


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
        return _path(raw)
    raise ConfigError("--key takes the path of AuthKey_<KEYID>.p8; pass the key itself through "
                      "NOTARYD_PRIVATE_KEY, never on the command line (other users can see it)")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data, info = read_small_file(path, _MAX_CONFIG_BYTES)
    except NotRegularFile as exc:
        raise ConfigError(f"{path}: the config file is {exc.strerror}; give a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is larger than {_MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: config file is not UTF-8 text (line {line}, "
            f"byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    secrets = _secret_keys(values)
    if secrets:  # the key file's rule: a secret on disk is readable by its owner only
        problem = readable_by_others(path, info, f"the config file (it holds {', '.join(secrets)})")
        if problem:
            raise ConfigError(problem)
    return values


_SECRET_KEYS = frozenset({"api_token", "notify_secret"})


def _secret_keys(values: Mapping[str, Any]) -> list[str]:
    """The keys of a config file whose values are, or carry, secrets: tokens, a PEM key, URLs
    with credentials or query tokens (what ``redact_url`` would hide)."""
    return sorted(
        key for key, value in values.items()
        if key in _SECRET_KEYS or (isinstance(value, str) and (
            "PRIVATE KEY-----" in value or ("://" in value and redact_url(value) != value)))
    )
