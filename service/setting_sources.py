"""Where a setting is found: ``NOTARYD_<NAME>`` in the environment, then ``<name>`` in the
TOML config file (``--config PATH``, else ``$NOTARYD_CONFIG``, else ``default_config_path()`` when
it exists).

The file is read without following surprises (a regular file, at most 256 KiB, UTF-8, TOML); one
that holds a secret (``api_token``, ``notify_secret``, a PEM key, a URL with credentials or a query
token) must be readable by its owner only, like the API key file, or it is refused with the
``chmod`` that fixes it. Every message names the variable or key and never echoes a value that
may be secret.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from uploader.errors import ConfigError
from uploader.private_file import NotRegularFile, read_small_file, readable_by_others
from uploader.redaction import redact_url

APP_NAME = "notaryd"
_MAX_CONFIG_BYTES = 256 * 1024

T = TypeVar("T")


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def config_file(environ: Mapping[str, str], config_path: Path | None) -> tuple[Path, dict[str, Any] | None]:
    """The config file's path and its values (None: there is no file, and none was asked for)."""
    explicit = config_path or (Path(environ["NOTARYD_CONFIG"]) if environ.get("NOTARYD_CONFIG") else None)
    path = explicit or default_config_path()
    try:
        present = path.exists()
    except OSError as exc:  # a folder on the way that this user may not enter
        raise ConfigError(f"{path}: cannot look for the config file ({exc.strerror or exc}); let "
                          "this user reach its folder, or set NOTARYD_CONFIG") from None
    if present:
        return path, read_config(path)
    if explicit is not None:
        raise ConfigError(f"{path}: config file not found (given by --config or NOTARYD_CONFIG)")
    return path, None


class SettingSource:
    """Looks a setting up in the environment, then the file, and names where it came from.

    Remembers every name asked for, so that ``check_no_unknown_keys`` can catch a misspelt key.
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


def read_config(path: Path) -> dict[str, Any]:
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
