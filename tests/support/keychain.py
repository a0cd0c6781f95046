"""A real OS keychain for the suite: GNOME Keyring's Secret Service on a private D-Bus session.

This is what ``keyring`` uses on a Linux desktop, so the CLI's ``credentials`` commands run
against the same backend users have, not a stand-in. ``SecretService`` starts its own
``dbus-daemon`` (session bus on a socket in its folder) and ``gnome-keyring-daemon --unlock``
(the login keyring, created and unlocked with a test password, kept under its own
XDG_DATA_HOME), both in the foreground as children it stops. Child processes get it through
``environment()``: the bus address and ``PYTHON_KEYRING_BACKEND``, keyring's own switch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from tests.support.waiting import until

SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
START_SECONDS = 30.0
STOP_SECONDS = 10.0


def available() -> bool:
    return all(shutil.which(tool) for tool in ("dbus-daemon", "gnome-keyring-daemon", "dbus-send"))


class SecretService:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_home = root / "data"  # gnome-keyring keeps its (encrypted) keyrings here
        self.bus_path = root / "bus"
        self.address = f"unix:path={self.bus_path}"
        self._children: list[subprocess.Popen[bytes]] = []

    def environment(self) -> dict[str, str]:
        """What a child process needs to use this keychain through keyring."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address,
                "PYTHON_KEYRING_BACKEND": SECRET_SERVICE_BACKEND}

    def __enter__(self) -> SecretService:
        runtime = self.root / "runtime"
        for folder in (self.data_home, runtime):
            folder.mkdir(parents=True, mode=0o700)
        env = {**os.environ, "XDG_DATA_HOME": str(self.data_home),
               "XDG_RUNTIME_DIR": str(runtime), "DBUS_SESSION_BUS_ADDRESS": self.address}
        try:
            bus = subprocess.Popen(
                ["dbus-daemon", "--session", "--nofork", "--nopidfile",
                 f"--address={self.address}"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            self._children.append(bus)
            until(lambda: self.bus_path.exists() or bus.poll() is not None, within=START_SECONDS,
                  what="the test session bus's socket")
            assert bus.poll() is None, "dbus-daemon exited"
            keyring_daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            self._children.append(keyring_daemon)
            assert keyring_daemon.stdin is not None
            keyring_daemon.stdin.write(b"notaryd-test-keyring")
            keyring_daemon.stdin.close()
            until(lambda: self._secrets_owned() or keyring_daemon.poll() is not None,
                  within=START_SECONDS, what="gnome-keyring-daemon on the test session bus")
            assert keyring_daemon.poll() is None, "gnome-keyring-daemon exited"
        except BaseException:
            self.close()
            raise
        return self

    def _secrets_owned(self) -> bool:
        answer = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
             "string:org.freedesktop.secrets"],
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.address},
            capture_output=True, timeout=STOP_SECONDS)
        return b"boolean true" in answer.stdout

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self._children):  # the keyring daemon first, then its bus
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        self._children.clear()
