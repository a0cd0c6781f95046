"""Entitlements from a code signature: XML plist (slot 5) or Apple's DER form (slot 7).

DER layout (indygreg/apple-platform-rs ``apple-codesign/src/plist_der.rs``): an
``[APPLICATION 16]`` wrapper holding INTEGER 1 and a ``[CONTEXT 16]`` dictionary whose entries
are SEQUENCE {UTF8String key, value}; values are BOOLEAN, INTEGER, UTF8String, SEQUENCE (array)
or a nested ``[CONTEXT 16]`` dictionary. An older form is a bare SET of entries.
"""

from __future__ import annotations

import plistlib
from typing import Any
from xml.parsers.expat import ExpatError

from uploader.preflight import ber

GET_TASK_ALLOW = "com.apple.security.get-task-allow"
_PADDING = b" \t\r\n\x00"
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_MAX_DEPTH = 64  # real entitlements nest two or three levels


class EntitlementsError(ValueError):
    """The entitlements blob cannot be decoded."""


def parse_xml(payload: bytes) -> dict[str, Any]:
    """As leniently as Apple's parser: whitespace or NULs around the document, a UTF-8 BOM.

    (A released Node.js binary has a newline before ``<?xml``; codesign accepted it, so the
    notary service does too.)
    """
    if not payload.startswith(_UTF16_BOMS):  # NULs belong to UTF-16 text
        payload = payload.strip(_PADDING)
    if payload.startswith(_UTF8_BOM):
        payload = payload[len(_UTF8_BOM) :].lstrip(_PADDING)
    try:
        value = plistlib.loads(payload)
    except (plistlib.InvalidFileException, ExpatError, ValueError) as exc:
        raise EntitlementsError(f"entitlements plist unreadable: {exc}") from exc
    except Exception as exc:  # plistlib raises assorted types on malformed input
        raise EntitlementsError(
            f"entitlements plist unreadable: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise EntitlementsError("entitlements plist is not a dictionary")
    return value


def parse_der(payload: bytes) -> dict[str, Any]:
    try:
        top = ber.read_tlv(payload, 0)
        if top.is_(ber.APPLICATION, 16):
            parts = ber.children(payload, top)
            if len(parts) != 2:
                raise EntitlementsError("DER entitlements wrapper has the wrong shape")
            value = _value(payload, parts[1])
        elif top.is_(ber.UNIVERSAL, ber.SET):
            value = _dictionary(payload, top)
        else:
            raise EntitlementsError("DER entitlements do not start with [APPLICATION 16]")
    except ber.BerError as exc:
        raise EntitlementsError(f"DER entitlements unreadable: {exc}") from exc
    if not isinstance(value, dict):
        raise EntitlementsError("DER entitlements are not a dictionary")
    return value


def requests_get_task_allow(entitlements: dict[str, Any]) -> bool:
    """Only an explicit true counts: ``<false/>`` passes notarisation."""
    return entitlements.get(GET_TASK_ALLOW) is True


def _value(data: bytes, tlv: ber.Tlv, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise EntitlementsError(f"DER entitlements nested more than {_MAX_DEPTH} deep")
    raw = ber.content(data, tlv)
    if tlv.is_(ber.UNIVERSAL, ber.BOOLEAN):
        return raw != b"\x00"
    if tlv.is_(ber.UNIVERSAL, ber.INTEGER):
        return ber.decode_integer(raw)
    if tlv.is_(ber.UNIVERSAL, ber.UTF8_STRING):
        return raw.decode("utf-8", "replace")
    if tlv.is_(ber.UNIVERSAL, ber.SEQUENCE):
        return [_value(data, child, depth + 1) for child in ber.children(data, tlv)]
    if tlv.is_(ber.CONTEXT, 16):
        return _dictionary(data, tlv, depth + 1)
    raise EntitlementsError(f"unexpected DER value tag {tlv.tag} (class {tlv.tag_class})")


def _dictionary(data: bytes, tlv: ber.Tlv, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in ber.children(data, tlv):
        key_value = ber.children(data, entry)
        if len(key_value) != 2 or not key_value[0].is_(ber.UNIVERSAL, ber.UTF8_STRING):
            raise EntitlementsError("DER dictionary entry is not (UTF8String, value)")
        key = ber.content(data, key_value[0]).decode("utf-8", "replace")
        out[key] = _value(data, key_value[1], depth)
    return out
