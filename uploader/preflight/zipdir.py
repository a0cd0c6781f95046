"""How many entries a zip's central directory holds, counted without building ``ZipInfo``s.

``zipfile`` loads the whole central directory at once, about 700 bytes of memory per entry,
whatever count the end record declares. Walking the directory's headers first (46 bytes plus
three lengths each) lets preflight refuse a zip with millions of entries before it costs
gigabytes. Layout: PKWARE APPNOTE 4.3.12 to 4.3.16, located the way ``zipfile`` locates it.
"""

from __future__ import annotations

import struct
from typing import IO

from uploader.preflight.limits import LimitError

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
_MAX_COMMENT = 0xFFFF


def central_directory_entries(fileobj: IO[bytes], stop_after: int, max_bytes: int) -> int:
    """Entries in the central directory, counting no further than ``stop_after + 1``.

    Returns 0 when there is no end record to go by; zipfile then refuses the archive itself.
    Raises ``LimitError`` when the directory claims more than ``max_bytes`` (zipfile reads it
    into memory in one piece).
    """
    size = fileobj.seek(0, 2)
    tail_size = min(size, _EOCD.size + _MAX_COMMENT)
    fileobj.seek(size - tail_size)
    tail = fileobj.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return 0
    cd_size, cd_end = _EOCD.unpack_from(tail, at)[5], size - tail_size + at
    locator = at - _ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        cd_end -= _ZIP64_LOCATOR_SIZE + _ZIP64_EOCD.size
        if cd_end < 0:
            return 0
        fileobj.seek(cd_end)
        record = fileobj.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            return 0
        cd_size = _ZIP64_EOCD.unpack(record)[8]
    if cd_end < cd_size:
        return 0
    if cd_size > max_bytes:
        raise LimitError(
            f"zip central directory of {cd_size:,} bytes; preflight reads up to {max_bytes:,}"
        )
    fileobj.seek(cd_end - cd_size)
    count = 0
    while count <= stop_after:
        header = fileobj.read(_CENTRAL_ENTRY.size)
        if len(header) < _CENTRAL_ENTRY.size or header[:4] != b"PK\x01\x02":
            break
        fields = _CENTRAL_ENTRY.unpack(header)
        fileobj.read(fields[12] + fields[13] + fields[14])  # name, extra, comment
        count += 1
    return count
