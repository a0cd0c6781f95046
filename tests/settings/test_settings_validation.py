"""Every setting is type- and range-checked into one line naming where it came from
(issue 10, item 5): nothing is silently coerced, nothing reaches the user as a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings, check_listen_resolves, load_settings
from uploader.errors import ConfigError
from uploader.redaction import redact


def settings_from(
    tmp_path: Path, environ: dict[str, str], toml: str | bytes | None = None
) -> Settings:
    config = tmp_path / "config.toml"
    if toml is not None:
        config.write_bytes(toml.encode() if isinstance(toml, str) else toml)
    return load_settings(environ=environ, config_path=config if toml is not None else None)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("NOTARYD_CONCURRENCY", "1000", "between 1 and 64"),
        ("NOTARYD_CONCURRENCY", "0", "between 1 and 64"),
        ("NOTARYD_CONCURRENCY", "1.5", "whole number"),
        ("NOTARYD_CONCURRENCY", "eight", "whole number"),
        ("NOTARYD_STALL_TIMEOUT", "nan", "at most 3600 seconds"),
        ("NOTARYD_STALL_TIMEOUT", "inf", "at most 3600 seconds"),
        ("NOTARYD_STALL_TIMEOUT", "1e9", "at most 3600 seconds"),
        ("NOTARYD_STALL_TIMEOUT", "-1", "more than 0"),
        ("NOTARYD_SHUTDOWN_GRACE", "nan", "seconds"),
        ("NOTARYD_SHUTDOWN_GRACE", "1e400", "seconds"),
        ("NOTARYD_PART_SIZE", "1024", "between 5,242,880 and 5,368,709,120 bytes"),
        ("NOTARYD_PART_SIZE", str(10**30), "between"),
        ("NOTARYD_POLL_INITIAL", "0", "more than 0"),
        ("NOTARYD_STUCK_AFTER", "-inf", "seconds"),
        ("NOTARYD_MAX_JOBS", "100000", "between 1 and 64"),
        ("NOTARYD_MAX_PARTS_IN_FLIGHT", "-3", "between"),
        ("NOTARYD_BANDWIDTH_LIMIT", "0", "bytes per second"),
        ("NOTARYD_S3_ACCELERATE", "maybe", "true/false"),
        ("NOTARYD_LISTEN", "7780", "HOST:PORT"),
        ("NOTARYD_LISTEN", "127.0.0.1:99999", "HOST:PORT"),
        ("NOTARYD_LISTEN", "::1:7780", "HOST:PORT"),
        ("NOTARYD_API_URL", "file:///etc/passwd", "http:// or https://"),
        ("NOTARYD_STATE_DIR", "/tmp/a\x00b", "NUL"),
        ("NOTARYD_ALLOWED_HOSTS", "mac-1.example:7780", "host names separated by commas"),
    ],
)
def test_bad_environment_values_are_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, {name: value})
    message = str(raised.value)
    assert message.startswith(f"environment variable {name}:")
    assert expected in message and "\n" not in message


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("concurrency = 1.5", "whole number"),  # was silently 1
        ("concurrency = true", "whole number"),
        ("concurrency = '8'", None),  # text digits are fine, as in the environment
        ("stall_timeout = nan", "seconds"),
        ("stall_timeout = inf", "seconds"),
        ("stall_timeout = 'soon'", "number of seconds"),
        ("shutdown_grace = [1]", "number of seconds"),
        ("part_size = 5.0e6", "whole number"),
        ("s3_accelerate = 1", "true or false"),
        ("key_id = 1234", "quoted string"),
        ("allowed_roots = [1, 2]", "quoted string"),
        ("concurency = 4", "did you mean 'concurrency'"),
        ("listen = { host = 'x' }", "quoted string"),
    ],
)
def test_bad_file_values_are_one_line_naming_the_key(
    tmp_path: Path, toml: str, expected: str | None
) -> None:
    if expected is None:
        assert settings_from(tmp_path, {}, toml).concurrency == 8
        return
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, {}, toml)
    message = str(raised.value)
    assert str(tmp_path / "config.toml") in message and "key '" in message
    assert expected in message and "\n" not in message


def test_integers_stay_integers_and_good_values_load(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {"NOTARYD_STALL_TIMEOUT": "2.5"},
                             "concurrency = 16\npart_size = 8_388_608\nshutdown_grace = 3")
    assert settings.concurrency == 16 and isinstance(settings.concurrency, int)
    assert settings.part_size == 8 * 1024 * 1024
    assert settings.stall_timeout == 2.5 and settings.shutdown_grace == 3.0


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"concurrency = 4\nkey_id = '\xff\xfe'\n", r"not UTF-8 text \(line 2, byte 26\)"),
        (b"concurrency = = 4", "not valid TOML"),
        (b"# " + b"x" * 300_000, "larger than 256 KiB"),
    ],
)
def test_unreadable_config_files_are_one_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        settings_from(tmp_path, {}, content)


def test_unresolvable_listen_is_one_line(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {"NOTARYD_LISTEN": "no-such-host.invalid:7780"})
    with pytest.raises(ConfigError, match=r"cannot resolve host 'no-such-host\.invalid'"):
        check_listen_resolves(settings)
    check_listen_resolves(settings_from(tmp_path, {"NOTARYD_LISTEN": "[::1]:0"}))


def test_api_token_is_redacted_from_logs(tmp_path: Path) -> None:
    settings_from(tmp_path, {"NOTARYD_API_TOKEN": "tok-0123456789abcdef"})
    assert "tok-0123456789abcdef" not in redact("client sent tok-0123456789abcdef")


@pytest.mark.process
def test_cli_prints_one_line_for_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b"stall_timeout = nan\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTARYD_")}
    env.update(HOME=str(tmp_path), NOTARYD_CONFIG=str(config))
    for extra_env in ({}, {"NOTARYD_CONCURRENCY": "1000"}):
        result = subprocess.run([sys.executable, "-m", "service", "history"],
                                env={**env, **extra_env}, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_allowed_hosts_from_the_environment_or_a_toml_list(tmp_path: Path) -> None:
    assert settings_from(tmp_path, {"NOTARYD_ALLOWED_HOSTS": "Mac-1.Example., mac-2,"}
                         ).allowed_hosts == ("mac-1.example", "mac-2")
    assert settings_from(tmp_path, {}, 'allowed_hosts = ["notaryd.corp"]').allowed_hosts == (
        "notaryd.corp",)
