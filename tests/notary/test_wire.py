"""The notary wire module without I/O: answers in, typed results or the one error they mean out.

Each test hands ``uploader.notary.wire`` an ``Answer`` (status, headers, body bytes) shaped like
the service's (see the reference note on the notary API) and checks what comes out; nothing
here opens a socket or reads a clock (``now`` is a number).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from typing import Any

import pytest

from uploader.notary import errors, wire
from uploader.notary.errors import NotaryError

NOW = 1_700_000_000.0
CALLER = wire.Caller("ABC123DEFG", "69a6de70-0000-47e3-e053-5b8c7c11a4d1", "a hint")
SUB_ID = "2efe2717-52ef-43a5-96dc-0797e4ca1041"


def _json(doc: Any, status: int = 200, **headers: str) -> wire.Answer:
    return wire.Answer(status, headers, json.dumps(doc).encode())


def _api_error(status: int, code: str = "", title: str = "", detail: str = "",
               **headers: str) -> wire.Answer:
    return _json({"errors": [{"id": "x", "status": str(status), "code": code, "title": title,
                              "detail": detail}]}, status, **headers)


def _refusal(answer: wire.Answer, endpoint: str = "status") -> NotaryError:
    with pytest.raises(NotaryError) as raised:
        wire.document(endpoint, answer, CALLER, NOW)
    assert raised.value is not None
    return raised.value


def _attrs(**override: Any) -> dict[str, Any]:
    attrs = {"awsAccessKeyId": "ASIAEXAMPLE12345678", "awsSecretAccessKey": "secret",
             "awsSessionToken": "token", "bucket": "notary-submissions-prod",
             "object": f"prod/AROA:{SUB_ID}"}
    attrs.update(override)
    return {k: v for k, v in attrs.items() if v is not None}


# -- each status -> its error type ---------------------------------------------------------


def test_401_is_plain_text_and_names_the_key_issuer_request_id_and_hint() -> None:
    answer = wire.Answer(401, {}, b"Unauthenticated\n\nRequest ID: ABCD.1234-ef.5\n")
    error = _refusal(answer)
    assert isinstance(error, errors.Unauthenticated) and not error.transient
    assert (error.status, error.endpoint, error.request_id) == (401, "status", "ABCD.1234-ef.5")
    assert CALLER.key_id in str(error) and CALLER.issuer_id in str(error)
    assert "a hint" in str(error)
    bare = _refusal(wire.Answer(401, {}, b"Unauthenticated"))
    assert isinstance(bare, errors.Unauthenticated) and bare.request_id is None


@pytest.mark.parametrize(("answer", "kind"), [
    (_api_error(403, "FORBIDDEN.MISSING_PROVIDER", "No provider"), errors.MissingProvider),
    (_api_error(403, "FORBIDDEN.REQUIRED_AGREEMENTS_MISSING_OR_EXPIRED", "Agreements"),
     errors.AgreementMissing),
    (_api_error(403, "FORBIDDEN_ERROR", "Forbidden", "A required agreement is missing"),
     errors.AgreementMissing),  # said only in the detail
    (_api_error(403, "FORBIDDEN_ERROR", "Forbidden", "not allowed"), errors.Forbidden),
    (wire.Answer(403, {}, b"<html>proxy says no</html>"), errors.Forbidden),
    (_api_error(404, "NOT_FOUND", "Not found", "no such submission"), errors.NotFound),
    (_api_error(429, "RATE_LIMIT", "Too many"), errors.RateLimited),
    (_api_error(500, "", "Internal"), errors.ServerError),
    (wire.Answer(502, {}, b"Bad Gateway"), errors.ServerError),
    (wire.Answer(503, {}, b""), errors.ServerError),
    (_api_error(400, "PARAMETER_ERROR.INVALID", "Invalid", "sha256 is wrong"),
     errors.RequestRejected),
    (wire.Answer(409, {}, b""), errors.RequestRejected),
    (wire.Answer(418, {}, b"teapot"), errors.RequestRejected),
])
def test_each_status_means_one_error_type(answer: wire.Answer, kind: type[NotaryError]) -> None:
    error = _refusal(answer)
    assert type(error) is kind
    assert error.status == answer.status and error.endpoint == "status"
    assert error.transient == (kind in (errors.RateLimited, errors.ServerError))


def test_the_table_names_the_statuses_with_their_own_meaning() -> None:
    assert sorted(wire.ERRORS) == [401, 403, 404, 429]
    assert sorted(wire.LOG_ERRORS) == [400, 401, 403]


def test_a_refusal_shows_apples_words_on_one_line() -> None:
    error = _refusal(_api_error(403, "FORBIDDEN_ERROR", "Access\ndenied",
                                "key lacks\x1b[31m the role " + "x" * 1000))
    assert isinstance(error, errors.Forbidden) and error.code == "FORBIDDEN_ERROR"
    text = str(error)
    assert "\n" not in text and "\x1b" not in text and "Access denied. key lacks" in text
    assert "…" in text and len(text) < 700
    rejected = _refusal(_api_error(400, "PARAMETER_ERROR.INVALID"))
    assert "PARAMETER_ERROR.INVALID" in str(rejected)  # the code when there is no detail


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date past is "now"
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("-5", None),
    ("1.5", None),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_retry_after_as_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert wire.parse_retry_after(value, NOW) == seconds


def test_a_429_carries_its_retry_after() -> None:
    for headers, expected in (({"Retry-After": "42"}, 42.0),
                              ({"Retry-After": email.utils.formatdate(NOW + 90, usegmt=True)},
                               90.0),
                              ({}, None)):
        error = _refusal(_api_error(429, "RATE_LIMIT", **headers))
        assert isinstance(error, errors.RateLimited) and error.retry_after_seconds == expected


# -- typed results -------------------------------------------------------------------------


def test_a_new_submission_with_credentials_for_twelve_hours() -> None:
    doc = wire.document("submit", _json({"data": {"id": SUB_ID, "type": "newSubmissions",
                                                  "attributes": _attrs()}, "meta": {}}),
                        CALLER, NOW)
    made = wire.new_submission(doc, issued_at=NOW)
    assert (made.id, made.bucket, made.object) == (SUB_ID, "notary-submissions-prod",
                                                   f"prod/AROA:{SUB_ID}")
    assert made.credentials.access_key_id == "ASIAEXAMPLE12345678"
    assert made.credentials.expires_at == NOW + 12 * 3600


def test_status_history_and_log_url() -> None:
    entry = {"id": SUB_ID, "type": "submissions",
             "attributes": {"name": "App.zip", "status": "In Progress",
                            "createdDate": "2022-06-08T01:38:09.498Z"}}
    status = wire.submission_status({"data": entry})
    assert (status.id, status.name, status.status, status.is_terminal) == (
        SUB_ID, "App.zip", "In Progress", False)
    assert status.created_at == pytest.approx(1654652289.498)
    newer = {"id": "a" * 8, "attributes": {"status": "Accepted"}}  # name, date optional
    listed = wire.history({"data": [newer, entry]})
    assert [(s.id, s.name, s.is_terminal) for s in listed] == [("a" * 8, "", True),
                                                               (SUB_ID, "App.zip", False)]
    assert listed[0].created_at is None
    url = "https://notary-artifacts-prod.s3.amazonaws.com/log.json?X-Amz-Signature=abc"
    assert wire.log_url({"data": {"attributes": {"developerLogUrl": url}}}) == url
    assert wire.log_document({"status": "Accepted"}) == {"status": "Accepted"}


# -- malformed documents -> a permanent errors.BadResponse ----------------------------------------


@pytest.mark.parametrize("body", [
    b"<html>captive portal</html>",
    b"",
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'"a string"',
    b"[" * 100_000 + b"]" * 100_000,  # nesting deep enough to exhaust the recursion limit
])
def test_a_200_that_is_not_a_json_object(body: bytes) -> None:
    with pytest.raises(errors.BadResponse) as raised:
        wire.document("status", wire.Answer(200, {}, body), CALLER, NOW)
    assert not raised.value.transient and "NOTARYD_API_URL" in str(raised.value)


@pytest.mark.parametrize(("parse", "doc", "field"), [
    ("status", {}, "'data' is not an object"),
    ("status", {"data": []}, "'data' is not an object"),
    ("status", {"data": {"id": SUB_ID}}, "'data.attributes' is not an object"),
    ("status", {"data": {"id": SUB_ID, "attributes": {}}}, "field 'status'"),
    ("status", {"data": {"id": "../../etc", "attributes": {"status": "Accepted"}}},
     "field 'id'"),
    ("status", {"data": {"id": SUB_ID, "attributes": {"status": "Accepted\x07"}}},
     "field 'status'"),
    ("status", {"data": {"id": SUB_ID, "attributes": {"status": "x" * 65}}}, "field 'status'"),
    ("status", {"data": {"id": SUB_ID, "attributes": {"status": 3}}}, "field 'status'"),
    ("history", {"data": {}}, "'data' is not a list"),
    ("history", {"data": ["not an object"]}, "submission entry is not an object"),
    ("logs", {"data": {"attributes": {}}}, "no developerLogUrl"),
    ("logs", {"data": {"attributes": {"developerLogUrl": ""}}}, "no developerLogUrl"),
    ("submit", {"data": {"id": SUB_ID, "attributes": _attrs(bucket="Not_A_Bucket")}},
     "field 'bucket'"),
    ("submit", {"data": {"id": SUB_ID, "attributes": _attrs(awsAccessKeyId="short")}},
     "field 'awsAccessKeyId'"),
    ("submit", {"data": {"id": SUB_ID, "attributes": _attrs(awsSessionToken=None)}},
     "field 'awsSessionToken'"),
    ("submit", {"data": {"id": "", "attributes": _attrs()}}, "field 'id'"),
])
def test_a_malformed_document_is_a_permanent_bad_response(parse: str, doc: dict[str, Any],
                                                          field: str) -> None:
    parsers: dict[str, Callable[[dict[str, Any]], object]] = {
        "status": wire.submission_status, "history": wire.history, "logs": wire.log_url,
        "submit": lambda d: wire.new_submission(d, NOW)}
    with pytest.raises(errors.BadResponse, match=field) as raised:
        parsers[parse](doc)
    assert not raised.value.transient and raised.value.endpoint == parse


def test_a_log_that_is_not_an_object() -> None:
    shapes: tuple[object, ...] = (None, [], "text")
    for doc in shapes:
        with pytest.raises(errors.BadResponse, match="the log is not a JSON object"):
            wire.log_document(doc)


# -- the pre-signed log download's refusals ------------------------------------------------


_S3_DENIED = (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
              b"<Message>Request has expired</Message></Error>")


@pytest.mark.parametrize(("status", "kind", "shown"), [
    (400, errors.LogUrlExpired, "AccessDenied"),
    (401, errors.LogUrlExpired, "AccessDenied"),
    (403, errors.LogUrlExpired, "AccessDenied"),
    (404, errors.RequestRejected, "AccessDenied"),
    (500, errors.ServerError, None),  # a 5xx's body is not shown
])
def test_log_download_refusals(status: int, kind: type[NotaryError], shown: str | None) -> None:
    error = wire.log_download_error(wire.Answer(status, {}, _S3_DENIED))
    assert type(error) is kind and error.status == status and error.endpoint == "log_download"
    assert (shown in str(error)) if shown else "AccessDenied" not in str(error)


def test_an_s3_code_is_bounded_and_one_line() -> None:
    assert wire.s3_error_code(b"<Code>Slow\nDown</Code>") == "Slow Down"
    assert wire.s3_error_code(b"<Code>" + b"x" * 65 + b"</Code>") == ""
    assert wire.s3_error_code(b"no xml") == ""


# -- requests ------------------------------------------------------------------------------


def test_the_submit_body_and_the_paths() -> None:
    sha = "AB" * 32
    assert json.loads(wire.submit_body("App.zip", sha)) == {"submissionName": "App.zip",
                                                           "sha256": sha.lower()}
    with_hook = json.loads(wire.submit_body("App.zip", sha, "https://ci.example/hook"))
    assert with_hook["notifications"] == [{"channel": "webhook",
                                           "target": "https://ci.example/hook"}]
    assert wire.submission_path(SUB_ID) == f"/submissions/{SUB_ID}"
    assert wire.submission_path("a b?c", "/logs") == "/submissions/a%20b%3Fc/logs"


@pytest.mark.parametrize(("call", "args"), [
    (wire.submit_body, ("", "ab" * 32)),
    (wire.submit_body, ("dir/App.zip", "ab" * 32)),
    (wire.submit_body, ("App.zip", "not a digest")),
    (wire.submission_path, ("",)),
    (wire.submission_path, ("../x",)),
])
def test_requests_it_cannot_make(call: Any, args: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        call(*args)
