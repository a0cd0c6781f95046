"""``s3client.classify``: every S3 failure gets its kind (a row of the failure table) by lookup."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from botocore import exceptions as boto_exc

from uploader.errors import StallError
from uploader.events import RetryReason
from uploader.s3client import classify
from uploader.upload_session import CERTIFICATE_UNTRUSTED, ErrorKind


def answer(code: str, status: int) -> boto_exc.ClientError:
    return boto_exc.ClientError({"Error": {"Code": code, "Message": "m"},
                                 "ResponseMetadata": {"HTTPStatusCode": status}}, "UploadPart")


T, R = ErrorKind.TRANSIENT, RetryReason


@pytest.mark.parametrize(("code", "status", "kind", "reason", "named"), [
    ("ExpiredToken", 400, ErrorKind.EXPIRED, R.OTHER, "ExpiredToken"),
    ("NoSuchUpload", 404, ErrorKind.GONE, R.OTHER, "NoSuchUpload"),
    ("BadDigest", 400, ErrorKind.BAD_DIGEST, R.BAD_DIGEST, "BadDigest"),
    ("RequestTimeout", 400, T, R.REQUEST_TIMEOUT, "RequestTimeout"),
    ("SlowDown", 503, T, R.THROTTLED, "SlowDown"),
    ("ServiceUnavailable", 503, T, R.THROTTLED, "ServiceUnavailable"),  # the status decides
    ("InternalError", 500, T, R.SERVER_ERROR, "InternalError"),
    ("", 502, T, R.SERVER_ERROR, "502"),
    ("", 429, T, R.THROTTLED, "429"),
    ("AccessDenied", 403, ErrorKind.DENIED, R.OTHER, "AccessDenied"),
    ("", 403, ErrorKind.DENIED, R.OTHER, "403"),  # HEAD: no body, no code
    ("NotImplemented", 501, ErrorKind.DENIED, R.OTHER, "NotImplemented"),
    ("SlowDown", 501, ErrorKind.PERMANENT, R.OTHER, "SlowDown"),  # a 501 is never retried
    ("SignatureDoesNotMatch", 403, ErrorKind.PERMANENT, R.OTHER, "SignatureDoesNotMatch"),
    ("", 404, ErrorKind.PERMANENT, R.OTHER, "404"),
])
def test_an_s3_answer_by_code_then_status(code: str, status: int, kind: ErrorKind,
                                          reason: RetryReason, named: str) -> None:
    verdict = classify(answer(code, status))
    assert (verdict.kind, verdict.reason, verdict.code) == (kind, reason, named)


def untrusted_behind_a_wrapper() -> Exception:
    wrapper: Exception = boto_exc.EndpointConnectionError(endpoint_url="https://s3")
    wrapper.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    return wrapper


@pytest.mark.parametrize(("error", "kind", "reason", "named"), [
    (StallError(3, 5.0), T, R.STALL, "Stall"),
    (TimeoutError(), T, R.TIMEOUT, "TimeoutError"),
    (boto_exc.ReadTimeoutError(endpoint_url="https://s3"), T, R.TIMEOUT, "ReadTimeoutError"),
    (aiohttp.ServerTimeoutError(), T, R.TIMEOUT, "ServerTimeoutError"),
    (ConnectionResetError(), T, R.CONNECTION_RESET, "ConnectionResetError"),
    (boto_exc.EndpointConnectionError(endpoint_url="https://s3"), T, R.CONNECTION_RESET,
     "EndpointConnectionError"),
    (aiohttp.ClientPayloadError(), T, R.CONNECTION_RESET, "ClientPayloadError"),
    (untrusted_behind_a_wrapper(), ErrorKind.PERMANENT, R.OTHER, CERTIFICATE_UNTRUSTED),
    (ValueError("bug"), ErrorKind.PERMANENT, R.OTHER, "ValueError"),
])
def test_an_exception_by_its_type(error: Exception, kind: ErrorKind, reason: RetryReason,
                                  named: str) -> None:
    verdict = classify(error)
    assert (verdict.kind, verdict.reason, verdict.code) == (kind, reason, named)
