"""``notaryd serve`` with the scripted fake pipeline, as a real process (for tests).

Run as a script: ``python tests/daemon/fake_serve.py``; settings come from NOTARYD_* as usual.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: import daemon.fakes

from daemon.fakes import build_fake_factory
from service.daemon.app import serve
from service.runtime import run
from service.settings import load_settings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(run(serve(load_settings(), build_runner_factory=build_fake_factory)))
