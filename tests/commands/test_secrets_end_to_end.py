"""`notaryd -v notarize` end to end: no issued secret in any output byte or any state file.

The attack (issue 10): with ``-v``, aiosqlite's DEBUG lines showed the INSERT parameters (the
12-hour S3 secret key and session token) and botocore's showed X-Amz-Security-Token; ``logs/``
was 0755 with 0644 files. Here the real emulator issues the secrets, a real ``notaryd`` process
uploads to real SeaweedFS, and every byte it printed and every file it left in the state dir
(the database excepted: it must hold the credentials to resume) is searched for them.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from service.emulator.auth import TeamKey
from service.emulator.notary import BackgroundEmulator, NotaryEmulator
from tests.support.actions import Runner
from tests.support.daemon import ServiceManager
from tests.support.emulator import cli_environment, notarize_command
from tests.support.files import PART, make_archive
from tests.support.keychain import SecretService

pytestmark = pytest.mark.process

DATABASE_NAMES = {"notaryd.sqlite3", "notaryd.sqlite3-wal", "notaryd.sqlite3-shm"}


def issued_secrets(notary: BackgroundEmulator, key: TeamKey, pem: str | None = None,
                   given: str | None = None) -> dict[str, str]:
    """Every secret the run saw: S3 secret keys, session tokens, JWTs, private key lines (of
    ``pem``, else of the key file), and the key text as ``given`` to notaryd."""
    def collect(emulator: NotaryEmulator) -> dict[str, str]:
        found: dict[str, str] = {}
        for submission in emulator.submissions.values():
            found[f"secret key of {submission.id}"] = submission.grant.secret_access_key
            found[f"session token of {submission.id}"] = submission.grant.session_token
        for number, token in enumerate(emulator.token_stats._seen):
            found[f"JWT #{number}"] = token
        return found

    found = notary.call(collect)
    if pem is None:
        assert key.path is not None
        pem = key.path.read_text()
    pem_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    for number, line in enumerate((given or "").splitlines()):
        found[f"given key text line {number}"] = line
    for number, line in enumerate(pem_lines):
        found[f"private key line {number}"] = line
    found["private key body"] = "".join(pem_lines)
    return found


def test_verbose_notarize_leaks_no_secret(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    home = tmp_path / "home"
    state = home / "state"
    state.mkdir(parents=True, mode=0o755)  # an existing, too-open state dir must be tightened
    os.chmod(state, 0o755)
    env = cli_environment(notary.emulator, key, home)
    archive = make_archive(tmp_path / "Game.zip", 2 * PART)

    result = subprocess.run([*notarize_command(archive)[:3], "-v", *notarize_command(archive)[3:]],
                            env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    stderr = result.stderr.decode(errors="replace")
    # the run really was verbose through the leaky libraries, so the check below means something
    assert "aiosqlite" in stderr and "botocore" in stderr
    assert stderr.count("tightened permissions") == 1
    assert_no_secret_anywhere(issued_secrets(notary, key), state,
                              {"stdout": result.stdout, "stderr": result.stderr})


def assert_no_secret_anywhere(
    secrets: dict[str, str], state: Path, outputs: dict[str, bytes]
) -> None:
    """No secret in ``outputs`` or any state file but the database; private modes throughout."""
    assert sum(name.startswith("session token") for name in secrets) == 1
    assert any(name.startswith("JWT") for name in secrets)
    outputs = dict(outputs)
    for path in sorted(state.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:o}"
            continue
        assert mode == 0o600, f"{path} is {mode:o}"
        if path.name not in DATABASE_NAMES:
            outputs[str(path)] = path.read_bytes()
    assert any("/logs/" in name for name in outputs), "the run stored its notary log"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

    for where, data in outputs.items():
        for name, secret in secrets.items():
            for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
                assert form.encode() not in data, f"{name} appears in {where}"
        text = data.decode(errors="replace")
        assert not re.search(r"eyJ[\w-]{4,}\.[\w-]{4,}\.", text), f"a JWT appears in {where}"
        assert not re.search(r"(?i)signature=(?!b?['\"]?\[REDACTED)\w", text), f"a signature in {where}"
        assert "PRIVATE KEY-----" not in text


def test_verbose_daemon_leaks_no_secret(notary: BackgroundEmulator, tmp_path: Path) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    home = tmp_path / "home"
    state = home / "state"
    archives = tmp_path / "archives"
    archives.mkdir()
    env = cli_environment(notary.emulator, key, home)
    env.update(NOTARYD_LISTEN="127.0.0.1:0", NOTARYD_ALLOWED_ROOTS=str(archives),
               PYTHONUNBUFFERED="1")
    archive = make_archive(archives / "Game.zip", PART)
    log_path = tmp_path / "serve.log"
    manager = ServiceManager()
    with log_path.open("wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "service", "-v", "serve"],
                                 env={**env, "NOTIFY_SOCKET": manager.address}, stdout=log, stderr=log)
    try:
        port = manager.wait_ready(serve, 60, lambda: log_path.read_text(errors="replace")[-3000:])
        env["NOTARYD_LISTEN"] = f"127.0.0.1:{port}"
        done = subprocess.run([sys.executable, "-m", "service", "-v", "submit", str(archive),
                               "--wait", "--skip-preflight"], env=env, capture_output=True,
                              timeout=300)
        submitted = done.stdout + done.stderr
        assert done.returncode == 0, submitted.decode(errors="replace")[-3000:]
    finally:
        manager.close()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        finally:
            if serve.poll() is None:
                serve.kill()
                serve.wait()
    served = log_path.read_bytes()
    assert b"botocore" in served and b"aiosqlite" in served  # really verbose
    assert_no_secret_anywhere(issued_secrets(notary, key), state,
                              {"serve output": served, "submit output": submitted})


KEY_SETTINGS = ("NOTARYD_PRIVATE_KEY", "NOTARYD_KEY_ID", "NOTARYD_ISSUER_ID")


def _verbose_notarize(archive: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = notarize_command(archive, *extra)
    result = subprocess.run([*command[:3], "-v", *command[3:]], env=env, capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert b"aiosqlite" in result.stderr and b"botocore" in result.stderr  # really verbose
    return result


def test_verbose_notarize_with_a_keychain_profile_leaks_no_secret(
    notary: BackgroundEmulator, secret_service: SecretService, tmp_path: Path
) -> None:
    """The key comes only from the keychain (its file is gone): no line of it in any output,
    state file, the profile index or the keychain's own (encrypted) files."""
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    assert key.path is not None
    pem = key.path.read_text()
    home = tmp_path / "home"
    env = {k: v for k, v in cli_environment(notary.emulator, key, home).items()
           if k not in KEY_SETTINGS}
    env.update(secret_service.environment(), XDG_CONFIG_HOME=str(home / "config"))
    stored = subprocess.run(
        [sys.executable, "-m", "service", "-v", "credentials", "store", "ci", "--key",
         str(key.path), "--key-id", key.key_id, "--issuer", key.issuer_id],
        env=env, capture_output=True, timeout=120)
    assert stored.returncode == 0, stored.stderr.decode(errors="replace")
    key.path.unlink()

    result = _verbose_notarize(make_archive(tmp_path / "Game.zip", 2 * PART),
                               {**env, "NOTARYD_PROFILE": "ci"})

    outputs = {"store output": stored.stdout + stored.stderr, "stdout": result.stdout,
               "stderr": result.stderr}
    for path in [*(home / "config").rglob("*"), *secret_service.data_home.rglob("*")]:
        if path.is_file():
            outputs[str(path)] = path.read_bytes()
    assert_no_secret_anywhere(issued_secrets(notary, key, pem), home / "state", outputs)


