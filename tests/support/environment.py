"""The test run's own environment: nothing that an earlier run, an install or the developer's
machine left behind may reach a test.

:func:`isolate` runs once per test run, before anything is collected. It points ``HOME`` and
every home-derived location (XDG folders, matplotlib's config and font cache) at fresh folders
under one temporary root, and removes the settings a developer's shell may carry into the run
(``NOTARYD_*``, ``AWS_*``, proxies, CA bundles). Child processes (the daemon, the CLI, SeaweedFS,
Prometheus, xdist workers) inherit that environment, so they start from nothing as well.

The run that made the root owns it and removes it at the end; an xdist worker finds the root in
its inherited environment and keeps it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

RUN_HOME = "NOTARYD_TEST_RUN_HOME"  # the marker an xdist worker inherits from its controller

# Home-derived locations, each given its own empty folder under the run's root.
HOME_DERIVED = {
    "HOME": "home",
    "XDG_CONFIG_HOME": "home/.config",
    "XDG_CACHE_HOME": "home/.cache",
    "XDG_DATA_HOME": "home/.local/share",
    "XDG_STATE_HOME": "home/.local/state",
    "XDG_RUNTIME_DIR": "runtime",
    "MPLCONFIGDIR": "home/.config/matplotlib",
}

# Settings that change what notaryd, botocore, aiohttp or OpenSSL do; a test that needs one sets
# it itself. NOTARYD_TEST_* are the suite's own switches and stay.
LEAKY_PREFIXES = ("NOTARYD_", "AWS_", "BOTO_")
LEAKY_NAMES = frozenset({
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "MPLBACKEND", "PYTHONASYNCIODEBUG",
})
KEPT_PREFIXES = ("NOTARYD_TEST_",)


def _leaky(name: str) -> bool:
    if name.startswith(KEPT_PREFIXES):
        return False
    return name.upper() in LEAKY_NAMES or name.startswith(LEAKY_PREFIXES)


def isolate(environ: MutableMapping[str, str]) -> Path | None:
    """Gives this run a fresh home and a clean environment. Returns the root this call made
    (the caller removes it with :func:`release`), or None where an outer run already did."""
    for name in [name for name in environ if _leaky(name)]:
        del environ[name]
    if RUN_HOME in environ:
        return None
    root = Path(tempfile.mkdtemp(prefix="notaryd-test-run-"))
    for name, relative in HOME_DERIVED.items():
        folder = root / relative
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        environ[name] = str(folder)
    environ[RUN_HOME] = str(root)
    return root


def release(root: Path | None) -> None:
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def is_isolated(environ: MutableMapping[str, str] = os.environ) -> bool:
    """True when HOME is the run's own (for tests that check the isolation itself)."""
    root = environ.get(RUN_HOME)
    return root is not None and environ.get("HOME", "").startswith(root)


# On CI a skip may only say "this is another platform's test": a skip for a missing tool, a
# missing capability or a privilege would otherwise let a green run hide a missing install step.
OTHER_PLATFORM_WORDS = ("macOS", "Linux")


def skip_hides_a_gap(reason: str, environ: MutableMapping[str, str] = os.environ) -> bool:
    """True when, on CI, a test skipped for ``reason`` should fail instead."""
    if environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return False
    return not any(word in reason for word in OTHER_PLATFORM_WORDS)
