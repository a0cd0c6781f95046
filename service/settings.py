"""The one place that reads the environment and the TOML config file.

Every setting can come from ``NOTARYD_<NAME>`` in the environment or ``<name>`` (lower case) in
the TOML file; the environment wins. The file is ``--config PATH``, else ``$NOTARYD_CONFIG``, else
``<user config dir>/notaryd/config.toml`` (``~/Library/Application Support/notaryd/config.toml``
on macOS, ``~/.config/notaryd/config.toml`` on Linux) when it exists.

Errors name the variable or key, the source and the fix, and never echo secret values.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs

from uploader.checksum import ChecksumAlgorithm
from uploader.config import EngineConfig
from uploader.constants import DEFAULT_API_URL, STUCK_AFTER_SECONDS
from uploader.errors import ConfigError
from uploader.staple.lookup import DEFAULT_TICKET_URL

DEFAULT_LISTEN = "127.0.0.1:7780"
APP_NAME = "notaryd"

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
class Settings:
    # Notary API credentials (App Store Connect team API key)
    key_id: str | None = None
    issuer_id: str | None = None
    private_key: Path | None = None
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
    # notarisation wait
    stuck_after: float = STUCK_AFTER_SECONDS
    poll_initial: float = 10.0
    poll_max: float = 180.0
    # daemon
    listen: str = DEFAULT_LISTEN
    api_token: str | None = None
    allowed_roots: tuple[Path, ...] = field(default_factory=default_allowed_roots)
    max_jobs: int = 2
    max_parts_in_flight: int = 16
    bandwidth_limit: int | None = None
    shutdown_grace: float = 15.0
    # stapling and job-end notifications
    ticket_url: str = DEFAULT_TICKET_URL
    notify_url: str | None = None
    notify_secret: str | None = field(default=None, repr=False)
    config_file: Path | None = None

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def database_path(self) -> Path:
        return self.state_dir / "notaryd.sqlite3"

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
            poll_initial_seconds=self.poll_initial,
            poll_max_seconds=self.poll_max,
            stuck_after_seconds=self.stuck_after,
            ticket_url=self.ticket_url,
        )

    def __repr__(self) -> str:  # never show the API token
        token = "set" if self.api_token else "unset"
        return f"Settings(api_url={self.api_url!r}, state_dir={str(self.state_dir)!r}, api_token={token})"


class _Source:
    """Looks a setting up in the environment, then the file, and names where it came from."""

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, Any], file: Path | None):
        self.environ = environ
        self.file_values = file_values
        self.file = file

    def get(self, name: str, parse: Callable[[Any], T], default: T) -> T:
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
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _positive_int(raw: Any) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"must be a positive whole number, got {raw!r}")
    return value


def _positive_float(raw: Any) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be a positive number of seconds, got {raw!r}")
    return value


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _path(raw: Any) -> Path:
    return Path(os.path.expanduser(str(raw)))


def _paths(raw: Any) -> tuple[Path, ...]:
    items = raw if isinstance(raw, list) else str(raw).split(os.pathsep)
    return tuple(_path(item) for item in items if str(item))


def _listen(raw: Any) -> str:
    text = str(raw)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT such as 127.0.0.1:7780, got {text!r}")
    return text


def _url(raw: Any) -> str:
    text = str(raw).rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {text!r}")
    return text


def _checksum(raw: Any) -> ChecksumAlgorithm:
    return ChecksumAlgorithm.from_setting(str(raw))


def _str(raw: Any) -> str:
    return str(raw)


def load_settings(
    environ: Mapping[str, str] | None = None, config_path: Path | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    explicit = config_path or (Path(environ["NOTARYD_CONFIG"]) if environ.get("NOTARYD_CONFIG") else None)
    path = explicit or default_config_path()
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    elif explicit is not None:
        raise ConfigError(f"{path}: config file not found (given by --config or NOTARYD_CONFIG)")

    src = _Source(environ, file_values, path)
    d = Settings()
    return Settings(
        key_id=src.get("key_id", _str, d.key_id),
        issuer_id=src.get("issuer_id", _str, d.issuer_id),
        private_key=src.get("private_key", _path, d.private_key),
        api_url=src.get("api_url", _url, d.api_url),
        s3_endpoint_url=src.get("s3_endpoint_url", _url, d.s3_endpoint_url),
        s3_accelerate=src.get("s3_accelerate", _bool, d.s3_accelerate),
        part_size=src.get("part_size", _positive_int, d.part_size),
        concurrency=src.get("concurrency", _positive_int, d.concurrency),
        stall_timeout=src.get("stall_timeout", _positive_float, d.stall_timeout),
        checksum=src.get("checksum", _checksum, d.checksum),
        state_dir=src.get("state_dir", _path, d.state_dir),
        stuck_after=src.get("stuck_after", _positive_float, d.stuck_after),
        poll_initial=src.get("poll_initial", _positive_float, d.poll_initial),
        poll_max=src.get("poll_max", _positive_float, d.poll_max),
        listen=src.get("listen", _listen, d.listen),
        api_token=src.get("api_token", _str, d.api_token),
        allowed_roots=src.get("allowed_roots", _paths, d.allowed_roots),
        max_jobs=src.get("max_jobs", _positive_int, d.max_jobs),
        max_parts_in_flight=src.get("max_parts_in_flight", _positive_int, d.max_parts_in_flight),
        bandwidth_limit=src.get("bandwidth_limit", _positive_int, d.bandwidth_limit),
        shutdown_grace=src.get("shutdown_grace", _positive_float, d.shutdown_grace),
        ticket_url=src.get("ticket_url", _url, d.ticket_url),
        notify_url=src.get("notify_url", _url, d.notify_url),
        notify_secret=src.get("notify_secret", _str, d.notify_secret),
        config_file=path if path.exists() else None,
    )
