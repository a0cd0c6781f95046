"""The reference files in deploy/launchd and deploy/systemd: renderings for an example machine.

``python -m service.install.examples DEPLOY_DIR`` rewrites them; tests/deploy checks that the
committed files equal these renderings, so the examples never drift from what
``notaryd service install`` writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service import exit_codes
from service.install import launchd, systemd
from service.install.plan import Account
from service.install.request import ServiceRequest

EXAMPLE_PROGRAM = ("/usr/local/bin/notaryd",)
EXAMPLE_SHUTDOWN_GRACE = 15.0
MAC_ACCOUNT = Account("builder", 501, 20, Path("/Users/builder"))
LINUX_ACCOUNT = Account("builder", 1000, 1000, Path("/home/builder"))


def example_request(account: Account, *, system: bool) -> ServiceRequest:
    return ServiceRequest(system=system, program=EXAMPLE_PROGRAM, account=account, state_dir=None,
                          config_file=None, shutdown_grace=EXAMPLE_SHUTDOWN_GRACE)


def example_files() -> dict[str, bytes]:
    """Relative path under deploy/ -> content."""
    return {
        "launchd/com.notaryd.agent.plist": launchd.render_bytes(
            example_request(MAC_ACCOUNT, system=False)
        ),
        "launchd/com.notaryd.daemon.plist": launchd.render_bytes(
            example_request(MAC_ACCOUNT, system=True)
        ),
        "systemd/notaryd.service": systemd.render(
            example_request(LINUX_ACCOUNT, system=True)
        ).encode(),
        "systemd/user/notaryd.service": systemd.render(
            example_request(LINUX_ACCOUNT, system=False)
        ).encode(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m service.install.examples DEPLOY_DIR", file=sys.stderr)
        return exit_codes.USAGE
    deploy = Path(argv[0])
    for relative, content in example_files().items():
        target = deploy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        print(f"wrote {target}")
    return exit_codes.SUCCESS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
