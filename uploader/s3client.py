"""The S3 client (aioboto3) and the one place that decides what an S3 failure means.

Client settings, and why:

* botocore's own retries are off (``total_max_attempts=1``): the engine retries per part with
  its own policy and stall watchdog, and botocore's legacy mode would retry BadDigest 4 times.
  (aiohttp still re-sends an idempotent request once, at once, when a *reused* keep-alive
  connection turns out dead; ``part_body`` counts such re-reads as re-sent bytes.)
* ``payload_signing_enabled=False``: SigV4 with UNSIGNED-PAYLOAD even over plain HTTP, so the
  body is not read an extra time to SHA-256 it; integrity comes from the per-part checksum
  header that S3 verifies (``NOTARYD_CHECKSUM``, CRC64NVME by default).
* ``request_checksum_calculation=when_required``: we supply the part checksums ourselves
  (computed once, when a part is first read); botocore must not compute or trail another one.
* ``max_pool_connections`` above the part concurrency, so parts never queue for a socket.
* Sockets with ``TCP_NOTSENT_LOWAT`` (see ``wire_tracking_socket``): a bounded unsent backlog
  that wakes the event loop once per 512 KiB drained, not per few KiB.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore import exceptions as boto_exc
from botocore.httpsession import get_cert_path

from uploader import part_wire
from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.errors import StallError
from uploader.events import RetryReason
from uploader.part_body import tune_socket
from uploader.upload_session import CERTIFICATE_UNTRUSTED, Classified, ErrorKind


def wire_tracking_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp socket factory: a TCP socket whose unsent backlog is kept small."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    tune_socket(sock)
    return sock


class WireTrackingSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session: part bodies go on ``part_wire``'s blocking sockets, the
    rest through aiohttp with ``wire_tracking_socket`` for every connection.

    aiobotocore validates ``connector_args`` against a fixed list that lacks aiohttp's
    ``socket_factory``, so the factory is set on the connector it builds.
    """

    _part_wire: part_wire.PartWire | None = None

    def _create_connector(self, proxy_url: Any) -> aiohttp.TCPConnector:
        connector: aiohttp.TCPConnector = super()._create_connector(proxy_url)
        connector._socket_factory = wire_tracking_socket
        if isinstance(connector._ssl, ssl.SSLContext) and connector._ssl.verify_mode:
            # botocore's context leaves host names to urllib3, which aiohttp is not: without
            # this, any certificate the CA bundle trusts would pass for any S3 host.
            connector._ssl.check_hostname = True
        return connector

    async def send(self, request: Any) -> Any:
        proxy_url = self._proxy_config.proxy_url_for(request.url)
        if self._cert_file is None and part_wire.serves(request.url, proxy_url, request.body):
            if self._part_wire is None:
                verify = self._verify
                self._part_wire = part_wire.PartWire(part_wire.WireSettings(
                    ca_file=get_cert_path(verify) if verify else None, verify=bool(verify),
                    connect_timeout=self._timeout.sock_connect,
                    read_timeout=self._timeout.sock_read,
                    connections=self._max_pool_connections,
                ))
            return await self._part_wire.send(
                request, proxy_url,
                self._proxy_config.proxy_headers_for(proxy_url) if proxy_url else {})
        return await super().send(request)

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._part_wire is not None:
            self._part_wire.close()
            self._part_wire = None
        await super().__aexit__(*exc_info)


@functools.cache
def _shared_session() -> aioboto3.Session:
    """One session per process, like boto3's default session: its loader keeps botocore's S3
    model once read, where a session per client parsed that JSON again for every client (two per
    upload, ~0.1 CPU-s each). Credentials belong to each client, never to the session."""
    return aioboto3.Session()


@contextlib.asynccontextmanager
async def open_s3_client(
    config: EngineConfig, credentials: Credentials, *, read_timeout_seconds: float | None = None
) -> AsyncIterator[Any]:
    """One client per credential set (the notary service issues one set per submission).

    ``read_timeout_seconds`` replaces the default (the stall timeout) for calls that may keep
    the server quiet for longer, such as CompleteMultipartUpload.
    """
    s3_options: dict[str, Any] = {"payload_signing_enabled": False}
    if config.accelerate:
        s3_options["use_accelerate_endpoint"] = True
    elif config.endpoint_url:
        s3_options["addressing_style"] = "path"
    client_config = AioConfig(
        region_name=config.region,
        # "total_max_attempts", not "max_attempts": botocore reads the latter as *retries*.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=min(30.0, config.stall_timeout_seconds),
        # No byte from the server for a stall timeout is a stall too (a hung CreateMultipartUpload,
        # ListParts or Complete; S3 keeps a long Complete alive with whitespace, so it still
        # finishes). Part uploads also have the engine's watchdog on the sending side.
        read_timeout=read_timeout_seconds or config.stall_timeout_seconds,
        max_pool_connections=config.concurrency * 2 + 2,
        tcp_keepalive=True,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3=s3_options,
        http_session_cls=WireTrackingSession,
    )
    async with _shared_session().client(
        "s3",
        endpoint_url=config.endpoint_url,
        config=client_config,
        region_name=config.region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    ) as client:
        # UploadPart keeps botocore's "Expect: 100-continue" (registered on "before-call.s3"):
        # S3 answers 503 SlowDown, 500, 403 or RequestTimeout before the body is sent, so a
        # refused attempt costs a round trip instead of a whole part on the wire; on a lossy or
        # throttled link that saving is worth far more than one round trip per 16 MiB part. A
        # server that never answers the Expect is caught by the stall watchdog.
        yield client


