"""A team API key handed over as text, the way CI secrets and keychains hold it.

Standard library only: the GitHub Action's helper (service/ci/github_action.py) loads this file
by path from the action's checkout, where notaryd is not importable.

The text is the PEM itself (``-----BEGIN PRIVATE KEY-----``; literal ``\\n``s, as some secret
stores flatten it, are undone) or its base64 (``base64 < AuthKey_<KEYID>.p8``, wrapped or not).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

PEM_MARKER = "-----BEGIN"
_ARMOUR = "-----"


@dataclass(frozen=True)
class InlineKey:
    """A private key held in memory, never on disk; ``origin`` names its source in messages."""

    pem: bytes = field(repr=False)
    origin: str

    def __str__(self) -> str:
        return self.origin

    @property
    def name(self) -> str:
        return self.origin


KeySource = Path | InlineKey  # a .p8 file, or a key held in memory


class NotAKey(ValueError):
    """The text holds neither a PEM nor the base64 of one; the message never quotes it."""


def pem_from_text(value: str) -> str:
    """The PEM in ``value`` (ending in one newline): the PEM itself or its base64."""
    text = value.strip()
    if PEM_MARKER not in text:
        try:
            text = base64.b64decode("".join(text.split()), validate=True).decode("ascii").strip()
        except (binascii.Error, ValueError):
            raise NotAKey("is neither a PEM (-----BEGIN PRIVATE KEY-----) nor its base64") from None
        if PEM_MARKER not in text:
            raise NotAKey("decodes from base64, but not to a PEM private key")
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    return text + "\n"


def secret_lines(raw: str, pem: str) -> list[str]:
    """Every line of the secret as given and as decoded, the armour lines excepted: what a log
    must never show (``::add-mask::`` in the Action, known secrets in notaryd's redaction)."""
    lines = {line.strip() for line in (*raw.splitlines(), *pem.splitlines())}
    return sorted(line for line in lines if line and not line.startswith(_ARMOUR))
