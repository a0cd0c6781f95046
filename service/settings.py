"""The settings in effect: ``Settings``, and ``load_settings``, the one place that reads them.

Every setting can come from ``NOTARYD_<NAME>`` in the environment or ``<name>`` (lower case) in
the TOML file; the environment wins (``service.setting_sources``). The API key (key id, issuer id,
private key) has two more sources, above both: ``CredentialFlags`` (``--key``, ``--key-id``,
``--issuer``) first, then a keychain profile (``--profile``, else ``NOTARYD_PROFILE``, else
``profile`` in the file); each of the three values is taken from the first source that has it
(``service.setting_credentials``).

``NOTARYD_PRIVATE_KEY`` (and ``private_key``) is a path, or the PEM itself, or its base64 (how CI
secrets arrive); key text stays in memory (``InlineKey``) and is registered for redaction. The
file is ``--config PATH``, else ``$NOTARYD_CONFIG``, else ``<user config dir>/notaryd/config.toml``
(``~/Library/Application Support/notaryd/config.toml`` on macOS, ``~/.config/notaryd/config.toml``
on Linux) when it exists.

Errors name the variable or key, the source and the fix, and never echo secret values
(``service.setting_values`` holds a parser per kind of value). A config file that holds a secret
(``api_token``, ``notify_secret``, a URL with credentials or a query token) must be readable by its
owner only, like the API key file: otherwise it is refused with the ``chmod`` that fixes it.

Adding a setting is a field of ``Settings`` and a row of ``_PARSERS``.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from service.daemon.broker import MAX_EVENT_STREAMS
from service.fleet.names import (
    DEFAULT_LEASE_SECONDS,
    default_worker_name,
    lease_seconds,
    worker_name,
)
from service.keychain import StoredCredentials
from service.setting_credentials import CredentialFlags, resolve_credentials
from service.setting_sources import APP_NAME, SettingSource, config_file, default_config_path
from service.setting_values import (
    DAY,
    HOUR,
    as_bandwidth,
    as_bool,
    as_checksum,
    as_concurrency,
    as_host_names,
    as_listen,
    as_part_size,
    as_path,
    as_paths,
    as_str,
    as_url,
    duration,
    seconds,
    whole_number,
)
from uploader.checksum import ChecksumAlgorithm
from uploader.config import EngineConfig
from uploader.constants import DEFAULT_API_URL, DEFAULT_TICKET_URL, STUCK_AFTER_SECONDS
from uploader.errors import ConfigError
from uploader.keytext import KeySource
from uploader.postgres import database_url
from uploader.redaction import register_secret

DEFAULT_LISTEN = "127.0.0.1:7780"

if TYPE_CHECKING:
    from uploader.notary.pipeline import NotaryConfig


def default_state_dir() -> Path:
    # macOS: ~/Library/Application Support/notaryd; Linux: ~/.local/state/notaryd
    if sys.platform == "darwin":
        return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def default_allowed_roots() -> tuple[Path, ...]:
    return (Path.home(), Path("/Volumes"))


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
            api_url=self.api_url, key_path=self.private_key, key_id=self.key_id,
            issuer_id=self.issuer_id, engine=self.engine_config(), state_dir=self.state_dir,
            work_dir=self.work_dir, poll_initial_seconds=self.poll_initial,
            poll_max_seconds=self.poll_max, stuck_after_seconds=self.stuck_after,
            ticket_url=self.ticket_url,
        )

    def __repr__(self) -> str:  # never show the API token
        token = "set" if self.api_token else "unset"
        return f"Settings(api_url={self.api_url!r}, state_dir={str(self.state_dir)!r}, api_token={token})"


# Every setting but the API key's, in the order they are read (the first bad one is reported).
_PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "api_url": as_url,
    "s3_endpoint_url": as_url,
    "s3_accelerate": as_bool,
    "part_size": as_part_size,
    "concurrency": as_concurrency,
    "stall_timeout": seconds(HOUR),
    "checksum": as_checksum,
    "state_dir": as_path,
    "work_dir": as_path,
    "stuck_after": seconds(30 * DAY),
    "poll_initial": seconds(HOUR),
    "poll_max": seconds(HOUR),
    "timeout": duration(30 * DAY),
    "listen": as_listen,
    "api_token": as_str,
    "allowed_roots": as_paths,
    "allowed_hosts": as_host_names,
    "max_jobs": whole_number(1, 64),
    "max_parts_in_flight": whole_number(1, 1024),
    "bandwidth_limit": as_bandwidth,
    "shutdown_grace": seconds(HOUR),
    "max_event_streams": whole_number(1, 4096),
    "ticket_url": as_url,
    "notify_url": as_url,
    "notify_secret": as_str,
    "database_url": database_url,
    "worker_name": worker_name,
    "lease_seconds": lease_seconds,
}


def load_settings(
    environ: Mapping[str, str] | None = None, config_path: Path | None = None,
    flags: CredentialFlags | None = None,
    keychain: Callable[[str], StoredCredentials] | None = None,
) -> Settings:
    """The settings in effect. ``flags`` is given by commands that authenticate: only they
    consult the keychain profile (``keychain`` looks one up; default: the OS keychain)."""
    environ = os.environ if environ is None else environ
    path, file_values = config_file(environ, config_path)
    src = SettingSource(environ, file_values or {}, path)
    defaults = Settings()
    credentials = resolve_credentials(src, path, flags, keychain)
    settings = Settings(
        key_id=credentials.key_id,
        issuer_id=credentials.issuer_id,
        private_key=credentials.private_key,
        profile=credentials.profile,
        **{name: src.get(name, parse, getattr(defaults, name)) for name, parse in _PARSERS.items()},
        config_file=path if file_values is not None else None,
    )
    src.check_no_unknown_keys()
    register_secret(settings.api_token)
    register_secret(settings.notify_secret)
    return settings


def check_listen_resolves(settings: Settings) -> None:
    """Resolve ``listen``'s host now, so that an unresolvable one is one line, not a traceback."""
    try:
        socket.getaddrinfo(settings.listen_host, settings.listen_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"NOTARYD_LISTEN {settings.listen!r}: cannot resolve host {settings.listen_host!r} "
            f"({getattr(exc, 'strerror', None) or exc}); use an address such as 127.0.0.1:7780"
        ) from None
