"""The redacting log filter on the exact shapes third-party loggers print (issue 10, item 1)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from uploader.credentials import Credentials
from uploader.database import Database
from uploader.redaction import REDACTED, RedactingFilter, install, redact

JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjJYOVI0SFhGMzQifQ.eyJpc3MiOiI1NzI0NmQ2ZC0xMjM0In0.c2lnbmF0dXJl"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A root handler like the CLI's, with the filter installed, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    install()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize(
    "line, secret",
    [
        ("Sending http request: <AWSPreparedRequest headers={'X-Amz-Security-Token': "
         "b'IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLXdlc3QtMiJHMEUCIQ', 'Authorization': "
         "b'AWS4-HMAC-SHA256 Credential=ASIAXYZ/20240101/us-west-2/s3/aws4_request, "
         "SignedHeaders=host, Signature=0123456789abcdef0123456789abcdef'}>",
         "IQoJb3JpZ2luX2VjEJr"),
        ("Signature=0123456789abcdef0123456789abcdef", "0123456789abcdef"),
        # a value starting with "b" is not a bytes repr: its first letter must not survive
        ("?Expires=1&Signature=bXl6c2lnbmF0dXJl&x-amz-security-token=bAbc123", "bXl6"),
        ("{'X-Amz-Security-Token': b'IQoJb3JpZ2luX2VjEJr'}", "IQoJb3JpZ2lu"),
        ('{"awsSecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "bucket": "b"}', "wJalrXUtn"),
        (f"headers {{'Authorization': 'Bearer {JWT}'}}", "c2lnbmF0dXJl"),
        (f"token {JWT} in a sentence", "eyJpc3Mi"),
        ("https://s3/x?AWSAccessKeyId=ASIA&Signature=abc%2Fdef&x-amz-security-token=tok%2B1"
         "&Expires=1", "abc%2Fdef"),
        ("https://s3/x?x-amz-security-token=tok%2B12345&Expires=1", "tok%2B12345"),
        ("-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----",
         "MIGTAgEAMBMG"),
        ("key file starts -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB", "MHcCAQEEIB"),
    ],
)
def test_secret_shapes_are_redacted(line: str, secret: str) -> None:
    out = redact(line)
    assert secret not in out
    assert REDACTED in out
    assert not re.search(r"(?i)(signature|token)=(?!\[REDACTED)\w", out), out


def test_ordinary_text_is_left_alone() -> None:
    line = "part 3 of 12 uploaded; signature check of Game.app failed: no hardened runtime"
    assert redact(line) == line


def test_issued_credentials_are_redacted_wherever_they_appear(captured: io.StringIO) -> None:
    credentials = Credentials(
        "ASIAEXAMPLEKEY", "Zm9vYmFyYmF6cXV4c2VjcmV0a2V5/x+y", "c2Vzc2lvbi10b2tlbg==")
    logging.getLogger("some.library").debug("params %r", ("x", credentials.secret_access_key))
    logging.getLogger("other").info("url ?t=%s", "c2Vzc2lvbi10b2tlbg%3D%3D")
    text = captured.getvalue()
    assert "Zm9vYmFyYmF6" not in text and "c2Vzc2lvbi10b2tlbg" not in text
    assert text.count(REDACTED) == 2


def test_tracebacks_are_redacted_and_kept(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("x").exception("failed")
    text = captured.getvalue()
    assert "ValueError: bad token [REDACTED]" in text and "eyJ" not in text


async def test_aiosqlite_debug_lines_lose_the_insert_parameters(
    captured: io.StringIO, tmp_path: Path
) -> None:
    secret = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRlc3Q="
    Credentials("ASIAEXAMPLE", secret, None)
    db = await Database.open(tmp_path / "state" / "db.sqlite3")
    try:
        await db.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                         " VALUES (?, '', '/x', 0)", (secret,))
    finally:
        await db.close()
    text = captured.getvalue()
    assert "INSERT INTO submission_intents" in text  # the library really logged the statement
    assert secret not in text


def test_filter_survives_unformattable_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items %s", ("many",), None)
    assert RedactingFilter().filter(record)
    assert "unformattable" in record.getMessage()
