"""What verifying signatures costs: `notaryd preflight` against plain hashlib over the same bytes.

Builds a game-shaped bundle: Game.app with many universal (x86_64 + arm64) Mach-O files, every
one signed with real page hashes, a large sparse resource pack and small resources, sealed by
CodeResources like codesign leaves it. Then times, each in a fresh process with a warm page
cache, preflight of the folder, of a stored zip and of a deflated zip of it, against one SHA-256
pass over every file of the folder and over every inflated member of the deflated zip, and
reports wall time, CPU time (user + system: steadier than wall time on a shared machine) and
peak RSS (median of ``--runs``).

    python -m benchmarks.preflight_integrity --code-mib 1536 --pack-mib 2048
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import plistlib
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "preflight"))

# Every child ends the same way: wall time, peak RSS (KiB), CPU seconds, bytes hashed.
_CHILD_REPORT = """
elapsed = time.perf_counter() - started
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
print(elapsed, hwm, cpu, total)
"""
_CHILD_PREFLIGHT = """
import resource, sys, time
from pathlib import Path
from cryptography import x509
from uploader.preflight import run_preflight
anchor = x509.load_pem_x509_certificate(Path(sys.argv[2]).read_bytes())
started = time.perf_counter()
report = run_preflight(Path(sys.argv[1]), trust_anchors=[anchor])
elapsed = time.perf_counter() - started
assert not report.issues, report.render_text()
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
print(elapsed, hwm, cpu, report.macho_files)
"""
_CHILD_INFLATE_HASHLIB = """
import hashlib, resource, sys, time, zipfile
started = time.perf_counter()
total = 0
with zipfile.ZipFile(sys.argv[1]) as archive:
    for info in archive.infolist():
        digest = hashlib.sha256()
        with archive.open(info) as member:
            while chunk := member.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
""" + _CHILD_REPORT
_CHILD_HASHLIB = """
import hashlib, os, resource, sys, time
started = time.perf_counter()
total = 0
for dirpath, _dirs, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(dirpath, name)
        if os.path.islink(path):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
""" + _CHILD_REPORT


def build(parent: Path, code_mib: int, pack_mib: int) -> tuple[Path, Path, int]:
    """Game.app under ``parent``; returns it, the trust anchor's PEM and the Mach-O bytes."""
    from cryptography.hazmat.primitives import serialization

    # The tests' own signer: writes code signatures independently of preflight.
    from preflight_builders import CPU_X86_64, MH_DYLIB, make_pki  # type: ignore[import-not-found]
    from seal_builders import (  # type: ignore[import-not-found]
        DEFAULT_RULES,
        DEFAULT_RULES2,
        CodeSigning,
        fat,
        signed_thin,
    )

    pki = make_pki()
    anchor = parent / "root.pem"
    anchor.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.PEM))
    signing = CodeSigning(identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert])
    contents = parent / "Game.app" / "Contents"
    files2: dict[str, object] = {}
    slice_bytes = 8 << 20
    count = max(1, (code_mib << 20) // (2 * slice_bytes))
    code_total = 0
    for index in range(count):
        relative = f"Frameworks/libmodule{index:03d}.dylib"
        slices = [
            signed_thin(
                signing,
                cputype=cpu,
                filetype=MH_DYLIB,
                code_bytes=slice_bytes,
                seed=f"{relative}{cpu}".encode(),
            )
            for cpu in (CPU_X86_64, 0x0100000C)
        ]
        data = fat([(CPU_X86_64, slices[0].data), (0x0100000C, slices[1].data)])
        target = contents / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        code_total += len(data)
        files2[relative] = {"cdhash": slices[0].cdhash, "requirement": 'cdhash H"00"'}
    pack = contents / "Resources" / "content.pak"
    pack.parent.mkdir(parents=True)
    with pack.open("wb") as handle:  # sparse: a header, then a hole
        handle.write(b"PAK!" * 1024)
        handle.truncate(pack_mib << 20)
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with pack.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
    files2["Resources/content.pak"] = {"hash": sha1.digest(), "hash2": sha256.digest()}
    for index in range(200):
        small = contents / "Resources" / "levels" / f"level{index:03d}.json"
        small.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"level": index}).encode()
        small.write_bytes(body)
        files2[f"Resources/levels/level{index:03d}.json"] = {
            "hash": hashlib.sha1(body).digest(),
            "hash2": hashlib.sha256(body).digest(),
        }
    info = plistlib.dumps({"CFBundleExecutable": "Game", "CFBundleIdentifier": "com.example"})
    (contents / "Info.plist").write_bytes(info)
    seal = plistlib.dumps(
        {"files": {}, "files2": files2, "rules": DEFAULT_RULES, "rules2": DEFAULT_RULES2}
    )
    (contents / "_CodeSignature").mkdir()
    (contents / "_CodeSignature" / "CodeResources").write_bytes(seal)
    main = signed_thin(signing, code_bytes=32 << 20, info_plist=info, code_resources=seal)
    (contents / "MacOS").mkdir()
    (contents / "MacOS" / "Game").write_bytes(main.data)
    return contents.parent, anchor, code_total + len(main.data)


