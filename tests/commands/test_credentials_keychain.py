"""`notaryd credentials store|list|delete` and `--profile`, as real processes against a real
keychain (GNOME Keyring's Secret Service, the ``secret_service`` fixture) and the notary emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.auth import TeamKey
from service.emulator.notary import BackgroundEmulator
from tests.support.emulator import cli_environment
from tests.support.files import PART, make_archive
from tests.support.keychain import SecretService

pytestmark = pytest.mark.process

KEY_SETTINGS = ("NOTARYD_PRIVATE_KEY", "NOTARYD_KEY_ID", "NOTARYD_ISSUER_ID")


def notaryd(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *argv], env=env, capture_output=True,
                          text=True, timeout=300)


def environment(notary: BackgroundEmulator, key: TeamKey, home: Path,
                keychain: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in cli_environment(notary.emulator, key, home).items()
           if k not in KEY_SETTINGS}
    env.update(keychain, XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"))
    return env


def store_command(key: TeamKey, profile: str = "ci") -> list[str]:
    assert key.path is not None
    return ["credentials", "store", profile, "--key", str(key.path), "--key-id", key.key_id,
            "--issuer", key.issuer_id]


def test_a_stored_profile_notarises_and_outranks_the_environment(
    notary: BackgroundEmulator, secret_service: SecretService, tmp_path: Path
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    other = notary.call(lambda e: e.make_team_key(tmp_path / "other-keys"))
    home = tmp_path / "home"
    env = environment(notary, key, home, secret_service.environment())

    stored = notaryd(env, *store_command(key))
    assert stored.returncode == 0, stored.stderr
    listed = notaryd(env, "credentials", "list", "--json")
    assert json.loads(listed.stdout) == {"profiles": ["ci"]}
    index = (home / "config" / "notaryd" / "profiles.json").read_text()
    assert json.loads(index) == {"profiles": ["ci"]}  # names only: no key, no ids

    # the environment names another team's key: the profile wins over it
    env_with_other = {**env, "NOTARYD_KEY_ID": other.key_id, "NOTARYD_ISSUER_ID": other.issuer_id,
                      "NOTARYD_PRIVATE_KEY": str(other.path)}
    archive = make_archive(tmp_path / "Game.zip", PART)
    done = notaryd(env_with_other, "notarize", str(archive), "--profile", "ci", "--json",
                   "--skip-preflight")  # the archive holds data, no code
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "Accepted"
    by_env = notaryd({**env, "NOTARYD_PROFILE": "ci"}, "history", "--json")
    assert by_env.returncode == 0, by_env.stderr
    assert [item["id"] for item in json.loads(by_env.stdout)] == [json.loads(done.stdout)["submission_id"]]

    # a flag outranks the profile: the other team's key id with this key is refused (401)
    flagged = notaryd(env, "history", "--profile", "ci", "--key-id", other.key_id)
    assert flagged.returncode == 1
    assert flagged.stderr.count("\n") == 1, flagged.stderr
    assert f"refused the API key (401 Unauthenticated) for key id {other.key_id!r}" in flagged.stderr

    # the keychain's own file is encrypted: no line of the key in it
    pem_lines = [line for line in key.path.read_text().splitlines() if not line.startswith("-----")]
    for path in secret_service.data_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(line.encode() in data for line in pem_lines), path

    deleted = notaryd(env, "credentials", "delete", "ci")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(notaryd(env, "credentials", "list", "--json").stdout) == {"profiles": []}
    gone = notaryd(env, "history", "--profile", "ci")
    assert gone.returncode == 1
    assert "profile 'ci': no credentials stored under this name" in gone.stderr
    assert notaryd(env, "credentials", "delete", "ci").returncode == 1


def test_store_checks_the_key_as_doctor_does_and_stores_nothing_it_refuses(
    notary: BackgroundEmulator, secret_service: SecretService, tmp_path: Path
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    assert key.path is not None
    env = environment(notary, key, tmp_path / "home", secret_service.environment())
    key.path.chmod(0o644)

    loose = notaryd(env, *store_command(key))
    assert loose.returncode == 1
    assert f"chmod 600 {key.path}" in loose.stderr
    bad_id = notaryd(env, "credentials", "store", "ci", "--key", str(key.path), "--key-id", "short",
                     "--issuer", "not-a-uuid")
    assert bad_id.returncode == 1
    assert "not a 10-character Key ID" in bad_id.stderr and "not a UUID" in bad_id.stderr
    assert json.loads(notaryd(env, "credentials", "list", "--json").stdout) == {"profiles": []}


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring",
                                     "keyring.backends.null.Keyring",
                                     "keyrings.alt.file.PlaintextKeyring"])
def test_without_a_keychain_one_line_names_the_other_ways_and_nothing_is_written(
    notary: BackgroundEmulator, tmp_path: Path, backend: str
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    home = tmp_path / "home"
    env = environment(notary, key, home, {"PYTHON_KEYRING_BACKEND": backend})
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    stored = notaryd(env, *store_command(key))
    assert stored.returncode == 1
    assert stored.stdout == "" and stored.stderr.count("\n") == 1, stored.stderr
    assert stored.stderr.startswith("notaryd: no OS keychain")
    assert "NOTARYD_PRIVATE_KEY" in stored.stderr and "--key" in stored.stderr
    used = notaryd(env, "history", "--profile", "ci")
    assert used.returncode == 1 and used.stderr.startswith("notaryd: no OS keychain")
    written = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert written == [], "nothing stored anywhere, in plain text or otherwise"
    assert not os.path.exists(home / "data" / "python_keyring")
