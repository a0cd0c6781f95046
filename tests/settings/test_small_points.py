"""Issue 18, item 13: durations on the command line are checked, a config file holding secrets
must be private like the key file, and the zips made from bundles live in a private folder.
(Notifications pending at a restart: tests/daemon/test_notify_delivery.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import main
from service.emulator.sample_app import make_sample_app
from service.settings import load_settings
from tests.support.daemon import notaryd
from uploader import state_dir
from uploader.bundle_zip import archive_dir, package_for_submission
from uploader.errors import ConfigError


@pytest.mark.parametrize("argv", [
    ["wait", "2efe2717-52ef-43a5-96dc-0797e4ca1041", "--timeout", "nan"],
    ["wait", "2efe2717-52ef-43a5-96dc-0797e4ca1041", "--timeout", "-5"],
    ["wait", "2efe2717-52ef-43a5-96dc-0797e4ca1041", "--timeout", "inf"],
    ["wait", "2efe2717-52ef-43a5-96dc-0797e4ca1041", "--timeout", "0"],
    ["staple", "Game.app", "--max-wait", "nan"],
    ["staple", "Game.app", "--max-wait", "-1"],
])
def test_negative_and_nan_durations_are_refused_with_a_clear_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "must be more than 0 and at most" in err or "must be at least 0 and at most" in err
    assert f"got '{argv[-1]}'" in err
    assert "Traceback" not in err


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask: what makes files group/world readable
    try:
        yield
    finally:
        os.umask(old)


def config_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("text, secret", [
    ('api_token = "0123456789abcdef0123"\n', "api_token"),
    ('notify_url = "https://ci.example/hook"\nnotify_secret = "shared-s3cret"\n', "notify_secret"),
    ('s3_endpoint_url = "https://AKID:s3-passw0rd@minio.example:9000"\n', "s3_endpoint_url"),
    ('ticket_url = "https://lookup.example/records?ckAPIToken=ck-t0ken"\n', "ticket_url"),
])
def test_a_config_file_with_secrets_readable_by_others_is_refused(
    tmp_path: Path, text: str, secret: str
) -> None:
    path = config_file(tmp_path, text, 0o644)
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={}, config_path=path)
    message = str(refused.value)
    assert f"it holds {secret}" in message and "mode 0644" in message
    assert f"run `chmod 600 {path}`" in message
    path.chmod(0o600)
    load_settings(environ={}, config_path=path)  # private: fine


def test_a_config_file_without_secrets_may_be_shared(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'max_jobs = 4\napi_url = "https://notary.example/v2"\n', 0o644)
    assert load_settings(environ={}, config_path=path).max_jobs == 4


@pytest.mark.process
def test_a_fifo_as_the_config_file_is_one_line_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTARYD_")}
    result = subprocess.run([notaryd(), "history"], capture_output=True, text=True, timeout=30,
                            env={**env, "HOME": str(tmp_path), "NOTARYD_CONFIG": str(fifo)})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"notaryd: {fifo}: the config file is not a regular file; give a TOML file")


def test_the_folder_of_zips_made_from_bundles_is_private(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "state"
    state_dir.prepare(state)  # as the CLI and the daemon do when they open the database
    app = make_sample_app(tmp_path, "Game")
    packaged = package_for_submission(app, state, part_size=8 * 1024 * 1024)
    assert packaged.archive.parent == archive_dir(state)
    assert stat.S_IMODE(os.stat(archive_dir(state)).st_mode) == 0o700
