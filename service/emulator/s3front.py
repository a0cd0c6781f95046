"""The emulator's S3 endpoint: checks Apple-style temporary credentials, then proxies to a real backend.

What a client sees matches the notary service's upload bucket closely enough for the upload engine:

* Each request must carry a SigV4 ``Authorization`` header made with credentials the emulator
  issued (access key id ``ASIA…`` plus ``x-amz-security-token``). The signature is recomputed
  with botocore's ``S3SigV4Auth`` over exactly the headers the client listed as signed, and the
  ``x-amz-content-sha256`` value as sent (``UNSIGNED-PAYLOAD``, a hex digest, or
  ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``).
* Errors are S3 XML: ``InvalidAccessKeyId`` 403, ``InvalidToken`` 400, ``ExpiredToken`` 400 once
  the credentials' lifetime is over (checked per request, so a multipart upload that straddles
  expiry fails on its next part), ``SignatureDoesNotMatch`` 403, ``AccessDenied`` 403 for any
  bucket or key other than the one object the credentials were issued for.
* Accepted requests are re-signed with the backend's own keys and streamed through in 1 MiB
  chunks in both directions (a part is never held in memory). ``Content-MD5``,
  ``x-amz-checksum-*`` and a signed payload hash are passed on, so the backend verifies them.
* Path-style (``/bucket/key``) and, for the buckets named in ``virtual_host_buckets``,
  virtual-host (``bucket.anything:port``) addressing both work, the latter standing in for
  ``bucket.s3-accelerate.amazonaws.com``.

**Deny mode** (``denied_operations``, settable at any time; ``PUT_OBJECT_ONLY`` is the preset):
the named operations answer ``403 AccessDenied`` for otherwise valid requests, as S3 does when a
session policy grants only ``s3:PutObject`` (which covers CreateMultipartUpload, UploadPart and
CompleteMultipartUpload). Apple does not document what its temporary credentials allow, so the
engine must resume and finish under that policy too.

When a ``PutObject`` or ``CompleteMultipartUpload`` succeeds, ``on_landed(bucket, key)`` is called
so the notary emulator can start processing. Safe for many concurrent requests on one loop.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

import aiohttp
import yarl
from aiohttp import web

from service.emulator import sigv4
from service.emulator.responses import S3Error, s3_error

CHUNK_BYTES = 1024 * 1024
MAX_CLOCK_SKEW_SECONDS = 15 * 60  # S3's RequestTimeTooSkewed limit

# What credentials scoped to the s3:PutObject action cannot do.
PUT_OBJECT_ONLY = frozenset({"ListParts", "AbortMultipartUpload", "HeadObject", "GetObject"})

# Request headers passed to the backend (besides host/date/auth, which are re-made).
_FORWARDED_PREFIXES = ("x-amz-",)
_FORWARDED_HEADERS = frozenset(
    {
        "content-type",
        "content-md5",
        "content-encoding",
        "content-disposition",
        "cache-control",
        "content-language",
        "expires",
    }
)
_NOT_FORWARDED = frozenset({"x-amz-security-token", "x-amz-date", "authorization", "host"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "content-length",
        "server",
        "date",
    }
)


@dataclass(frozen=True)
class Grant:
    """Temporary credentials and the single object they may write."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    bucket: str
    key: str
    expires_at: float  # Unix seconds


