"""A fast, discarding S3-compatible sink on loopback, for throughput benchmarks.

Run it in its own process: ``python -m benchmarks.sink --port P``. It speaks the part of the
S3 REST API (path-style addressing) that ``aws s3 cp``, boto3's ``upload_file``, ``s5cmd cp`` and
``notaryd upload`` use: CreateMultipartUpload, UploadPart, ListParts (paged by
``part-number-marker``/``max-parts``), CompleteMultipartUpload, AbortMultipartUpload, PutObject,
HeadObject, HeadBucket, ListBuckets, ListObjectsV2 and GetBucketLocation.

What it does not do, on purpose: check signatures (any SigV4 header is accepted, including
``UNSIGNED-PAYLOAD`` and ``STREAMING-*`` payload hashes) or keep bodies. Bodies are read and
dropped; each part keeps only its length and CRC32C (awscrt, ~0.04 CPU-s/GiB), so the sink
costs little CPU next to the clients it measures. At CompleteMultipartUpload the object's CRC32C
is combined from the parts in the listed order (``benchmarks.crc32c.Combiner``); the harness
compares it with the source file's CRC32C. ``aws-chunked`` bodies are decoded (chunk framing
and trailers stripped) before checksumming, so the CRC is of the payload itself.

Harness endpoints (not S3): ``GET /_sink/stats`` (request and byte counters),
``GET /_sink/objects/{bucket}/{key}`` (size, CRC32C, part count of a completed object).

With ``--tls-cert``/``--tls-key`` it serves HTTPS instead (the ``tls`` condition; see
``benchmarks.tls``); the harness endpoints are then HTTPS too.

Single process, single event loop (uvloop): state is in memory and is lost when it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import ssl
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from benchmarks.crc32c import Combiner, crc32c

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_LIST_PARTS = 1000
READ_BUFSIZE = 4 * 1024 * 1024  # aiohttp's default 64 KiB pauses the transport far too often


@dataclass(frozen=True)
class PartRecord:
    number: int
    size: int
    crc32c: int
    etag: str  # without quotes
    checksums: dict[str, str]  # x-amz-checksum-* header values the client sent, echoed back
    modified: float


@dataclass
class Upload:
    upload_id: str
    bucket: str
    key: str
    checksum_algorithm: str | None
    checksum_type: str | None
    parts: dict[int, PartRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    crc32c: int
    part_count: int  # 0 for PutObject
    etag: str
    modified: float

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "crc32c": self.crc32c,
            "part_count": self.part_count,
            "etag": self.etag,
        }


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _etag(crc: int, size: int) -> str:
    """A 32-hex-digit ETag that looks like an MD5 (clients only echo it back)."""
    return f"{crc:08x}{size:024x}"


def _xml(body: str) -> web.Response:
    return web.Response(
        body=('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(),
        content_type="application/xml",
    )


def _http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


def _is_aws_chunked(request: web.Request) -> bool:
    encoding = request.headers.get("Content-Encoding", "")
    payload = request.headers.get("x-amz-content-sha256", "")
    return "aws-chunked" in encoding or payload.startswith("STREAMING-")


class Sink:
    """The S3 state machine plus counters. Used from the event-loop thread only."""

    def __init__(self, min_part_size: int = MIN_PART_SIZE) -> None:
        self.min_part_size = min_part_size
        self.uploads: dict[str, Upload] = {}
        self.completed: dict[str, StoredObject] = {}  # upload id -> result, for repeated Complete
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.buckets: set[str] = set()
        self.body_bytes = 0  # raw request-body bytes read, framing included, failed reads too
        self.payload_bytes = 0  # decoded payload bytes of bodies read to the end
        self.requests: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.broken_bodies = 0
        self.combiner = Combiner()

    # ---- body reading -------------------------------------------------------------------
    async def _read_plain(self, request: web.Request) -> tuple[int, int]:
        crc = 0
        size = 0
        content = request.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                self.body_bytes += len(chunk)
                crc = crc32c(chunk, crc)
                size += len(chunk)
        except Exception:
            self.broken_bodies += 1
            raise
        expected = request.content_length
        if expected is not None and size != expected:
            self.broken_bodies += 1
            raise S3Error(400, "IncompleteBody", f"got {size} of {expected} bytes")
        return crc, size

    async def _read_aws_chunked(self, request: web.Request) -> tuple[int, int]:
        """Decode ``<hex-size>[;chunk-signature=...]\\r\\n<data>\\r\\n ... 0...\\r\\n<trailers>\\r\\n``."""
        content = request.content
        crc = 0
        size = 0
        try:
            while True:
                line = await content.readline()
                self.body_bytes += len(line)
                if not line.endswith(b"\n"):
                    raise S3Error(400, "IncompleteBody", "aws-chunked body ended mid-header")
                chunk_size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while True:  # trailers (x-amz-checksum-*, signature) up to an empty line
                        trailer = await content.readline()
                        self.body_bytes += len(trailer)
                        if trailer.strip() == b"":
                            break
                    break
                left = chunk_size
                while left:
                    data = await content.read(min(left, READ_BUFSIZE))
                    if not data:
                        raise S3Error(400, "IncompleteBody", "aws-chunked body ended mid-chunk")
                    self.body_bytes += len(data)
                    crc = crc32c(data, crc)
                    size += len(data)
                    left -= len(data)
                self.body_bytes += len(await content.readexactly(2))
        except Exception:
            self.broken_bodies += 1
            raise
        return crc, size

    async def read_body(self, request: web.Request) -> tuple[int, int]:
        if _is_aws_chunked(request):
            crc, size = await self._read_aws_chunked(request)
        else:
            crc, size = await self._read_plain(request)
        self.payload_bytes += size
        return crc, size

    # ---- operations ---------------------------------------------------------------------
    def _upload(self, upload_id: str, bucket: str, key: str) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.bucket != bucket or upload.key != key:
            raise S3Error(404, "NoSuchUpload", f"no upload {upload_id!r} for {bucket}/{key}")
        return upload

    async def create_multipart(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = secrets.token_hex(16)
        algorithm = request.headers.get("x-amz-checksum-algorithm")
        ctype = request.headers.get("x-amz-checksum-type")
        self.uploads[upload_id] = Upload(upload_id, bucket, key, algorithm, ctype)
        response = _xml(
            f'<InitiateMultipartUploadResult xmlns="{S3_NS}"><Bucket>{escape(bucket)}</Bucket>'
            f"<Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
            "</InitiateMultipartUploadResult>"
        )
        if algorithm:
            response.headers["x-amz-checksum-algorithm"] = algorithm
        return response

    async def upload_part(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload = self._upload(request.query["uploadId"], bucket, key)
        number = int(request.query["partNumber"])
        if not 1 <= number <= 10_000:
            raise S3Error(400, "InvalidArgument", f"part number {number} outside 1..10000")
        crc, size = await self.read_body(request)
        sent = {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower().startswith("x-amz-checksum-") and name.lower() != "x-amz-checksum-type"
        }
        etag = _etag(crc, size)
        # Checked again after the await: an abort may have raced the body.
        if request.query["uploadId"] not in self.uploads:
            raise S3Error(404, "NoSuchUpload", "the upload was aborted while the part arrived")
        upload.parts[number] = PartRecord(number, size, crc, etag, sent, time.time())
        return web.Response(status=200, headers={"ETag": f'"{etag}"', **sent})

    async def list_parts(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = request.query["uploadId"]
        upload = self._upload(upload_id, bucket, key)
        marker = int(request.query.get("part-number-marker", "0") or 0)
        max_parts = min(int(request.query.get("max-parts", str(MAX_LIST_PARTS))), MAX_LIST_PARTS)
        numbers = sorted(n for n in upload.parts if n > marker)
        page, rest = numbers[:max_parts], numbers[max_parts:]
        items = []
        for n in page:
            part = upload.parts[n]
            checks = "".join(
                f"<Checksum{name[len('x-amz-checksum-') :].upper()}>{escape(value)}"
                f"</Checksum{name[len('x-amz-checksum-') :].upper()}>"
                for name, value in part.checksums.items()
            )
            items.append(
                f"<Part><PartNumber>{n}</PartNumber><LastModified>{_iso(part.modified)}"
                f'</LastModified><ETag>"{part.etag}"</ETag><Size>{part.size}</Size>{checks}</Part>'
            )
        algorithm = (
            f"<ChecksumAlgorithm>{upload.checksum_algorithm}</ChecksumAlgorithm>"
            if upload.checksum_algorithm
            else ""
        )
        next_marker = page[-1] if page else marker
        return _xml(
            f'<ListPartsResult xmlns="{S3_NS}"><Bucket>{escape(bucket)}</Bucket>'
            f"<Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
            f"<PartNumberMarker>{marker}</PartNumberMarker>"
            f"<NextPartNumberMarker>{next_marker}</NextPartNumberMarker>"
            f"<MaxParts>{max_parts}</MaxParts><IsTruncated>{'true' if rest else 'false'}"
            f"</IsTruncated>{algorithm}<StorageClass>STANDARD</StorageClass>"
            + "".join(items)
            + "</ListPartsResult>"
        )

    def _complete_result(self, request: web.Request, obj: StoredObject) -> web.Response:
        location = f"{request.scheme}://{request.host}/{obj.bucket}/{obj.key}"
        return _xml(
            f'<CompleteMultipartUploadResult xmlns="{S3_NS}"><Location>{escape(location)}'
            f"</Location><Bucket>{escape(obj.bucket)}</Bucket><Key>{escape(obj.key)}</Key>"
            f'<ETag>"{obj.etag}"</ETag></CompleteMultipartUploadResult>'
        )

    async def complete_multipart(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = request.query["uploadId"]
        body = await request.read()
        self.body_bytes += len(body)
        done = self.completed.get(upload_id)
        if done is not None and (done.bucket, done.key) == (bucket, key):
            return self._complete_result(request, done)  # a retried Complete: same answer
        upload = self._upload(upload_id, bucket, key)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise S3Error(400, "MalformedXML", f"CompleteMultipartUpload body: {exc}") from exc
        listed: list[tuple[int, str]] = []
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] != "Part":
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in element}
            listed.append((int(fields["PartNumber"]), fields.get("ETag", "").strip('"')))
        if not listed:
            raise S3Error(400, "MalformedXML", "no parts listed")
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error(400, "InvalidPartOrder", "parts must be listed in ascending order")
        chosen: list[PartRecord] = []
        for number, etag in listed:
            part = upload.parts.get(number)
            if part is None or (etag and etag != part.etag):
                raise S3Error(400, "InvalidPart", f"part {number} missing or ETag mismatch")
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self.min_part_size:
                raise S3Error(400, "EntityTooSmall", f"part {part.number} is {part.size} bytes")
        crc = self.combiner.of_parts([(p.crc32c, p.size) for p in chosen])
        size = sum(p.size for p in chosen)
        obj = StoredObject(
            bucket, key, size, crc, len(chosen), f"{_etag(crc, size)}-{len(chosen)}", time.time()
        )
        self.objects[(bucket, key)] = obj
        self.completed[upload_id] = obj
        del self.uploads[upload_id]
        return self._complete_result(request, obj)

    async def abort_multipart(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = request.query["uploadId"]
        if upload_id in self.completed:
            raise S3Error(404, "NoSuchUpload", "the upload was completed")
        self._upload(upload_id, bucket, key)
        del self.uploads[upload_id]
        return web.Response(status=204)

    async def put_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        if "x-amz-copy-source" in request.headers:
            raise S3Error(501, "NotImplemented", "CopyObject is not supported by the sink")
        crc, size = await self.read_body(request)
        obj = StoredObject(bucket, key, size, crc, 0, _etag(crc, size), time.time())
        self.objects[(bucket, key)] = obj
        sent = {n: v for n, v in request.headers.items() if n.lower().startswith("x-amz-checksum-")}
        return web.Response(status=200, headers={"ETag": f'"{obj.etag}"', **sent})

    async def head_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        obj = self.objects.get((bucket, key))
        if obj is None:
            return web.Response(status=404)
        return web.Response(
            status=200,
            headers={
                "Content-Length": str(obj.size),
                "ETag": f'"{obj.etag}"',
                "Last-Modified": _http_date(obj.modified),
                "Content-Type": "binary/octet-stream",
            },
        )

    async def list_objects(self, request: web.Request, bucket: str) -> web.Response:
        prefix = request.query.get("prefix", "")
        keys = sorted(k for (b, k) in self.objects if b == bucket and k.startswith(prefix))
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>"
            f"{_iso(self.objects[(bucket, k)].modified)}</LastModified>"
            f'<ETag>"{self.objects[(bucket, k)].etag}"</ETag>'
            f"<Size>{self.objects[(bucket, k)].size}</Size><StorageClass>STANDARD</StorageClass>"
            "</Contents>"
            for k in keys[:1000]
        )
        return _xml(
            f'<ListBucketResult xmlns="{S3_NS}"><Name>{escape(bucket)}</Name>'
            f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{min(len(keys), 1000)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
            "</ListBucketResult>"
        )

    async def list_buckets(self) -> web.Response:
        names = sorted(self.buckets | {b for b, _ in self.objects})
        items = "".join(
            f"<Bucket><Name>{escape(n)}</Name><CreationDate>{_iso(0)}</CreationDate></Bucket>"
            for n in names
        )
        return _xml(
            f'<ListAllMyBucketsResult xmlns="{S3_NS}"><Owner><ID>sink</ID></Owner>'
            f"<Buckets>{items}</Buckets></ListAllMyBucketsResult>"
        )

    # ---- routing ------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("tail", "")
        if path.startswith("_sink/"):
            return await self.harness(request, path[len("_sink/") :])
        bucket, _, key = path.partition("/")
        method = request.method
        query = request.query
        operation: Callable[[], Awaitable[web.Response]]
        if not bucket:
            name, operation = "ListBuckets", self.list_buckets
        elif not key:
            name, operation = self._bucket_operation(request, bucket)
        elif method == "PUT" and "uploadId" in query and "partNumber" in query:
            name, operation = "UploadPart", lambda: self.upload_part(request, bucket, key)
        elif method == "PUT":
            name, operation = "PutObject", lambda: self.put_object(request, bucket, key)
        elif method == "POST" and "uploads" in query:
            name, operation = "CreateMultipartUpload", lambda: self.create_multipart(
                request, bucket, key
            )
        elif method == "POST" and "uploadId" in query:
            name, operation = "CompleteMultipartUpload", lambda: self.complete_multipart(
                request, bucket, key
            )
        elif method == "DELETE" and "uploadId" in query:
            name, operation = "AbortMultipartUpload", lambda: self.abort_multipart(
                request, bucket, key
            )
        elif method == "GET" and "uploadId" in query:
            name, operation = "ListParts", lambda: self.list_parts(request, bucket, key)
        elif method == "HEAD":
            name, operation = "HeadObject", lambda: self.head_object(request, bucket, key)
        else:
            name, operation = f"unsupported {method} /{path}?{request.query_string}", self._nyi
        self.requests[name] = self.requests[name] + 1
        try:
            response = await operation()
        except S3Error as exc:
            response = _xml(
                f"<Error><Code>{exc.code}</Code><Message>{escape(exc.message)}</Message>"
                f"<Resource>/{escape(path)}</Resource><RequestId>sink</RequestId></Error>"
            )
            response.set_status(exc.status)
            if name.startswith("unsupported"):
                print(f"sink: {name}", file=sys.stderr, flush=True)
        self.statuses[response.status] = self.statuses[response.status] + 1
        response.headers["x-amz-request-id"] = "sink"
        return response

    def _bucket_operation(
        self, request: web.Request, bucket: str
    ) -> tuple[str, Callable[[], Awaitable[web.Response]]]:
        method = request.method

        async def ok() -> web.Response:
            self.buckets.add(bucket)
            return web.Response(status=200)

        async def location() -> web.Response:
            return _xml(f'<LocationConstraint xmlns="{S3_NS}"></LocationConstraint>')

        if method == "HEAD":
            return "HeadBucket", ok
        if method == "PUT":
            return "CreateBucket", ok
        if method == "GET" and "location" in request.query:
            return "GetBucketLocation", location
        if method == "GET":
            return "ListObjects", lambda: self.list_objects(request, bucket)
        return f"unsupported {method} /{bucket}", self._nyi

    async def _nyi(self) -> web.Response:
        raise S3Error(501, "NotImplemented", "the benchmark sink does not implement this call")

    async def harness(self, request: web.Request, path: str) -> web.Response:
        if path == "stats":
            return web.json_response(
                {
                    "body_bytes": self.body_bytes,
                    "payload_bytes": self.payload_bytes,
                    "broken_bodies": self.broken_bodies,
                    "requests": dict(self.requests),
                    "statuses": {str(k): v for k, v in self.statuses.items()},
                    "open_uploads": len(self.uploads),
                }
            )
        if path.startswith("objects/"):
            bucket, _, key = path[len("objects/") :].partition("/")
            obj = self.objects.get((bucket, key))
            if obj is None:
                return web.json_response({"error": "no such object"}, status=404)
            return web.json_response(obj.as_json())
        return web.json_response({"error": "unknown harness path"}, status=404)


def build_app(sink: Sink | None = None) -> web.Application:
    app = web.Application(client_max_size=1024**4)
    app["sink"] = sink = sink or Sink()
    app.router.add_route("*", "/{tail:.*}", sink.dispatch)
    return app


async def serve(
    host: str,
    port: int,
    ready: Callable[[int], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve until cancelled (HTTPS when ``ssl_context``); ``ready`` gets the bound port."""
    runner = web.AppRunner(
        build_app(), access_log=None, read_bufsize=READ_BUFSIZE, handle_signals=False
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        if ready is not None:
            ready(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    ssl_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)

    def announce(port: int) -> None:
        print(f"READY {port}", flush=True)

    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, announce, ssl_context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
