"""The checksum algorithms S3 verifies per part, and how to compute them incrementally.

Why CRC64NVME full-object is the default, and the measured costs: see ``hashing.py``.
"""

from __future__ import annotations

import base64
import enum
import hashlib

from awscrt import checksums


class ChecksumAlgorithm(enum.StrEnum):
    CRC64NVME = "CRC64NVME"
    CRC32C = "CRC32C"
    CRC32 = "CRC32"
    SHA256 = "SHA256"
    NONE = "NONE"

    @classmethod
    def from_setting(cls, text: str) -> ChecksumAlgorithm:
        """``crc64nvme`` | ``crc32c`` | ``crc32`` | ``sha256`` | ``none`` (any case)."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            names = ", ".join(a.value.lower() for a in cls)
            raise ValueError(f"must be one of {names}, got {text!r}") from None

    def hasher(self) -> PartHasher:
        """A running checksum of one byte run (a part or the whole file)."""
        return PartHasher(self)

    def checksum(self, data: bytes | memoryview) -> str:
        """The wire form of ``data``'s checksum ('' for NONE)."""
        hasher = self.hasher()
        hasher.update(data)
        return hasher.wire()

    def update(self, data: bytes | memoryview, previous: int) -> int:
        """CRC algorithms only: continue a CRC over ``data``."""
        if self is ChecksumAlgorithm.CRC64NVME:
            return int(checksums.crc64nvme(data, previous))
        if self is ChecksumAlgorithm.CRC32C:
            return int(checksums.crc32c(data, previous))
        return int(checksums.crc32(data, previous))

    def arguments(self, checksum: str) -> dict[str, str]:
        """The boto3 keyword argument carrying ``checksum`` (none for NONE)."""
        return {} if self is ChecksumAlgorithm.NONE else {self.s3_parameter: checksum}

    def combine(self, first: int, second: int, second_length: int) -> int:
        """The checksum of two adjacent byte runs from theirs."""
        if self is ChecksumAlgorithm.CRC64NVME:
            return int(checksums.combine_crc64nvme(first, second, second_length))
        if self is ChecksumAlgorithm.CRC32C:
            return int(checksums.combine_crc32c(first, second, second_length))
        return int(checksums.combine_crc32(first, second, second_length))

    @property
    def response_field(self) -> str | None:
        """Where ListParts reports a part's checksum (None: no checksum is kept)."""
        return None if self is ChecksumAlgorithm.NONE else self.s3_parameter

    @property
    def is_crc(self) -> bool:
        return self in (ChecksumAlgorithm.CRC64NVME, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC32)

    @property
    def full_object(self) -> bool:
        """S3 checks one whole-object value (FULL_OBJECT) rather than a checksum of checksums."""
        return self is ChecksumAlgorithm.CRC64NVME

    def from_wire(self, text: str) -> int:
        return int.from_bytes(base64.b64decode(text), "big")

    def to_wire(self, value: int) -> str:
        """S3's wire form: base64 of the big-endian value (8 bytes for CRC64, else 4)."""
        width = 8 if self is ChecksumAlgorithm.CRC64NVME else 4
        return base64.b64encode(value.to_bytes(width, "big")).decode("ascii")

    @property
    def s3_parameter(self) -> str:
        """The boto3 parameter/response field name, e.g. ``ChecksumCRC32C``."""
        return f"Checksum{self.value}"


DEFAULT_ALGORITHM = ChecksumAlgorithm.CRC64NVME
# What to try when a store rejects an algorithm at CreateMultipartUpload (one step, once).
FALLBACK: dict[ChecksumAlgorithm, ChecksumAlgorithm] = {
    ChecksumAlgorithm.CRC64NVME: ChecksumAlgorithm.CRC32C,
    ChecksumAlgorithm.CRC32C: ChecksumAlgorithm.CRC32,
    ChecksumAlgorithm.CRC32: ChecksumAlgorithm.SHA256,
    ChecksumAlgorithm.SHA256: ChecksumAlgorithm.NONE,
}


class PartHasher:
    """Incremental checksum for any ``ChecksumAlgorithm``; ``value`` is the CRC (0 otherwise)."""

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self.algorithm = algorithm
        self.value = 0
        self._sha = hashlib.sha256() if algorithm is ChecksumAlgorithm.SHA256 else None

    def update(self, data: bytes | memoryview) -> None:
        if self._sha is not None:
            self._sha.update(data)
        elif self.algorithm.is_crc:
            self.value = self.algorithm.update(data, self.value)

    def wire(self) -> str:
        if self._sha is not None:
            return base64.b64encode(self._sha.digest()).decode("ascii")
        if self.algorithm.is_crc:
            return self.algorithm.to_wire(self.value)
        return ""