def make_zip(app: Path, target: Path, compression: int) -> None:
    with zipfile.ZipFile(target, "w", compression=compression, allowZip64=True) as zf:
        for path in sorted(app.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(app.parent).as_posix())


def measure(script: str, *args: str, runs: int) -> tuple[float, float, float, str]:
    """Median seconds and median peak RSS (MiB, the process's own VmHWM: ru_maxrss would carry
    this parent's peak across fork and exec) over ``runs`` fresh processes, after a warm-up."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seconds, rss, cpu, extra = [], [], [], ""
    for attempt in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", script, *args], env=env, check=True, capture_output=True,
            text=True,
        ).stdout.split()  # fmt: skip
        if attempt:  # the first run only warms the page cache
            seconds.append(float(out[0]))
            rss.append(int(out[1]) / 1024)
            cpu.append(float(out[2]))
        extra = out[3]
    return statistics.median(seconds), statistics.median(rss), statistics.median(cpu), extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code-mib", type=int, default=1536)
    parser.add_argument("--pack-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preflight-bench-") as scratch:
        started = time.perf_counter()
        app, anchor, code = build(Path(scratch), args.code_mib, args.pack_mib)
        archive = Path(scratch) / "Game.zip"
        make_zip(app, archive, zipfile.ZIP_STORED)
        deflated = Path(scratch) / "Game-deflated.zip"
        make_zip(app, deflated, zipfile.ZIP_DEFLATED)  # what ditto -c -k makes
        print(f"built in {time.perf_counter() - started:.0f} s: {code / 2**20:.0f} MiB of Mach-O, "
              f"{args.pack_mib} MiB sparse pack, zip {archive.stat().st_size / 2**30:.2f} GiB")  # fmt: skip
        rows = [
            ("preflight Game.app (folder)", _CHILD_PREFLIGHT, str(app), str(anchor)),
            ("preflight Game.zip (stored)", _CHILD_PREFLIGHT, str(archive), str(anchor)),
            ("preflight Game.zip (deflated)", _CHILD_PREFLIGHT, str(deflated), str(anchor)),
            ("hashlib sha256, every file of the folder", _CHILD_HASHLIB, str(app)),
            ("inflate + sha256, every deflated member", _CHILD_INFLATE_HASHLIB, str(deflated)),
        ]
        for label, script, *argv in rows:
            seconds, rss, cpu, extra = measure(script, *argv, runs=args.runs)
            print(
                f"{label:<42} {seconds:7.2f} s wall {cpu:7.2f} s CPU  "
                f"peak RSS {rss:6.0f} MiB  ({extra})"
            )


if __name__ == "__main__":
    main()