# classify's answers: (kind, retry reason).
_EXPIRED = (ErrorKind.EXPIRED, RetryReason.OTHER)
_GONE = (ErrorKind.GONE, RetryReason.OTHER)
_DIGEST = (ErrorKind.BAD_DIGEST, RetryReason.BAD_DIGEST)
_PERMANENT = (ErrorKind.PERMANENT, RetryReason.OTHER)
_THROTTLED = (ErrorKind.TRANSIENT, RetryReason.THROTTLED)
_SERVER = (ErrorKind.TRANSIENT, RetryReason.SERVER_ERROR)
_TIMEOUT = (ErrorKind.TRANSIENT, RetryReason.TIMEOUT)
_CONNECTION = (ErrorKind.TRANSIENT, RetryReason.CONNECTION_RESET)

# An S3 error answer is judged by the first of these lookups that knows it: its code, when the
# code alone decides; its HTTP status (so a 503 ServiceUnavailable is throttling, and a 501 is a
# store without the operation whatever the code); a code that asks for a retry; then any 5xx is
# a server error and the rest is permanent.
_BY_CODE: dict[str, tuple[ErrorKind, RetryReason]] = {
    **dict.fromkeys(("ExpiredToken", "TokenRefreshRequired", "ExpiredTokenException"), _EXPIRED),
    "NoSuchUpload": _GONE,
    **dict.fromkeys(("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch",
                     "XAmzContentSHA256Mismatch"), _DIGEST),
    "RequestTimeout": (ErrorKind.TRANSIENT, RetryReason.REQUEST_TIMEOUT),
    "NotImplemented": _PERMANENT,
}
_BY_STATUS: dict[int, tuple[ErrorKind, RetryReason]] = {501: _PERMANENT, 429: _THROTTLED,
                                                        503: _THROTTLED}
_RETRY_CODES: dict[str, tuple[ErrorKind, RetryReason]] = {
    **dict.fromkeys(("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                     "TooManyRequests", "TooManyRequestsException", "RequestThrottled"),
                    _THROTTLED),
    **dict.fromkeys(("InternalError", "ServiceUnavailable", "InternalServerError", "BadGateway",
                     "GatewayTimeout"), _SERVER),
}
# A permanent answer with one of these codes (a bodiless answer, such as HEAD's, has its status
# for a code) refuses the operation itself: for an optional call (ListParts,
# AbortMultipartUpload, HeadObject) that means "do without it".
_DENIED_CODES = {"AccessDenied", "NotImplemented", "MethodNotAllowed", "AllAccessDisabled",
                 "403", "405", "501"}
# Exceptions that are no S3 answer (httpcore's map_exceptions): the first match wins, so
# timeouts (OSErrors too) come before connection errors.
_BY_TYPE: dict[tuple[type[BaseException], ...], tuple[ErrorKind, RetryReason]] = {
    (boto_exc.ReadTimeoutError, boto_exc.ConnectTimeoutError, TimeoutError,
     aiohttp.ServerTimeoutError): _TIMEOUT,
    (boto_exc.EndpointConnectionError, boto_exc.ConnectionClosedError, boto_exc.HTTPClientError,
     boto_exc.ResponseStreamingError, boto_exc.IncompleteReadError, aiohttp.ClientError,
     ConnectionError, OSError): _CONNECTION,
}


def classify(exc: BaseException) -> Classified:
    """Map any exception from an S3 call to what the engine should do about it (its
    ``ErrorKind``, whose row of ``upload_session.FAILURES`` says what happens).

    Transient: connection resets/aborts, timeouts, stalls, 5xx, 503 SlowDown/throttling,
    400 RequestTimeout. Expired: ExpiredToken. Gone: NoSuchUpload. Bad digest: S3 saw other
    bytes than we checksummed (the engine re-reads the part to tell a changed file from
    corruption in transit). Denied: the operation itself is refused. Everything else S3
    answered with is permanent.
    """
    if isinstance(exc, boto_exc.ClientError):
        return _answer(exc)
    if isinstance(exc, StallError):
        return Classified(ErrorKind.TRANSIENT, RetryReason.STALL, "Stall", str(exc))
    if _certificate_rejected(exc):  # retrying cannot help; the trust store must change
        return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, CERTIFICATE_UNTRUSTED, str(exc))
    for types, (kind, reason) in _BY_TYPE.items():
        if isinstance(exc, types):
            return Classified(kind, reason, type(exc).__name__, str(exc))
    return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, type(exc).__name__, str(exc))


def _answer(exc: boto_exc.ClientError) -> Classified:
    """An error answer from S3 (see ``_BY_CODE``)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    kind, reason = (_BY_CODE.get(code) or _BY_STATUS.get(status) or _RETRY_CODES.get(code)
                    or (_SERVER if status >= 500 else _PERMANENT))
    name = code or str(status)
    if kind is ErrorKind.PERMANENT and name in _DENIED_CODES:
        kind = ErrorKind.DENIED
    return Classified(kind, reason, name, str(error.get("Message", "")) or code)


def _certificate_rejected(exc: BaseException) -> bool:
    """True if TLS failed because the server's certificate was not trusted (anywhere in the
    cause chain: aiobotocore wraps aiohttp's error, which wraps ``ssl``'s)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (ssl.SSLCertVerificationError,
                             aiohttp.ClientConnectorCertificateError)):
            return True
        if isinstance(seen, boto_exc.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
