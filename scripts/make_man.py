"""Write notaryd's man page, generated from its argument parser (argparse-manpage): `make man`.

Usage: python scripts/make_man.py [OUTPUT]   (default build/man/man1/notaryd.1)
View it with `man -l build/man/man1/notaryd.1`; install it into any MANPATH's man1/.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPOSITORY / "build" / "man" / "man1" / "notaryd.1"

CREDENTIALS = """\
Commands that call the notary service take the team API key from, in this order:
.BR \\-\\-key ", " \\-\\-key\\-id ", " \\-\\-issuer
flags; the keychain profile named by
.B \\-\\-profile
(or NOTARYD_PROFILE, or
.I profile
in the config file), stored with
.BR "notaryd credentials store" ;
the environment (NOTARYD_PRIVATE_KEY: a path, the PEM or its base64; NOTARYD_KEY_ID;
NOTARYD_ISSUER_ID); the config file.
"""

FILES = """\
.TP
.I ~/.config/notaryd/config.toml
(macOS: ~/Library/Application Support/notaryd/config.toml) settings; every NOTARYD_* variable
has a key of the same name in lower case.
.TP
.I ~/.config/notaryd/profiles.json
the names of the stored credentials profiles (the keys themselves are in the OS keychain).
"""


def render() -> str:
    sys.path.insert(0, str(REPOSITORY))
    from argparse_manpage.manpage import Manpage

    from service.cli import build_parser

    try:
        version = metadata.version("notaryd")
    except metadata.PackageNotFoundError:  # run from a clone that was not installed
        version = "unknown"

    page = Manpage(build_parser(), _data={
        "project_name": "notaryd", "version": version, "manual_title": "notaryd manual",
        "description": "resumable notarisation of large macOS builds"})
    page.add_section("credentials", ">", CREDENTIALS)
    page.add_section("files", ">", FILES)
    return str(page)


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
