"""boto3 ``upload_file`` (s3transfer's TransferManager) as a standalone process.

Runs with the peers venv's interpreter, so it imports only boto3 and the standard library.
Usage: ``python peer_boto3.py FILE ENDPOINT BUCKET KEY PART_SIZE_BYTES CONCURRENCY``.
Exit 0 only when the upload completed; botocore's default retry behaviour is left as shipped.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import boto3
    from boto3.s3.transfer import TransferConfig

    source, endpoint, bucket, key, part_size, concurrency = argv
    client = boto3.client("s3", endpoint_url=endpoint)
    config = TransferConfig(
        multipart_threshold=8 * 1024 * 1024,
        multipart_chunksize=int(part_size),
        max_concurrency=int(concurrency),
    )
    try:
        client.upload_file(source, bucket, key, Config=config)
    except Exception as exc:  # the harness only needs one line saying why
        print(f"boto3 upload failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