@dataclass(frozen=True)
class Backend:
    """The real S3-compatible server behind the front (SeaweedFS in tests and the demo)."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"


def operation_name(method: str, key: str, query: dict[str, str]) -> str:
    """The S3 API operation a request stands for (for counters and scope checks)."""
    if not key:
        if method == "GET" and "uploads" in query:
            return "ListMultipartUploads"
        return f"Bucket{method.title()}"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPart"
        return "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    return method


class S3Front:
    """An aiohttp application serving the emulated upload bucket; see the module docstring.

    ``grant_for(access_key_id)`` returns the issued credentials or None; ``on_landed(bucket, key)``
    is told about each completed object. ``clock`` decides credential expiry (Unix seconds).
    """

    def __init__(
        self,
        backend: Backend,
        grant_for: Callable[[str], Grant | None],
        on_landed: Callable[[str, str], None],
        *,
        region: str = "us-west-2",
        virtual_host_buckets: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        denied_operations: Iterable[str] = (),
    ) -> None:
        self.backend = backend
        self.denied_operations = frozenset(denied_operations)
        self.region = region
        self._virtual_host_buckets = frozenset(virtual_host_buckets)
        self._grant_for = grant_for
        self._on_landed = on_landed
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.app = web.Application(client_max_size=0)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app.on_cleanup.append(self._close)

    # -- backend access (also used by the notary emulator) ------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No total timeout: uploads of large parts over slow links are legitimate.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=300),
                auto_decompress=False,
            )
        return self._session

    async def _close(self, _app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _backend_headers(
        self, method: str, raw_path: str, headers: dict[str, str], content_sha256: str
    ) -> tuple[yarl.URL, dict[str, str]]:
        """Sign a backend request for ``raw_path`` (already percent-encoded, with query)."""
        base = yarl.URL(self.backend.endpoint_url)
        url = f"{self.backend.endpoint_url.rstrip('/')}{raw_path}"
        signed = sigv4.signed_headers(
            method,
            url,
            f"{base.host}:{base.port}" if base.port else str(base.host),
            headers,
            content_sha256,
            access_key=self.backend.access_key,
            secret_key=self.backend.secret_key,
            region=self.backend.region,
        )
        return yarl.URL(url, encoded=True), signed

    async def create_bucket(self, bucket: str) -> None:
        url, headers = self._backend_headers(
            "PUT", f"/{bucket}", {}, hashlib.sha256(b"").hexdigest()
        )
        async with self._http().put(url, headers=headers) as response:
            body = await response.read()
            if response.status not in (200, 409):
                raise RuntimeError(
                    f"backend CreateBucket {bucket}: {response.status} {body[:200]!r}"
                )

    async def read_object(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        """Stream an object from the backend in chunks of up to 1 MiB."""
        url, headers = self._backend_headers(
            "GET", f"/{bucket}/{_quote_key(key)}", {}, "UNSIGNED-PAYLOAD"
        )
        async with self._http().get(url, headers=headers) as response:
            if response.status != 200:
                body = await response.read()
                raise RuntimeError(f"backend GetObject {key}: {response.status} {body[:200]!r}")
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                yield chunk

    # -- request handling ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        bucket, key, backend_path = self._address(request, raw_path)
        operation = operation_name(request.method, key, query)
        try:
            grant = self._authenticate(request, raw_path, raw_query)
            self._authorize(grant, bucket, key, operation, query)
            response = await self._forward(request, backend_path, raw_query, operation, bucket, key)
        except S3Error as error:
            response = s3_error(error.status, error.code, error.message, resource=f"/{bucket}/{key}")
            if request.can_read_body:
                # Drain what the client already sent so it sees our answer, not a reset.
                await request.release()
        self.requests[(operation, response.status)] += 1
        return response

    def _address(self, request: web.Request, raw_path: str) -> tuple[str, str, str]:
        """(bucket, key, backend raw path) for path-style or virtual-host requests."""
        host = (request.host or "").rsplit(":", 1)[0]
        first, _, rest = host.partition(".")
        if rest and first in self._virtual_host_buckets:
            bucket = first
            key = unquote(raw_path.lstrip("/"))
            return bucket, key, f"/{bucket}{raw_path if raw_path != '/' else ''}"
        bucket_part, _, key_part = raw_path.lstrip("/").partition("/")
        return unquote(bucket_part), unquote(key_part), raw_path

    def _authenticate(self, request: web.Request, raw_path: str, raw_query: str) -> Grant:
        header = request.headers.get("Authorization", "")
        if not header:
            if "X-Amz-Signature" in raw_query:
                raise S3Error(403, "AccessDenied", "Pre-signed requests are not accepted here.")
            raise S3Error(403, "AccessDenied", "Anonymous access is forbidden for this operation.")
        auth = sigv4.parse_authorization(header)
        if auth is None:
            raise S3Error(
                400, "AuthorizationHeaderMalformed", "The authorization header is malformed."
            )
        grant = self._grant_for(auth.access_key_id)
        if grant is None:
            raise S3Error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        if not secrets.compare_digest(
            request.headers.get("x-amz-security-token", ""), grant.session_token
        ):
            raise S3Error(
                400, "InvalidToken", "The provided token is malformed or otherwise invalid."
            )
        if auth.region != self.region:
            raise S3Error(
                400,
                "AuthorizationHeaderMalformed",
                f"the region '{auth.region}' is wrong; expecting '{self.region}'",
            )
        if self._clock() >= grant.expires_at:
            raise S3Error(400, "ExpiredToken", "The provided token has expired.")
        self._check_signature(request, auth, grant, raw_path, raw_query)
        return grant

    def _check_signature(self, request: web.Request, auth: sigv4.Authorization, grant: Grant,
                         raw_path: str, raw_query: str) -> None:
        """The request's date, payload hash and SigV4 signature, as S3 checks them."""
        amz_date = request.headers.get("x-amz-date", "")
        sent_at = sigv4.parse_timestamp(amz_date)
        if sent_at is None:
            raise S3Error(403, "AccessDenied", "x-amz-date is missing or malformed.")
        if abs(time.time() - sent_at) > MAX_CLOCK_SKEW_SECONDS or amz_date[:8] != auth.date:
            raise S3Error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
        content_sha256 = request.headers.get("x-amz-content-sha256", "")
        if content_sha256.startswith("STREAMING-AWS4-HMAC-SHA256"):
            raise S3Error(501, "NotImplemented", "Chunk-signed payloads are not supported here.")
        if not content_sha256:
            raise S3Error(400, "InvalidRequest", "Missing required header x-amz-content-sha256.")
        if "host" not in auth.signed_headers:
            raise S3Error(403, "AccessDenied", "The host header must be signed.")
        expected = sigv4.signature(
            request.method,
            f"http://{request.host}{raw_path}" + (f"?{raw_query}" if raw_query else ""),
            request.headers.items(),
            access_key=grant.access_key_id,
            secret_key=grant.secret_access_key,
            region=self.region,
            signed_headers=auth.signed_headers,
            timestamp=amz_date,
        )
        if not secrets.compare_digest(expected, auth.signature):
            raise S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )

    def _authorize(
        self, grant: Grant, bucket: str, key: str, operation: str, query: dict[str, str]
    ) -> None:
        if bucket == grant.bucket:
            if key == grant.key:
                if operation in self.denied_operations:
                    raise S3Error(403, "AccessDenied", "Access Denied")
                return
            if operation == "ListMultipartUploads" and query.get("prefix") == grant.key:
                return
        raise S3Error(403, "AccessDenied", "Access Denied")

    async def _forward(
        self,
        request: web.Request,
        backend_path: str,
        raw_query: str,
        operation: str,
        bucket: str,
        key: str,
    ) -> web.StreamResponse:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
            and (name.lower() in _FORWARDED_HEADERS or name.lower().startswith(_FORWARDED_PREFIXES))
        }
        content_sha256 = (
            headers.pop("x-amz-content-sha256", None) or request.headers["x-amz-content-sha256"]
        )
        url, signed = self._backend_headers(
            request.method,
            backend_path + (f"?{raw_query}" if raw_query else ""),
            headers,
            content_sha256,
        )
        if request.content_length is not None:
            signed["Content-Length"] = str(request.content_length)
        body = _stream(request) if request.can_read_body else None
        try:
            backend_response = await self._http().request(
                request.method, url, headers=signed, data=body, skip_auto_headers={"Content-Type"}
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise S3Error(503, "ServiceUnavailable", f"backend unreachable: {error}") from None
        async with backend_response:
            response = web.StreamResponse(status=backend_response.status)
            for name, value in backend_response.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            if operation in ("CompleteMultipartUpload", "PutObject"):
                # Small answers; CompleteMultipartUpload can fail with 200 + <Error> in the body.
                payload = await backend_response.read()
                response.content_length = len(payload)
                await response.prepare(request)
                await response.write(payload)
                await response.write_eof()
                landed = backend_response.status == 200 and b"<Error>" not in payload
                if landed and "x-amz-copy-source" not in request.headers:
                    self._on_landed(bucket, key)
                return response
            if backend_response.content_length is not None:
                response.content_length = backend_response.content_length
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in backend_response.content.iter_chunked(CHUNK_BYTES):
                    await response.write(chunk)
            await response.write_eof()
            return response


async def _stream(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        yield chunk


def _quote_key(key: str) -> str:
    return quote(key, safe="/~")
