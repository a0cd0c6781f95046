"""AWS Signature Version 4 as the S3 front needs it: check a client's, make one for the backend.

The signature is computed by botocore's ``S3SigV4Auth`` over exactly the headers the signer
listed (a client chooses which it signs; botocore alone would pick its own set), with the
``x-amz-content-sha256`` value as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials as BotoCredentials

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/s3/"
    r"aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> Authorization | None:
    match = _AUTH_HEADER.match(header.strip())
    if match is None:
        return None
    return Authorization(
        access_key_id=match["akid"],
        date=match["date"],
        region=match["region"],
        signed_headers=tuple(match["signed"].split(";")),
        signature=match["signature"],
    )


def parse_timestamp(value: str) -> float | None:
    """Unix seconds of an ``x-amz-date`` value; None when it is malformed."""
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class _ExactHeadersAuth(S3SigV4Auth):  # type: ignore[misc]
    """S3SigV4Auth that signs exactly the named headers, nothing else."""

    def __init__(self, credentials: BotoCredentials, region: str, signed: Iterable[str]) -> None:
        super().__init__(credentials, "s3", region)
        self._signed = [name.lower() for name in signed]

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                header_map[name] = value
        return header_map

    def sign(self, request: AWSRequest, timestamp: str) -> str:
        request.context["timestamp"] = timestamp
        canonical = self.canonical_request(request)
        return str(self.signature(self.string_to_sign(request, canonical), request))


def signature(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    signed_headers: Iterable[str],
    timestamp: str,
) -> str:
    """The hex signature of a request (``url`` with its raw, already-encoded path and query)."""
    request = AWSRequest(method=method, url=url)
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends: repeated headers are kept
    credentials = BotoCredentials(access_key, secret_key)
    return _ExactHeadersAuth(credentials, region, signed_headers).sign(request, timestamp)


def signed_headers(
    method: str,
    url: str,
    host: str,
    headers: Mapping[str, str],
    content_sha256: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
) -> dict[str, str]:
    """``headers`` plus ``x-amz-date``, ``x-amz-content-sha256`` and an ``authorization`` that
    signs all of them and ``host`` (which the HTTP client sets itself, so it is not returned)."""
    timestamp = datetime.now(UTC).strftime(TIMESTAMP_FORMAT)
    to_sign = {
        **{name.lower(): value for name, value in headers.items()},
        "host": host,
        "x-amz-date": timestamp,
        "x-amz-content-sha256": content_sha256,
    }
    names = sorted(to_sign)
    hex_signature = signature(
        method,
        url,
        to_sign.items(),
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        signed_headers=names,
        timestamp=timestamp,
    )
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    to_sign["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={hex_signature}"
    )
    del to_sign["host"]
    return to_sign
