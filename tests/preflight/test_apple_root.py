"""The embedded trust anchor is the Apple Root CA whose fingerprint the module's doc names."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.serialization import Encoding

from uploader.preflight import apple_roots


def test_the_embedded_root_has_apples_published_fingerprint() -> None:
    (root,) = apple_roots.apple_roots()
    fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    assert fingerprint == "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024"
    assert fingerprint in " ".join((apple_roots.__doc__ or "").split())
    assert root.subject.rfc4514_string() == "CN=Apple Root CA,OU=Apple Certification Authority,O=Apple Inc.,C=US"