@pytest.mark.parametrize("form", ["base64", "pem"])
def test_verbose_notarize_with_the_key_in_the_environment_leaks_no_secret(
    notary: BackgroundEmulator, tmp_path: Path, form: str
) -> None:
    """NOTARYD_PRIVATE_KEY holds the key itself (as a CI secret does); its file is gone."""
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    assert key.path is not None
    pem = key.path.read_text()
    given = base64.b64encode(pem.encode()).decode() if form == "base64" else pem
    key.path.unlink()
    home = tmp_path / "home"
    env = {**cli_environment(notary.emulator, key, home), "NOTARYD_PRIVATE_KEY": given}

    result = _verbose_notarize(make_archive(tmp_path / "Game.zip", 2 * PART), env)

    assert_no_secret_anywhere(issued_secrets(notary, key, pem, given), home / "state",
                              {"stdout": result.stdout, "stderr": result.stderr})
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".p8"] == []


def test_the_action_leaks_no_secret(notary: BackgroundEmulator, tmp_path: Path) -> None:
    """The GitHub Action with the key as a base64 secret: nothing in its log, the runner's
    files or notaryd's state, and the key reaches notaryd only through its environment."""
    runner = Runner(tmp_path, notary)
    assert runner.key.path is not None
    given = base64.b64encode(runner.pem.encode()).decode()
    archive = make_archive(runner.workspace / "Game.zip", 2 * PART)

    run = runner.run(runner.inputs(archive, given))

    assert run.code == 0, run.log[-4000:]
    assert run.outputs["status"] == "Accepted"
    runner.assert_key_never_shown(run, given)
    outputs = {"log": run.log.encode(), "runner files": run.written().encode()}
    assert_no_secret_anywhere(issued_secrets(notary, runner.key, runner.pem, given),
                              runner.home / "state", outputs)
