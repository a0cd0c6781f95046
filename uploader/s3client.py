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

import asyncio
import contextlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore import exceptions as boto_exc

from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.errors import StallError
from uploader.events import RetryReason

# At most this many bytes may wait unsent in the kernel per connection, and the kernel wakes
# the writer once half of them left (Linux wakes below lowat/2): 1 MiB means one wake-up
# per 512 KiB whatever the receiver's pace, where 128 KiB cost ~12,000 per GiB behind a slow
# link. Without a bound the auto-tuned send buffer (up to 4 MiB) would swallow a quarter part
# at once; the stall watchdog does not depend on it (``part_body`` probes the kernel's own
# count of bytes that left). Bytes sent but not yet acknowledged are not limited, so
# throughput on long fat links is unaffected. SO_SNDBUF is left to the kernel's auto-tuning
# (Linux and macOS grow it to 4 MiB or more; a fixed value would switch that off).
NOTSENT_LOWAT_BYTES = 1024 * 1024
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 0x201 if sys.platform == "darwin" else None)


def wire_tracking_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp socket factory: a TCP socket whose unsent backlog is kept small."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    if _TCP_NOTSENT_LOWAT is not None:
        with contextlib.suppress(OSError):  # not every kernel has it; then we only lose precision
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES)
    return sock


class WireTrackingSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session with ``wire_tracking_socket`` for every connection.

    aiobotocore validates ``connector_args`` against a fixed list that lacks aiohttp's
    ``socket_factory``, so the factory is set on the connector it builds.
    """

    def _create_connector(self, proxy_url: Any) -> aiohttp.TCPConnector:
        connector: aiohttp.TCPConnector = super()._create_connector(proxy_url)
        connector._socket_factory = wire_tracking_socket
        return connector


@contextlib.asynccontextmanager
async def open_s3_client(
    config: EngineConfig, credentials: Credentials, *, read_timeout_seconds: float | None = None
) -> AsyncIterator[Any]:
    """One client per credential set (the notary service issues one set per submission).

    ``read_timeout_seconds`` replaces the default (the stall timeout) for calls that may keep
    the server quiet for longer, such as CompleteMultipartUpload.
    """
    session = aioboto3.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=config.region,
    )
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
    async with session.client("s3", endpoint_url=config.endpoint_url, config=client_config) as client:
        # UploadPart keeps botocore's "Expect: 100-continue" (registered on "before-call.s3"):
        # S3 answers 503 SlowDown, 500, 403 or RequestTimeout before the body is sent, so a
        # refused attempt costs a round trip instead of a whole part on the wire; on a lossy or
        # throttled link that saving is worth far more than one round trip per 16 MiB part. A
        # server that never answers the Expect is caught by the stall watchdog.
        yield client


class ErrorKind:
    TRANSIENT = "transient"
    BAD_DIGEST = "bad_digest"
    EXPIRED = "expired"
    GONE = "gone"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Classified:
    kind: str
    reason: RetryReason
    code: str
    message: str


_EXPIRED = {"ExpiredToken", "TokenRefreshRequired", "ExpiredTokenException"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequests", "TooManyRequestsException", "RequestThrottled"}
_SERVER = {"InternalError", "ServiceUnavailable", "InternalServerError", "BadGateway",
           "GatewayTimeout"}
_DIGEST = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch",
           "XAmzContentSHA256Mismatch"}


def classify(exc: BaseException) -> Classified:
    """Map any exception from an S3 call to what the engine should do about it.

    Transient: connection resets/aborts, timeouts, stalls, 5xx, 503 SlowDown/throttling,
    400 RequestTimeout. Expired: ExpiredToken. Gone: NoSuchUpload. Bad digest: S3 saw other
    bytes than we checksummed (the engine re-reads the part to tell a changed file from
    corruption in transit). Everything else S3 answered with is permanent.
    """
    if isinstance(exc, StallError):
        return Classified(ErrorKind.TRANSIENT, RetryReason.STALL, "Stall", str(exc))
    if isinstance(exc, boto_exc.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _EXPIRED:
            return Classified(ErrorKind.EXPIRED, RetryReason.OTHER, code, message)
        if code == "NoSuchUpload":
            return Classified(ErrorKind.GONE, RetryReason.OTHER, code, message)
        if code in _DIGEST:
            return Classified(ErrorKind.BAD_DIGEST, RetryReason.BAD_DIGEST, code, message)
        if code == "RequestTimeout":
            return Classified(ErrorKind.TRANSIENT, RetryReason.REQUEST_TIMEOUT, code, message)
        if code == "NotImplemented" or status == 501:  # a store without this operation
            return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, code or str(status), message)
        if code in _THROTTLED or status in (429, 503):
            return Classified(ErrorKind.TRANSIENT, RetryReason.THROTTLED, code or str(status), message)
        if code in _SERVER or status >= 500:
            return Classified(ErrorKind.TRANSIENT, RetryReason.SERVER_ERROR, code or str(status), message)
        return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, code or str(status), message)
    if _certificate_rejected(exc):  # retrying cannot help; the trust store must change
        return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, CERTIFICATE_UNTRUSTED, str(exc))
    if isinstance(exc, (boto_exc.ReadTimeoutError, boto_exc.ConnectTimeoutError, TimeoutError,
                        asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return Classified(ErrorKind.TRANSIENT, RetryReason.TIMEOUT, type(exc).__name__, str(exc))
    if isinstance(exc, (boto_exc.EndpointConnectionError, boto_exc.ConnectionClosedError,
                        boto_exc.HTTPClientError, boto_exc.ResponseStreamingError,
                        boto_exc.IncompleteReadError, aiohttp.ClientError, ConnectionError,
                        OSError)):
        return Classified(ErrorKind.TRANSIENT, RetryReason.CONNECTION_RESET, type(exc).__name__, str(exc))
    return Classified(ErrorKind.PERMANENT, RetryReason.OTHER, type(exc).__name__, str(exc))


CERTIFICATE_UNTRUSTED = "CertificateUntrusted"


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


# What an S3 store answers when credentials do not cover an operation or it lacks it.
_DENIED_CODES = {"AccessDenied", "NotImplemented", "MethodNotAllowed", "AllAccessDisabled"}


def is_denied(verdict: Classified) -> bool:
    """True if S3 refused the operation itself (not allowed, not implemented): for an optional
    call (ListParts, AbortMultipartUpload, HeadObject) that means "do without it"."""
    return verdict.kind == ErrorKind.PERMANENT and verdict.code in _DENIED_CODES | {"403", "405", "501"}
