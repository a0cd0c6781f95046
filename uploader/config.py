"""Validated, immutable settings for the upload engine.

Only ``service/settings.py`` reads the environment; everything here is passed in explicitly.

Defaults for 6-25 GB archives (see ``planning.py`` for the arithmetic):

* ``part_size`` 16 MiB: S3's own guidance is 8-16 MB byte ranges; a 25 GB archive makes ~1,500
  parts, far below the 10,000 cap, and a part lost to a reset costs at most 16 MiB again.
* ``concurrency`` 8: enough connections to fill a 1 Gbit/s link at S3's ~85 MB/s per connection
  while keeping in-flight bytes (and so the worst loss per crash) at 8 x 16 MiB = 128 MiB.
  Parts are streamed from disk, so memory does not grow with part size or file size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uploader.checksum import DEFAULT_ALGORITHM, ChecksumAlgorithm
from uploader.constants import DEFAULT_REGION
from uploader.retry import RetryPolicy

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class UploadLimits:
    """S3's multipart rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).

    Parameters so tests can use tiny parts against a server configured to allow them.
    """

    min_part_size: int = 5 * MiB
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000

    def __post_init__(self) -> None:
        if self.min_part_size <= 0:
            raise ValueError(f"min_part_size must be positive, got {self.min_part_size}")
        if self.max_part_size < self.min_part_size:
            raise ValueError("max_part_size must be >= min_part_size")
        if not 1 <= self.max_parts <= 10_000:
            raise ValueError(f"max_parts must be within 1..10000, got {self.max_parts}")


@dataclass(frozen=True)
class EngineConfig:
    """Everything the multipart engine needs besides the file, the target and credentials.

    Memory bound: each part in flight is read whole into a pooled page-aligned buffer, so peak
    memory is roughly a constant plus ``concurrency`` x ``part_size``, independent of file size.
    """

    part_size: int = 16 * MiB
    concurrency: int = 8
    stall_timeout_seconds: float = 60.0
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    accelerate: bool = False
    limits: UploadLimits = field(default_factory=UploadLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    checksum: ChecksumAlgorithm = DEFAULT_ALGORITHM  # new uploads; a rejected one falls back

    def __post_init__(self) -> None:
        if self.part_size <= 0:
            raise ValueError(f"part_size must be a positive number of bytes, got {self.part_size}")
        if not 1 <= self.concurrency <= 256:
            raise ValueError(f"concurrency must be within 1..256, got {self.concurrency}")
        if not 0 < self.stall_timeout_seconds <= 3600:
            raise ValueError(
                f"stall_timeout_seconds must be within (0, 3600], got {self.stall_timeout_seconds}"
            )
        if self.accelerate and self.endpoint_url:
            raise ValueError("accelerate and a custom endpoint_url exclude each other")
