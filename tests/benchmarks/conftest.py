"""Shared by the benchmark harness tests: real boto3 clients with dummy credentials."""

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
