"""boto3 uploads as a standalone process: s3transfer's classic TransferManager or the CRT one.

Runs with the peers venv's interpreter, so it imports only boto3 (and awscrt) and the standard
library. Usage:
``python peer_boto3.py FILE ENDPOINT BUCKET KEY PART_SIZE_BYTES CONCURRENCY [classic|crt]``.
Exit 0 only when the upload completed; each client's default retry behaviour is left as shipped.

``classic`` is ``client.upload_file`` (Python threads, botocore over urllib3). ``crt`` is
boto3 on the AWS Common Runtime (aws-c-s3, what aws-cli v2 uses for speed): the same
``CRTTransferManager`` that ``TransferConfig(preferred_transfer_client="crt")`` selects, but
assembled here because boto3 builds its CRT request serializer with ``endpoint_url=None`` and
would send to AWS instead of the ``ENDPOINT`` given. TLS trust comes from ``AWS_CA_BUNDLE``,
which botocore reads for the classic path and is handed to the CRT client as its trust store.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _classic(client: Any, source: str, bucket: str, key: str, config: Any) -> None:
    client.upload_file(source, bucket, key, Config=config)


def _crt(endpoint: str, region: str, source: str, bucket: str, key: str, config: Any) -> None:
    import botocore.session
    from botocore.config import Config
    from s3transfer.crt import (  # type: ignore[import-untyped]
        BotocoreCRTCredentialsWrapper,
        BotocoreCRTRequestSerializer,
        CRTTransferManager,
        create_s3_crt_client,
    )

    session = botocore.session.Session()
    credentials = BotocoreCRTCredentialsWrapper(session.get_credentials())
    crt_client = create_s3_crt_client(
        region,
        crt_credentials_provider=credentials.to_crt_credentials_provider(),
        part_size=config.multipart_chunksize,
        use_ssl=endpoint.startswith("https://"),
        verify=os.environ.get("AWS_CA_BUNDLE"),
    )
    serializer = BotocoreCRTRequestSerializer(
        session,
        {
            "region_name": region,
            "endpoint_url": endpoint,
            "config": Config(s3={"addressing_style": "path"}),
        },
    )
    with CRTTransferManager(crt_client, serializer, config=config) as manager:
        manager.upload(source, bucket, key).result()


def main(argv: list[str]) -> int:
    import boto3
    from boto3.s3.transfer import TransferConfig

    source, endpoint, bucket, key, part_size, concurrency, *rest = argv
    mode = rest[0] if rest else "classic"
    config = TransferConfig(
        multipart_threshold=8 * 1024 * 1024,
        multipart_chunksize=int(part_size),
        max_concurrency=int(concurrency),
        preferred_transfer_client="crt" if mode == "crt" else "classic",
    )
    try:
        if mode == "crt":
            region = os.environ.get("AWS_REGION", "us-east-1")
            _crt(endpoint, region, source, bucket, key, config)
        else:
            _classic(boto3.client("s3", endpoint_url=endpoint), source, bucket, key, config)
    except Exception as exc:  # the harness only needs one line saying why
        print(f"boto3 ({mode}) upload failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
