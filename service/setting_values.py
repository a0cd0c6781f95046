"""How a setting's value is read: one parser per kind, each refusing with the rule it broke.

Every number is finite, in a sane range, and keeps its kind (TOML 1.5 is not an integer setting's
1). Environment values are text; TOML values arrive typed. A parser raises ``ValueError`` with a
message that completes "<where the value came from>: ..." (``service.settings`` adds the where).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from uploader.checksum import ChecksumAlgorithm
from uploader.config import GiB, MiB


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

as_part_size = whole_number(5 * MiB, 5 * GiB, "bytes")  # S3's multipart limits
# 64 connections at S3's ~85 MB/s each is over 5 GB/s: more only adds sockets and memory
as_concurrency = whole_number(1, 64)
as_bandwidth = whole_number(1, 10**12, "bytes per second")


def as_bool(raw: Any) -> bool:
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


def as_text(raw: Any, what: str = "text") -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be {what} (a quoted string in TOML), got {_shown(raw)}")
    if "\x00" in raw or len(raw) > 4096:
        raise ValueError(f"must be {what} without NUL characters and under 4096 characters")
    return raw


def as_path(raw: Any) -> Path:
    return Path(os.path.expanduser(as_text(raw, "a path")))


def as_paths(raw: Any) -> tuple[Path, ...]:
    items = raw if isinstance(raw, list) else as_text(raw, "a path list").split(os.pathsep)
    return tuple(as_path(item) for item in items if item != "")


def as_host_names(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else as_text(raw, "a list of host names").split(",")
    names = tuple(as_text(item, "a host name").strip().lower().rstrip(".") for item in items)
    for name in names:
        if any(c.isspace() or c in "/:@[]" for c in name):
            raise ValueError(f"must be host names separated by commas, got {_shown(name)}")
    return tuple(name for name in names if name)


def as_listen(raw: Any) -> str:
    text = as_text(raw, "HOST:PORT").strip()
    host, sep, port = text.rpartition(":")
    bare_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (not sep or not bare_host or not port.isdigit() or not 0 <= int(port) <= 65535
            or any(c.isspace() or c in "/[]@" for c in bare_host)
            or (":" in bare_host and not host.startswith("["))):
        raise ValueError(
            f"must be HOST:PORT such as 127.0.0.1:7780 or [::1]:7780, got {_shown(text)}"
        )
    return text


def as_url(raw: Any) -> str:
    text = as_text(raw, "a URL").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {_shown(text)}")
    return text


def as_checksum(raw: Any) -> ChecksumAlgorithm:
    return ChecksumAlgorithm.from_setting(str(raw))


def as_str(raw: Any) -> str:
    return as_text(raw)
