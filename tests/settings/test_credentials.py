"""Where the API key comes from (service/settings.py): flags, then the keychain profile, then the
environment, then the config file; and NOTARYD_PRIVATE_KEY holding the key itself.

The precedence table runs the real resolution with a real config file; the keychain lookup is
handed in here (the OS keychain itself is tested in test_credentials_keychain.py).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.cli import build_parser
from service.commands.credentials import AUTHENTICATING, credential_flags
from service.keychain import StoredCredentials
from service.setting_credentials import CredentialFlags
from service.settings import Settings, load_settings
from uploader.errors import ConfigError
from uploader.keytext import InlineKey
from uploader.notary.auth import load_api_key
from uploader.redaction import REDACTED, redact


def make_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def key_file(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"AuthKey_{name}.p8"
    path.write_text(make_pem())
    path.chmod(0o600)
    return path


class Sources:
    """One distinct key id, issuer and key per source, so the winner of each field shows."""

    def __init__(self, root: Path) -> None:
        self.file_key = key_file(root / "file", "FILEKEY")
        self.env_key = key_file(root / "env", "ENVKEY")
        self.flag_key = key_file(root / "flag", "FLAGKEY")
        self.profile_pem = make_pem()
        self.config = root / "config.toml"
        self.config.write_text(f'key_id = "FILE000000"\nissuer_id = "file-issuer"\n'
                               f'private_key = "{self.file_key}"\n')
        self.environ = {"NOTARYD_KEY_ID": "ENV0000000", "NOTARYD_ISSUER_ID": "env-issuer",
                        "NOTARYD_PRIVATE_KEY": str(self.env_key)}
        self.looked_up: list[str] = []

    def keychain(self, profile: str) -> StoredCredentials:
        self.looked_up.append(profile)
        if profile != "team":
            raise ConfigError(f"profile {profile!r}: no credentials stored under this name")
        return StoredCredentials("PROF000000", "profile-issuer", self.profile_pem)

    def load(self, flags: CredentialFlags | None, *, env: bool = True, profile_env: bool = False,
             file: bool = True) -> Settings:
        environ = dict(self.environ) if env else {}
        if profile_env:
            environ["NOTARYD_PROFILE"] = "team"
        return load_settings(environ, self.config if file else None, flags=flags,
                             keychain=self.keychain)


def winner(settings: Settings) -> tuple[str | None, str | None, str]:
    key = settings.private_key
    where = key.origin if isinstance(key, InlineKey) else (key.parent.name if key else "none")
    return settings.key_id, settings.issuer_id, where


FLAGS_ALL = dict(key_id="FLAG000000", issuer="flag-issuer")


@pytest.mark.parametrize(("flags", "profile_env", "env", "file", "expected"), [
    # the config file alone
    (CredentialFlags(), False, False, True, ("FILE000000", "file-issuer", "file")),
    # the environment beats the file
    (CredentialFlags(), False, True, True, ("ENV0000000", "env-issuer", "env")),
    # a profile (by flag) beats the environment and the file
    (CredentialFlags(profile="team"), False, True, True,
     ("PROF000000", "profile-issuer", "keychain profile 'team'")),
    # NOTARYD_PROFILE selects the profile just as --profile does
    (CredentialFlags(), True, True, True,
     ("PROF000000", "profile-issuer", "keychain profile 'team'")),
    # flags beat the profile, field by field: only --key-id given
    (CredentialFlags(profile="team", key_id="FLAG000000"), False, True, True,
     ("FLAG000000", "profile-issuer", "keychain profile 'team'")),
    # all three flags beat everything
    (CredentialFlags(profile="team", key="FLAG", **FLAGS_ALL), False, True, True,
     ("FLAG000000", "flag-issuer", "flag")),
    # flags over the environment, the environment filling what the flags leave
    (CredentialFlags(issuer="flag-issuer"), False, True, True,
     ("ENV0000000", "flag-issuer", "env")),
])
def test_precedence_flags_profile_environment_file(
    tmp_path: Path, flags: CredentialFlags, profile_env: bool, env: bool, file: bool,
    expected: tuple[str, str, str],
) -> None:
    sources = Sources(tmp_path)
    if flags.key == "FLAG":
        flags = CredentialFlags(profile=flags.profile, key=str(sources.flag_key),
                                key_id=flags.key_id, issuer=flags.issuer)
    assert winner(sources.load(flags, profile_env=profile_env, env=env, file=file)) == expected


def test_a_profile_named_in_the_config_file_is_used(tmp_path: Path) -> None:
    sources = Sources(tmp_path)
    sources.config.write_text(sources.config.read_text() + 'profile = "team"\n')
    assert winner(sources.load(CredentialFlags(), env=False)) == (
        "PROF000000", "profile-issuer", "keychain profile 'team'")


def test_commands_that_do_not_authenticate_never_open_the_keychain(tmp_path: Path) -> None:
    sources = Sources(tmp_path)
    settings = sources.load(None, profile_env=True)
    assert sources.looked_up == []
    assert settings.key_id == "ENV0000000"


def test_a_missing_profile_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile 'other'"):
        Sources(tmp_path).load(CredentialFlags(profile="other"))


def test_every_authenticating_command_takes_the_credential_flags() -> None:
    parser = build_parser()
    argv_of = {"notarize": ["Game.zip"], "status": ["id"], "info": ["id"], "log": ["id"],
               "wait": ["id"]}
    for command in AUTHENTICATING:
        args = parser.parse_args([command, *argv_of.get(command, []), "--profile", "team",
                                  "--key", "k.p8", "--key-id", "ABCDEFGHIJ", "--issuer", "u"])
        assert credential_flags(args) == CredentialFlags("team", "k.p8", "ABCDEFGHIJ", "u"), command
    assert credential_flags(parser.parse_args(["jobs"])) is None
    assert credential_flags(parser.parse_args(["credentials", "list"])) is None


@pytest.mark.parametrize("form", ["pem", "base64", "wrapped base64", "escaped newlines"])
def test_the_environment_may_hold_the_key_itself(tmp_path: Path, form: str) -> None:
    pem = make_pem()
    value = {"pem": pem,
             "base64": base64.b64encode(pem.encode()).decode(),
             "wrapped base64": base64.encodebytes(pem.encode()).decode(),
             "escaped newlines": pem.strip().replace("\n", "\\n")}[form]
    settings = load_settings({"NOTARYD_PRIVATE_KEY": value, "NOTARYD_KEY_ID": "ABCDEFGHIJ",
                              "NOTARYD_ISSUER_ID": "u"}, None)
    assert isinstance(settings.private_key, InlineKey)
    assert settings.private_key.origin == "NOTARYD_PRIVATE_KEY"
    assert settings.private_key.pem.decode() == pem
    assert "BEGIN" not in repr(settings.private_key) and "BEGIN" not in repr(settings)
    loaded = load_api_key(settings.private_key, key_id="ABCDEFGHIJ", issuer_id="u")
    assert loaded.path is None
    # every line of it, as given and as decoded, is now a known secret for the logs
    for line in {*value.splitlines(), *pem.splitlines()} - {""}:
        if not line.startswith("-----"):
            assert redact(f"x {line.strip()} y") == f"x {REDACTED} y"
    assert list(tmp_path.iterdir()) == []


def test_base64_that_is_no_key_is_one_line_that_never_quotes_it() -> None:
    value = base64.b64encode(b"a secret, but no private key at all; " * 3).decode()
    with pytest.raises(ConfigError) as raised:
        load_settings({"NOTARYD_PRIVATE_KEY": value}, None)
    assert str(raised.value).startswith("NOTARYD_PRIVATE_KEY decodes from base64, but not to a PEM")
    assert value not in str(raised.value)


def test_a_path_stays_a_path(tmp_path: Path) -> None:
    path = key_file(tmp_path, "ABCDEFGHIJ")
    assert load_settings({"NOTARYD_PRIVATE_KEY": str(path)}, None).private_key == path


def test_the_key_itself_on_the_command_line_is_refused() -> None:
    with pytest.raises(ConfigError, match="--key takes the path"):
        load_settings({}, None, flags=CredentialFlags(key=make_pem()))


@pytest.mark.parametrize("argv", [["notarize", "Game.zip", "--apple-id", "dev@example.com"],
                                  ["history", "--apple-id"],
                                  ["credentials", "store", "ci", "--apple-id", "dev@example.com"]])
def test_apple_id_says_in_one_line_that_only_team_keys_work(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "only team API keys" in err
    assert "App Store Connect → Users and Access → Integrations → Team Keys" in err
