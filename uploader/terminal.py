"""Text that came from outside (file names, submission names, server answers) made safe for a
terminal.

Printed raw, an ESC sequence in a file name can recolour, retitle or rewrite the user's terminal,
a carriage return can overwrite the line before it, and a bidi override can make a path read
backwards. ``printable`` shows each such character as an escape (``\\x1b``, ``\\u202e``), and an
undecodable byte (kept as a lone surrogate) as ``\\udcXX``. Every human-facing output of text
from outside goes through it: tables and messages, reports, logs. JSON output
needs nothing: ``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

# C0 controls, DEL and C1 controls; the line and paragraph separators; the bidi embeddings,
# overrides and isolates ("Trojan Source").
_ESCAPED = {
    c: f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"
    for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
              *range(0x2066, 0x206A))
}


_KEEP_NEWLINES = {c: escape for c, escape in _ESCAPED.items() if c != 0x0A}


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every terminal control character and lone surrogate shown escaped;
    ``multiline`` keeps its line feeds (a report of several lines)."""
    text = text.translate(_KEEP_NEWLINES if multiline else _ESCAPED)
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
