"""Key-file checks and token minting (no network: pure files and crypto)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.clocks import ManualClock
from tests.support.privileges import python_unprivileged, unprivileged_uid
from uploader.errors import ConfigError
from uploader.notary.auth import (
    AUDIENCE,
    MAX_TOKEN_LIFETIME_SECONDS,
    ApiKey,
    TokenSource,
    load_api_key,
)
from uploader.notary.errors import KeyFileError

KEY_ID = "ABCDE12345"
ISSUER = "69a6de7f-0000-47e3-e053-5b8c7c11a4d1"


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _pkcs8(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def key_file(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> Path:
    return _write(tmp_path / f"AuthKey_{KEY_ID}.p8", _pkcs8(p256))


def test_good_key_loads_and_hides_itself(key_file: Path) -> None:
    key = load_api_key(key_file, key_id=KEY_ID, issuer_id=ISSUER)
    assert (key.key_id, key.issuer_id, key.path) == (KEY_ID, ISSUER, key_file)
    assert "PRIVATE" not in repr(key) and "private_key" not in repr(key)
    assert key.key_id_from_file_name == KEY_ID and key.mismatch_hint() == ""


def test_file_named_for_another_key_gives_a_hint(key_file: Path) -> None:
    key = load_api_key(key_file, key_id="ZZZZZ99999", issuer_id=ISSUER)
    assert "named for key id 'ABCDE12345', not 'ZZZZZ99999'" in key.mismatch_hint()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"API key file not found; set NOTARYD_PRIVATE_KEY"):
        load_api_key(tmp_path / "AuthKey_X.p8", key_id=KEY_ID, issuer_id=ISSUER)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_api_key(tmp_path, key_id=KEY_ID, issuer_id=ISSUER)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_group_or_world_readable_key_is_refused_with_chmod_advice(
    key_file: Path, mode: int
) -> None:
    os.chmod(key_file, mode)
    with pytest.raises(KeyFileError, match=rf"mode {mode:04o}\); run `chmod 600 {key_file}`"):
        load_api_key(key_file, key_id=KEY_ID, issuer_id=ISSUER)


LOAD_KEY = """
import sys
from uploader.notary.auth import load_api_key
from uploader.notary.errors import KeyFileError
try:
    load_api_key(sys.argv[1], key_id=sys.argv[2], issuer_id=sys.argv[3])
except KeyFileError as error:
    sys.exit(str(error))
"""


@pytest.mark.process  # a child without root's power to read any file (root reads a 0000 file)
def test_unreadable_file(shared_tmp: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    key_file = _write(shared_tmp / f"AuthKey_{KEY_ID}.p8", _pkcs8(p256), mode=0o000)
    result = python_unprivileged(LOAD_KEY, str(key_file), KEY_ID, ISSUER)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"{key_file}: permission denied reading the API key file; it must be readable by user id "
        f"{unprivileged_uid()} (fix the owner, then `chmod 600 {key_file}`)")


def test_not_pem(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.p8", b"\x30\x82\x01\x00 this is DER or junk")
    with pytest.raises(KeyFileError, match=r"not a PEM file \(no '-----BEGIN PRIVATE KEY-----'"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_sec1_ec_key_is_explained_with_conversion(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey
) -> None:
    sec1 = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path = _write(tmp_path / "k.p8", sec1)
    with pytest.raises(KeyFileError, match=r"SEC1 'EC PRIVATE KEY'.*openssl pkcs8 -topk8 -nocrypt"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_encrypted_key(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    data = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    path = _write(tmp_path / "k.p8", data)
    with pytest.raises(KeyFileError, match="is encrypted"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_certificate_instead_of_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "k.p8", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(KeyFileError, match="PEM block is 'CERTIFICATE', not the PKCS#8"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_rsa_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.p8", _pkcs8(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(KeyFileError, match=r"this is a RSA key, not the EC \(P-256\) key"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_wrong_curve(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.p8", _pkcs8(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(KeyFileError, match="curve secp384r1, but ES256 needs P-256"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_damaged_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "k.p8", b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFileError, match=r"cannot be decoded.*damaged"):
        load_api_key(path, key_id=KEY_ID, issuer_id=ISSUER)


def test_missing_ids(key_file: Path) -> None:
    with pytest.raises(KeyFileError, match="NOTARYD_KEY_ID"):
        load_api_key(key_file, key_id=" ", issuer_id=ISSUER)
    with pytest.raises(KeyFileError, match="NOTARYD_ISSUER_ID"):
        load_api_key(key_file, key_id=KEY_ID, issuer_id="")
    assert issubclass(KeyFileError, ConfigError)


def _key(p256: ec.EllipticCurvePrivateKey) -> ApiKey:
    return ApiKey(key_id=KEY_ID, issuer_id=ISSUER, private_key=p256)


def test_token_has_apple_header_and_claims(p256: ec.EllipticCurvePrivateKey) -> None:
    clock = ManualClock(1_700_000_000.4)
    token = TokenSource(_key(p256), clock=clock).token()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(
        token,
        p256.public_key(),
        algorithms=["ES256"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {"iss": ISSUER, "iat": 1_700_000_000, "exp": 1_700_000_900, "aud": AUDIENCE}
    # JOSE signature is raw r||s (64 bytes), not DER
    signature = jwt.utils.base64url_decode(token.rsplit(".", 1)[1])
    assert len(signature) == 64


def test_token_is_reused_then_reminted_before_expiry(p256: ec.EllipticCurvePrivateKey) -> None:
    clock = ManualClock(1_700_000_000)
    source = TokenSource(_key(p256), lifetime_seconds=900, refresh_margin_seconds=180, clock=clock)
    first = source.token()
    clock.now += 719  # 181 s left: still reused
    assert source.token() == first and source.minted == 1
    clock.now += 2  # 179 s left: re-minted
    second = source.token()
    assert second != first and source.minted == 2
    claims = jwt.decode(second, options={"verify_signature": False})
    assert claims["iat"] == 1_700_000_721 and claims["exp"] - claims["iat"] == 900


def test_no_token_handed_out_is_ever_close_to_expiry_over_a_long_wait(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    clock = ManualClock(1_700_000_000)
    source = TokenSource(_key(p256), clock=clock)
    for _ in range(24 * 60 * 6):  # poll every 10 s for 24 hours
        claims = jwt.decode(source.token(), options={"verify_signature": False})
        assert claims["exp"] - clock.now >= 180
        assert clock.now - claims["iat"] <= MAX_TOKEN_LIFETIME_SECONDS - 180
        assert claims["exp"] - claims["iat"] <= MAX_TOKEN_LIFETIME_SECONDS
        clock.now += 10
    # re-minted at the first poll with < 180 s left: every 730 s
    assert source.minted == math.ceil(24 * 3600 / 730)


@pytest.mark.parametrize("lifetime", [30, 1201, 3600])
def test_lifetime_outside_apples_limit_is_refused(
    p256: ec.EllipticCurvePrivateKey, lifetime: int
) -> None:
    with pytest.raises(ValueError, match="token lifetime"):
        TokenSource(_key(p256), lifetime_seconds=lifetime)


def test_token_source_repr_has_no_token(p256: ec.EllipticCurvePrivateKey) -> None:
    source = TokenSource(_key(p256))
    token = source.token()
    assert token not in repr(source) and KEY_ID in repr(source)
    assert source.authorization() == f"Bearer {token}"
