"""Pre-signed, expiring developer-log URLs, and the download endpoint that checks them.

Like S3's query-string authentication: ``Expires`` and an HMAC ``Signature`` over the method,
path and expiry ride in the URL. The download refuses a request that also carries an
``Authorization`` header (S3 allows one auth mechanism per request), a bad signature and an
expired URL, each with S3's XML error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from service.emulator.responses import s3_error

DOWNLOAD_PREFIX = "/logs-download/"
_LOG_PATH = re.compile(r"/logs-download/prod/([0-9a-f-]{36})/developer_log\.json")


class LogLinks:
    """Signs developer-log URLs and serves them; ``find_log(id)`` is the log, or None."""

    def __init__(
        self,
        find_log: Callable[[str], Mapping[str, Any] | None],
        *,
        lifetime_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._find_log = find_log
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._secret = secrets.token_bytes(32)

    def url(self, base_url: str, submission_id: str, access_key_id: str) -> str:
        path = f"{DOWNLOAD_PREFIX}prod/{submission_id}/developer_log.json"
        expires = int(self._clock() + self.lifetime_seconds)
        query = {
            "AWSAccessKeyId": access_key_id,
            "Signature": self._signature(path, expires),
            "x-amz-security-token": base64.b64encode(secrets.token_bytes(24)).decode(),
            "Expires": str(expires),
        }
        return f"{base_url}{quote(path)}?{urlencode(query)}"

    def _signature(self, path: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"GET\n{path}\n{expires}".encode(), hashlib.sha256)
        return base64.b64encode(mac.digest()).decode()

    async def download(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            return s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        path = request.path
        try:
            expires = int(request.query.get("Expires", ""))
        except ValueError:
            return s3_error(403, "AccessDenied", "Query-string authentication requires Expires")
        expected = self._signature(path, expires)
        if not hmac.compare_digest(expected, request.query.get("Signature", "")):
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self._clock() > expires:
            return s3_error(403, "AccessDenied", "Request has expired")
        match = _LOG_PATH.fullmatch(path)
        log = self._find_log(match.group(1)) if match else None
        if log is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(
            body=json.dumps(log, indent=2).encode(), content_type="application/json"
        )
