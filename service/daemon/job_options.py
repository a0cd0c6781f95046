"""A daemon job's last-mile options: staple after Accepted, force a re-submission, keep the zip.

The same choices as ``notaryd notarize --no-staple/--force/--keep-archive``, carried from
``POST /v1/jobs`` (fields ``staple``, ``force``, ``keep_archive``) through the job store (one
JSON column, so a resumed job keeps them) to the pipeline's ``NotarizeRequest``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

DESCRIPTIONS = {
    "staple": "Staple the ticket into the .app/.dmg/.pkg after Accepted.",
    "force": "Submit even if this archive already has an Accepted submission.",
    "keep_archive": "Keep the zip made from a .app bundle.",
}


@dataclass(frozen=True)
class JobOptions:
    staple: bool = True
    force: bool = False
    keep_archive: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobOptions:
        """From a request body; ValueError names the field when a value is not a boolean."""
        given = {name: body[name] for name in cls.names() if name in body}
        for name, value in given.items():
            if not isinstance(value, bool):
                raise ValueError(f"'{name}' must be true or false")
        return cls(**given)

    @classmethod
    def from_db(cls, text: str | None) -> JobOptions:
        stored = json.loads(text) if text else {}
        return cls(**{k: bool(v) for k, v in stored.items() if k in cls.names()})

    def to_db(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


def openapi_properties() -> dict[str, Any]:
    defaults = JobOptions().as_dict()
    return {name: {"type": "boolean", "default": defaults[name], "description": text}
            for name, text in DESCRIPTIONS.items()}
