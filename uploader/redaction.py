"""Secrets never leave the process through logging: redaction at the handler boundary.

``RedactingFilter`` sits on every handler of the root logger (``install``), so it sees the
records of third-party loggers too (aiosqlite DEBUG prints INSERT parameters, botocore DEBUG
prints ``X-Amz-Security-Token`` and ``Authorization`` headers). It rewrites the fully formatted
message, the traceback text and the stack text of each record before any formatter runs.

Two layers:

* **Known values**: secrets this process was handed (temporary S3 keys, session tokens, API
  tokens) are registered with ``register_secret`` where they enter the process
  (``Credentials``), and every occurrence is replaced, whatever the log line looks like.
* **Shapes**: JWTs, PEM private keys, ``name=value`` / ``"name": "value"`` pairs whose name says
  secret (signatures, session tokens, secret keys, authorization headers), AWS SigV4
  ``Signature=`` values, the user-info of URLs (``https://user:password@host``). This catches
  secrets that were never registered.

URLs shown to a person (messages, ``notaryd doctor``, errors) go through ``redact_url``, the one
rule for URLs: the user-info (user and password, or a token in its place) is replaced, and so is
every query value but an expiry or a date (pre-signed URLs, CloudKit's ``ckAPIToken``, any
``?token=``). ``redact_urls_in`` applies it to every URL inside a text.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 8  # shorter values would redact ordinary words
_MAX_KNOWN_SECRETS = 512  # oldest forgotten first; a process holds a handful at a time

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# A key has a base64 body after its header; a message that only names the header (the key
# file's "not a PEM file (no '-----BEGIN PRIVATE KEY-----' line)") is no secret.
_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----(?=\s*[A-Za-z0-9+/=]{4})"
    r".*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_BEARER = re.compile(r"(?<![A-Za-z0-9])(Bearer\s+)(?!\[REDACTED)[^'\"\s,;]+", re.IGNORECASE)
_SECRET_NAMES = (
    r"x-amz-security-token|x-amz-signature|x-amz-credential|signature|awssecretaccesskey"
    r"|awssessiontoken|aws_secret_access_key|aws_session_token|secret_access_key|session_token"
    r"|secretaccesskey|sessiontoken|api_token|notify_secret|password|authorization"
    r"|credential|private_key"
)
_NAME_WORDS = tuple(_SECRET_NAMES.split("|"))
# scheme://user-info@ : the user-info may be a password, or a token standing as the user name
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?!REDACTED@)[^/?#@\s]+@")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Query parameters of URLs that are safe to show; every other value is redacted.
_SAFE_QUERY_KEYS = frozenset({"expires", "x-amz-expires", "x-amz-date", "x-amz-algorithm"})
URL_REDACTED = "REDACTED"  # inside a URL: no brackets, which would need percent-encoding
# name, then a separator as it appears in URLs, headers, dict reprs and JSON, then the value
_NAMED = re.compile(
    r"(?P<name>(?<![A-Za-z0-9])(?:" + _SECRET_NAMES + r"))"
    r"(?P<sep>['\"]?\s*[:=]\s*(?:b(?=['\"]))?['\"]?)"  # b'...': a bytes repr
    r"(?P<value>(?:AWS4-HMAC-SHA256\s+|Bearer\s+)?[^'\"\s&,;}\])]+)",
    re.IGNORECASE,
)


class _KnownSecrets:
    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()  # botocore logs from worker threads
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            for form in {value, quote(value, safe=""), quote(value, safe="/")}:
                self._values[form] = None
                self._values.move_to_end(form)
            while len(self._values) > _MAX_KNOWN_SECRETS:
                self._values.popitem(last=False)
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._values:
                longest_first = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in longest_first))
            return self._pattern


_known = _KnownSecrets()


def register_secret(value: str | None) -> None:
    """Redact every later occurrence of ``value`` (and its URL-encoded forms) from logs."""
    if value:
        _known.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret and every secret-shaped value replaced."""
    pattern = _known.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    # cheap substring tests first: most log lines hold none of these shapes
    if "PRIVATE KEY-----" in text:
        text = _PEM.sub(REDACTED, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if any(word in lowered for word in _NAME_WORDS):
        text = _NAMED.sub(_replace_named, text)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(lambda m: m.group("scheme") + URL_REDACTED + "@", text)
    return text


def redact_url(url: str) -> str:
    """``url`` without its user-info, and with every query value except expiry/date replaced."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc and not parts.query:
        return url
    if "@" in parts.netloc:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        parts = parts._replace(netloc=f"{URL_REDACTED}@{host}" + (f":{port}" if port else ""))
    if parts.query:
        query = [(key, value if key.lower() in _SAFE_QUERY_KEYS else URL_REDACTED)
                 for key, value in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe=""))
    return urlunsplit(parts)


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text


def _replace_named(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == REDACTED or value.startswith("[REDACTED"):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{REDACTED}"


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, traceback and stack with secrets removed; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not leak the raw arguments either
            message = f"{record.msg!s} (unformattable log arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put one ``RedactingFilter`` on every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
