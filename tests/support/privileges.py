"""Child processes without root's power over files, so permission paths run when the suite is root.

CI runs the suite as root, and root reads any file: "permission denied" or "belongs to another
user" would never be exercised in-process. :func:`run_unprivileged` runs a child as ``nobody``
(``setpriv``) when the suite is root, and as the suite's own user otherwise (already without
that power). The child reaches only what ``nobody`` may: put its files in the ``shared_tmp``
fixture's directory (tmp_path's parents are 0700).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest

from tests.support.environment import HOME_DERIVED, RUN_HOME

NOBODY = pwd.getpwnam("nobody")


def unprivileged_uid() -> int:
    """The user id :func:`run_unprivileged` runs its child as."""
    return NOBODY.pw_uid if os.geteuid() == 0 else os.geteuid()


def run_unprivileged(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` run to its end as a user root's privileges do not help (see the module doc)."""
    command = list(argv)
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv is missing: install util-linux (scripts/install-system-deps.sh)")
        command = [setpriv, f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups", *command]
    # The run's own home-derived folders (tests/support/environment.py) are root's and 0700: the
    # child finds its own from the HOME it is given.
    run_root = os.environ.get(RUN_HOME, "\0")
    child_env = {name: value for name, value in (os.environ if env is None else env).items()
                 if name == "HOME" or name not in HOME_DERIVED or not value.startswith(run_root)}
    result = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=60)
    if result.returncode in (126, 127) and "failed to execute" in result.stderr:
        pytest.fail(f"user id {unprivileged_uid()} cannot run {argv[0]}: {result.stderr.strip()}")
    return result


def python_unprivileged(code: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` in this interpreter (this checkout's packages), run by :func:`run_unprivileged`."""
    return run_unprivileged([sys.executable, "-c", code, *args], env=env)
