"""The OpenAPI 3.1 description of the control API, served at ``GET /v1/openapi.json``.

Kept by hand next to ``api.py``; ``tests/daemon/test_api.py`` checks that every route the
aiohttp router registers appears here and vice versa. The ``Job`` schema is made from
``snapshot.JobSnapshot``, the type the API serialises, so it cannot drift either.
"""

from __future__ import annotations

import copy
from typing import Any

from . import live_page
from .job_options import openapi_properties
from .snapshot import openapi_schema

_NULLABLE_STR = {"type": ["string", "null"]}

JOB_SCHEMA: dict[str, Any] = openapi_schema()

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in one line."},
        "hint": {"type": "string", "description": "What to do about it."},
    },
}

NEW_JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string", "maxLength": 4096,
            "description": "Archive (.zip, .pkg, .dmg) under an allowed root: a regular file, "
            "not a symlink, FIFO or directory (symlinks on the way are resolved first).",
        },
        "name": {
            "type": "string", "minLength": 1, "maxLength": 255,
            "description": "Submission name (default: the file name); printable, no '/' or '\\'.",
        },
        "webhook": {"type": "string", "format": "uri", "maxLength": 2048, "description": "Notary webhook URL."},
        "skip_preflight": {"type": "boolean", "default": False},
        **openapi_properties(),
    },
}

LOG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string"},
        "submission_id": {"type": "string"},
        "notary_status": _NULLABLE_STR,
        "log": {"type": "object", "description": "The notary log JSON, as Apple returned it."},
        "summary": {"type": "object", "description": "The log's findings, grouped."},
        "report": {"type": "string", "description": "Readable report."},
    },
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (the error names the field or path).",
        401: "Missing or wrong bearer token.",
        403: "Path outside the allowed roots.",
        408: "The request body did not arrive within 10 s.",
        413: "The request body is larger than 64 KiB.",
        404: "No such job, or no log for it.",
        409: "Conflict with the job's current state.",
        429: "As many event streams are open as the daemon allows (NOTARYD_MAX_EVENT_STREAMS).",
        503: "The daemon is shutting down.",
    }
    return {str(c): _json("Error", text[c]) for c in codes}


_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _described(description: str, media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _operation(
    operation_id: str, summary: str, responses: dict[str, Any], *,
    security: list[dict[str, list[str]]] = _SECURED,
    parameters: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "security": security}
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    operation["responses"] = responses
    return operation


_OBJECT = {"type": "object"}
_JOBS_LIST = {
    "type": "object",
    "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
}
_JOB_FILTER = {"name": "job", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "Only this job's events."}

# One entry per route of ``api.py``: path -> method -> operation.
_PATHS: dict[str, dict[str, Any]] = {
    "/v1/jobs": {
        "post": _operation(
            "createJob", "Queue an archive for notarisation.",
            {"201": _json("Job", "The new job."), **_errors(400, 401, 403, 408, 409, 413, 503)},
            body={"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/NewJob"}}}},
        ),
        "get": _operation(
            "listJobs", "Jobs, newest first (live ones and recent history).",
            {"200": _described("The jobs.", "application/json", _JOBS_LIST), **_errors(401)},
        ),
    },
    "/v1/jobs/{id}": {
        "get": _operation("getJob", "One job.",
                          {"200": _json("Job", "The job."), **_errors(401, 404)},
                          parameters=[_JOB_ID]),
        "delete": _operation("cancelJob", "Cancel a job and abort its multipart upload.",
                             {"200": _json("Job", "The cancelled job."), **_errors(401, 404, 409)},
                             parameters=[_JOB_ID]),
    },
    "/v1/jobs/{id}/log": {
        "get": _operation("getJobLog", "The notary log of a finished job, with a readable report.",
                          {"200": _json("JobLog", "The saved log."), **_errors(401, 404, 409)},
                          parameters=[_JOB_ID]),
    },
    "/v1/events": {
        "get": _operation(
            "streamEvents",
            "Server-sent events: `event: job` with a Job as data on every change (progress at "
            "most twice a second per job), and a `: heartbeat` comment when idle. Starts with "
            "one `job` event per listed job.",
            {"200": _described("An endless event stream.", "text/event-stream", {"type": "string"}),
             **_errors(401, 404, 429)},
            parameters=[_JOB_FILTER],
        ),
    },
    "/v1/openapi.json": {
        "get": _operation(
            "getOpenApi", "This document.",
            {"200": _described("OpenAPI 3.1 document.", "application/json", _OBJECT), **_errors(401)},
        ),
    },
    "/healthz": {
        "get": _operation(
            "health", "Liveness (no token needed).",
            {"200": _described("Serving.", "application/json", _OBJECT),
             "503": _described("Shutting down.", "application/json", _OBJECT)},
            security=[],
        ),
    },
    "/metrics": {
        "get": _operation(
            "metrics", "Prometheus metrics, text format (no token needed).",
            {"200": _described("Prometheus text exposition format 0.0.4.", "text/plain",
                               {"type": "string"})},
            security=[],
        ),
    },
}

_DESCRIPTION = (
    "Queue archives for notarisation and follow their progress. Every request must carry a Host "
    "the daemon goes by (an IP literal, localhost, the NOTARYD_LISTEN host or a name in "
    "NOTARYD_ALLOWED_HOSTS), else 421; /metrics and /healthz answer any Host when the daemon "
    "listens beyond loopback. A request head must arrive within 10 s."
)


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "notaryd control API", "version": version, "description": _DESCRIPTION},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Job": JOB_SCHEMA,
                "NewJob": NEW_JOB_SCHEMA,
                "Error": ERROR_SCHEMA,
                "JobLog": LOG_SCHEMA,
            },
        },
        "paths": {**live_page.openapi_paths(), **copy.deepcopy(_PATHS)},
    }
