"""Runs notaryd's third-party stack under the seccomp rule behind MemoryDenyWriteExecute=yes.

Run as a script (``python mdwe_probe.py``): it installs, through libseccomp, the same filter
systemd installs for ``MemoryDenyWriteExecute=yes`` (mmap with PROT_WRITE|PROT_EXEC, and
mprotect/pkey_mprotect adding PROT_EXEC, fail with EPERM; shmat with SHM_EXEC), proves the
filter is active, then exercises what the daemon uses: uvloop, an aiohttp server and client on
loopback, ES256 JWT signing, aiosqlite, awscrt checksums, aioboto3 client set-up, prometheus
exposition and a ctypes callback (a libffi closure). Prints "ok" and exits 0 when all worked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import sys
import tempfile

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
SHM_EXEC = 0o100000


def SCMP_ACT_ERRNO(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def install_memory_deny_write_execute() -> None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    assert ctx, "seccomp_init failed"
    deny = SCMP_ACT_ERRNO(errno.EPERM)
    write_exec = mmap.PROT_WRITE | mmap.PROT_EXEC
    rules = [
        ("mmap", 2, write_exec, write_exec),
        ("mprotect", 2, mmap.PROT_EXEC, mmap.PROT_EXEC),
        ("pkey_mprotect", 2, mmap.PROT_EXEC, mmap.PROT_EXEC),
        ("shmat", 2, SHM_EXEC, SHM_EXEC),
    ]
    for syscall_name, arg, mask, value in rules:
        number = lib.seccomp_syscall_resolve_name(syscall_name.encode())
        cmp = ScmpArgCmp(arg, SCMP_CMP_MASKED_EQ, mask, value)
        rc = lib.seccomp_rule_add_array(ctx, deny, number, 1, ctypes.byref(cmp))
        assert rc == 0, f"seccomp_rule_add_array({syscall_name}) = {rc}"
    rc = lib.seccomp_load(ctx)
    assert rc == 0, f"seccomp_load = {rc}"


def filter_is_active() -> bool:
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return True
    return False


async def exercise_stack(workdir: str) -> None:
    import aioboto3
    import aiosqlite
    import jwt
    from aiohttp import ClientSession, web
    from awscrt import checksums
    from cryptography.hazmat.primitives.asymmetric import ec
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as resp:
            assert (await resp.json()) == {"ok": True}
    finally:
        await runner.cleanup()

    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"iss": "probe"}, key, algorithm="ES256")
    assert jwt.decode(token, key.public_key(), algorithms=["ES256"])["iss"] == "probe"

    async with aiosqlite.connect(f"{workdir}/probe.sqlite3") as db:
        await db.execute("create table t (x integer)")
        await db.execute("insert into t values (42)")
        async with db.execute("select x from t") as cursor:
            assert (await cursor.fetchone()) == (42,)

    assert checksums.crc32c(b"123456789") == 0xE3069283
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="probe",
        aws_secret_access_key="probe",
    ) as client:
        assert client.meta.region_name == "us-east-1"

    registry = CollectorRegistry()
    Counter("probe_total", "probe", registry=registry).inc()
    assert b"probe_total 1.0" in generate_latest(registry)

    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    doubled = callback_type(lambda x: 2 * x)  # a libffi closure: needs a trampoline
    assert doubled(21) == 42


def main() -> int:
    install_memory_deny_write_execute()
    if not filter_is_active():
        print("the seccomp filter did not block a writable+executable mapping", file=sys.stderr)
        return 3
    import uvloop

    with tempfile.TemporaryDirectory() as workdir:
        uvloop.run(exercise_stack(workdir))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
