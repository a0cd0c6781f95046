"""Shared by the benchmark harness tests: real boto3 clients with dummy credentials, and
matplotlib with its font cache built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config


@pytest.fixture
def s3_client() -> Callable[..., Any]:
    """``s3_client(endpoint, verify=None, attempts=8)``: a boto3 S3 client for the sink."""

    def make(endpoint: str, verify: str | bool | None = None, attempts: int = 8) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
            region_name="us-east-1",
            verify=verify,
            config=Config(retries={"max_attempts": attempts, "mode": "standard"}),
        )

    return make


@pytest.fixture(scope="session")
def matplotlib_ready() -> None:
    """matplotlib with its font cache built in the run's own MPLCONFIGDIR.

    Building the cache lists the system's fonts through a child process (fc-list). That is the
    run's set-up, not the report's work: done here, a rendering test stays a unit test on a fresh
    home (the first run) as on every later one.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")  # loads (first time: builds) the font list
