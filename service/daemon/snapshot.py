"""A job as the control API shows it: one typed snapshot for the daemon and its clients.

``JobSnapshot`` is the one definition of the API's job object. The daemon makes it from a live
``Job`` (``Job.snapshot()``: this module knows no ``Job``) and sends ``to_json()``; the broker
fans it out; the CLI client reads it back with ``from_json``, and the display, the commands and the job-end notifications read its
attributes. The OpenAPI ``Job`` schema is derived from its fields (``openapi_schema``), so the
document and the wire format cannot drift apart.

``from_json`` is strict because the daemon on the other end may be another version, or not
notaryd at all: a missing required field, a wrong type, an unknown state or a non-finite
number is one ``BadSnapshot`` naming the field. Fields it does not know are ignored, and the
fields added after the first release (those with defaults) may be missing.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from types import NoneType, UnionType
from typing import Any

from uploader.errors import NotarydError
from uploader.lifecycle import NotaryStatus

from .job_options import JobOptions, openapi_properties
from .job_states import JOB_STATES, JobOutcome, JobState, parse_job_state


class BadSnapshot(NotarydError):
    """A job object that does not have the API's shape (names the field)."""


# What each field means, for the OpenAPI document.
DESCRIPTIONS = {
    "id": "Job id (12 hex digits).",
    "path": "Archive path, symlinks resolved.",
    "state": "queued, the pipeline stage it is in, or how it ended.",
    "bytes_total": "Archive size in bytes.",
    "bytes_done": "Bytes confirmed uploaded.",
    "bytes_hashed": "Bytes hashed so far (hashing).",
    "retries": "Part attempts retried so far, in this daemon's run of the job.",
    "rate_bytes_per_second": "Moving average, 20 s.",
    "eta_seconds": "Upload time left at the current rate.",
    "submission_id": "The notary submission, once there is one.",
    "notary_status": f"Apple's status: {' | '.join(NotaryStatus)}.",
    "error": "Why the job failed, in one line.",
    "created_at": "Unix time.",
    "updated_at": "Unix time.",
    "started_at": "Unix time it first left the queue.",
    "finished_at": "Unix time it reached a final state.",
    "worker": "The fleet worker (NOTARYD_WORKER_NAME) that runs or ran the job; null without a fleet.",
}


@dataclass(frozen=True, kw_only=True)
class JobSnapshot:
    """One job at one moment, as ``GET /v1/jobs/{id}`` returns it (field order is the JSON's).

    Fields with a default came after the first release: an older daemon may not send them.
    """

    id: str
    path: str
    name: str | None = None
    webhook: str | None = None
    skip_preflight: bool = False
    state: JobState
    bytes_total: int
    bytes_done: int
    bytes_hashed: int = 0
    rate_bytes_per_second: float
    eta_seconds: float | None
    submission_id: str | None
    notary_status: str | None
    error: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    retries: int = 0
    options: JobOptions = field(default_factory=JobOptions)  # flat in JSON: staple, force, ...
    worker: str | None = None  # the fleet worker holding the job (service/fleet)

    @property
    def terminal(self) -> bool:
        return isinstance(self.state, JobOutcome)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "options":
                document.update(value.as_dict())
            else:
                document[f.name] = str(value) if f.name == "state" else value
        return document

    @classmethod
    def from_json(cls, document: object) -> JobSnapshot:
        """The snapshot in ``document`` (decoded JSON); ``BadSnapshot`` names what is wrong."""
        if not isinstance(document, dict):
            raise BadSnapshot(f"a job must be a JSON object, got {_kind(document)}")
        values: dict[str, Any] = {}
        for name, kind in _field_kinds().items():
            if name == "options":
                values[name] = _options(document)
            elif name in document:
                values[name] = _check(name, kind, document[name])
            elif not _has_default(name):
                raise BadSnapshot(f"the job has no {name!r} field")
        return cls(**values)


# -- the JSON shape, from the field annotations ----------------------------------------------------

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@cache
def _field_kinds() -> dict[str, tuple[Any, bool]]:
    """Field name -> (base type, nullable), resolved from the annotations."""
    hints = typing.get_type_hints(JobSnapshot)
    kinds: dict[str, tuple[Any, bool]] = {}
    for f in fields(JobSnapshot):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, UnionType) else ()
        nullable = NoneType in args
        if hint == JobState:
            kinds[f.name] = (JobState, False)
        elif nullable:
            (base,) = (a for a in args if a is not NoneType)
            kinds[f.name] = (base, True)
        else:
            kinds[f.name] = (hint, False)
    return kinds


def _has_default(name: str) -> bool:
    f = next(f for f in fields(JobSnapshot) if f.name == name)
    return f.default is not MISSING or f.default_factory is not MISSING


def _check(name: str, kind: tuple[Any, bool], value: object) -> Any:
    base, nullable = kind
    if value is None:
        if nullable:
            return None
        raise BadSnapshot(f"the job's {name!r} is null; it must be a JSON {_JSON_TYPES.get(base, 'string')}")
    if base is JobState:
        if isinstance(value, str):
            try:
                return parse_job_state(value)
            except ValueError:
                pass
        shown = repr(value)[:60]
        raise BadSnapshot(f"the job's 'state' is {shown}, not one of {', '.join(map(str, JOB_STATES))}")
    if base is bool and isinstance(value, bool):
        return value
    if base is str and isinstance(value, str):
        return value
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise BadSnapshot(f"the job's {name!r} is {value}; it cannot be negative")
        return value
    if base is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise BadSnapshot(f"the job's {name!r} is {value}; it must be a finite number")
        return float(value)
    raise BadSnapshot(f"the job's {name!r} must be a JSON {_JSON_TYPES[base]}, got {_kind(value)}")


def _options(document: dict[str, Any]) -> JobOptions:
    try:
        return JobOptions.from_body(document)
    except ValueError as error:
        raise BadSnapshot(f"the job's {error}") from None


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            NoneType: "null"}.get(type(value), "a number")


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI (JSON Schema) ``Job`` object, made from ``JobSnapshot``'s fields."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in fields(JobSnapshot):
        if f.name == "options":
            properties.update(openapi_properties())
            continue
        base, nullable = _field_kinds()[f.name]
        if base is JobState:
            spec: dict[str, Any] = {"type": "string", "enum": [str(s) for s in JOB_STATES]}
        else:
            spec = {"type": [_JSON_TYPES[base], "null"] if nullable else _JSON_TYPES[base]}
        if f.name in DESCRIPTIONS:
            spec["description"] = DESCRIPTIONS[f.name]
        properties[f.name] = spec
        if not _has_default(f.name):
            required.append(f.name)
    return {"type": "object", "required": required, "properties": properties}
