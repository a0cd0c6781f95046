"""The bodies the emulator's servers answer with: notary JSON:API documents and S3 XML errors.

The notary API serves JSON as ``application/octet-stream`` with Apple's server headers, errors as
JSON:API (string ``status``, a request id) and authentication failures as plain text. The S3
front, the fault proxy and the developer-log download answer errors as S3 does: an XML
``<Error>`` with a request id that is also sent as ``x-amz-request-id``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

NOTARY_HEADERS: Mapping[str, str] = {
    "Server": "daiquiri/3.0.0",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
}


def iso_time(unix_seconds: float) -> str:
    """Apple's timestamp format: UTC, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def notary_request_id() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]


def s3_request_id() -> str:
    return secrets.token_hex(8).upper()


def json_document(
    doc: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(doc).encode(),
        content_type="application/octet-stream",
        headers={**NOTARY_HEADERS, **(headers or {})},
    )


def json_error(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    links: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {
        "id": notary_request_id(),
        "status": str(status),
        "code": code,
        "title": title,
        "detail": detail,
    }
    if links:
        error["links"] = dict(links)
    return json_document({"errors": [error]}, status, {"Connection": "close", **(headers or {})})


def not_found(resource_type: str, resource_id: str, verb: str = "with") -> web.Response:
    return json_error(
        404,
        "NOT_FOUND",
        "The specified resource does not exist",
        f"There is no resource of type '{resource_type}' {verb} id '{resource_id}'",
    )


def invalid_parameter(
    detail: str, *, title: str = "A parameter has an invalid value"
) -> web.Response:
    return json_error(400, "PARAMETER_ERROR.INVALID", title, detail)


def missing_parameter(detail: str) -> web.Response:
    return json_error(400, "PARAMETER_ERROR.REQUIRED", "A required parameter is missing", detail)


def unauthenticated() -> web.Response:
    return web.Response(
        status=401,
        text=f"Unauthenticated\n\nRequest ID: {notary_request_id()}.0.0\n",
        content_type="text/plain",
        headers={**NOTARY_HEADERS, "Connection": "close"},
    )


class S3Error(Exception):
    """An S3 error to answer with (``s3_error``): raised where a check fails."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def s3_error(status: int, code: str, message: str, *, resource: str | None = None) -> web.Response:
    """An S3 ``<Error>`` answer (``resource`` is the request's path, when S3 would name it)."""
    request_id = s3_request_id()
    named = f"<Resource>{escape(resource)}</Resource>" if resource is not None else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"{named}<RequestId>{request_id}</RequestId></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-amz-request-id": request_id},
    )
