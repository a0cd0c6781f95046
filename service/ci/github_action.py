"""The GitHub Action's helper (``action.yml``): the key from a secret, the run, outputs, summary.

Run by the action's bash step with the runner's ``python3``, as a plain script: standard
library only; of notaryd it loads only uploader/keytext.py (standard library only too) by path
from the action's checkout, where notaryd is not importable, only installed.

``key``        checks the ``INPUT_KEY`` secret (the PEM or its base64, as CI secrets hold it)
               and registers every line of it with ``::add-mask::`` so no log shows it, even
               decoded from base64.
``notarize``   runs ``notaryd notarize PATH --json`` with the key in its environment
               (``NOTARYD_PRIVATE_KEY`` holds the secret itself: no file is ever written) and
               the inputs' options, bounded by the
               ``timeout`` input, passes its stderr through, then writes the step's outputs
               (``submission-id``, ``status``, ``log-path``) to ``$GITHUB_OUTPUT`` and the
               verdict with the grouped issues to ``$GITHUB_STEP_SUMMARY``; exits like
               ``notarize`` (0 Accepted, 2 Invalid/Rejected/preflight errors, 1 otherwise).

``status`` is Apple's status (``Accepted``, ``Invalid``, ``Rejected``), or ``preflight-failed``,
``timeout`` or ``error`` when there is no verdict.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import IO, Any

KEY_VARIABLE = "INPUT_KEY"
EXIT_ACCEPTED, EXIT_FAILURE, EXIT_REJECTED = 0, 1, 2
# notaryd's own bound (NOTARYD_TIMEOUT) speaks first; this backstop stops it a little later
# (the timeout plus this, or plus the timeout itself when shorter).
BACKSTOP_GRACE_SECONDS = 30.0
STOP_WAIT_SECONDS = 20.0
STDERR_LINES_KEPT = 30
VERDICTS = frozenset({"Accepted", "Invalid", "Rejected"})
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


class ActionError(Exception):
    """One line for the log (as ``::error::``), never containing the key."""


# -- the key --------------------------------------------------------------------------------


def _keytext() -> ModuleType:
    """notaryd's own key-text parser, loaded by path from this checkout."""
    name = "notaryd_keytext"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parents[2] / "uploader" / "keytext.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


def decode_key(value: str) -> str:
    """The PEM in ``value``: the PEM itself (also with literal ``\\n``s) or its base64."""
    keytext = _keytext()
    try:
        pem: str = keytext.pem_from_text(value)
    except keytext.NotAKey as not_a_key:
        raise ActionError(
            f"the 'key' input {not_a_key}; store the whole AuthKey_<KEYID>.p8 file, or "
            "`base64 < AuthKey_<KEYID>.p8`, as the secret") from None
    return pem


def mask_lines(raw: str, pem: str) -> list[str]:
    """Every line of the secret as given and as decoded, for ``::add-mask::``."""
    lines: list[str] = _keytext().secret_lines(raw, pem)
    return lines


def mask_key() -> None:
    raw = os.environ.get(KEY_VARIABLE, "")
    if not raw.strip():
        raise ActionError("the 'key' input is empty; pass the team API key, e.g. "
                          "key: ${{ secrets.NOTARY_API_KEY }}")
    masked = mask_lines(raw, raw)  # masked before anything can fail and print
    for line in masked:
        print(f"::add-mask::{line}", flush=True)
    for line in mask_lines(raw, decode_key(raw)):
        if line not in masked:
            print(f"::add-mask::{line}", flush=True)


# -- the inputs -----------------------------------------------------------------------------


def flag(name: str, default: bool) -> bool:
    raw = os.environ.get(_input_variable(name), "").strip().lower()
    if not raw:
        return default
    if raw in {"true", "yes", "1", "on"}:
        return True
    if raw in {"false", "no", "0", "off"}:
        return False
    raise ActionError(f"the '{name}' input must be true or false, got {raw[:20]!r}")


def parse_duration(raw: str) -> float | None:
    """Seconds in ``raw`` (``5400``, ``90m``, ``1h30m``, ``45s``); None when empty."""
    if not raw.strip():
        return None
    match = _DURATION.match(raw)
    if match is None or not any(match.groups()):
        raise ActionError(f"the 'timeout' input must be a duration like 2h, 90m or 5400, got {raw[:30]!r}")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ActionError("the 'timeout' input must be more than zero")
    return total


def notarize_command(path: str) -> list[str]:
    if not path.strip():
        raise ActionError("the 'path' input is empty; give the .app, .zip, .pkg or .dmg to notarise")
    command = ["notaryd", "notarize", path, "--json"]
    if not flag("staple", True):
        command.append("--no-staple")
    if flag("skip-preflight", False):
        command.append("--skip-preflight")
    return command


def _input_variable(name: str) -> str:
    return "INPUT_" + name.upper().replace("-", "_")


# -- the run ---------------------------------------------------------------------------------


class Run:
    """notaryd's exit code, stdout, the tail of its stderr, and whether the bound expired."""

    def __init__(self, code: int, stdout: str, stderr_tail: list[str], timed_out: bool) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr_tail = stderr_tail
        self.timed_out = timed_out


def run_notaryd(command: list[str], timeout: float | None) -> Run:
    env = dict(os.environ)
    env["NOTARYD_PRIVATE_KEY"] = env.pop(KEY_VARIABLE, "")  # notaryd reads PEM or base64 itself
    if timeout is not None:
        env["NOTARYD_TIMEOUT"] = f"{timeout:g}"
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise ActionError("notaryd is not on PATH; the action's install step did not run") from None
    tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
    assert proc.stdout is not None and proc.stderr is not None
    relay = threading.Thread(target=_relay, args=(proc.stderr, tail), daemon=True)
    relay.start()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read() if proc.stdout else b""),
                              daemon=True)
    reader.start()
    timed_out = False
    started = time.monotonic()
    try:
        proc.wait(None if timeout is None else timeout + min(BACKSTOP_GRACE_SECONDS, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()  # notaryd saves its state on SIGTERM: a re-run resumes
        try:
            proc.wait(STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reader.join(STOP_WAIT_SECONDS)
    relay.join(STOP_WAIT_SECONDS)
    if timeout is not None and proc.returncode == EXIT_FAILURE:
        timed_out = timed_out or time.monotonic() - started >= timeout  # notaryd's own bound
    return Run(proc.returncode, b"".join(chunks).decode("utf-8", "replace"), list(tail), timed_out)


def _relay(stream: IO[bytes], tail: deque[str]) -> None:
    for raw in stream:
        sys.stderr.buffer.write(raw)
        sys.stderr.flush()
        tail.append(raw.decode("utf-8", "replace").rstrip())


# -- outputs and summary ----------------------------------------------------------------------


class Verdict:
    def __init__(self, run: Run, path: str) -> None:
        self.path = path
        self.document = _json_object(run.stdout)
        error = self.document.get("error")
        self.error: str | None = None
        if isinstance(error, dict):  # notaryd's --json error shape: {"error": {"message", "fix"}}
            self.error = " ".join(str(error.get(k)) for k in ("message", "fix") if error.get(k))
        elif isinstance(error, str):
            self.error = error
        self.submission_id = _text(self.document.get("submission_id"))
        self.log_path = _text(self.document.get("log_path"))
        self.report = _text(self.document.get("report"))
        self.staple = _staple_text(self.document.get("staple"))
        apple = _text(self.document.get("status"))
        if run.timed_out and apple not in VERDICTS:
            self.status = "timeout"
            self.error = (self.error or "notaryd did not finish within the 'timeout' input") + (
                f"; a re-run resumes {self.submission_id or 'the same submission'}")
        elif apple:
            self.status = apple
        elif run.code == EXIT_REJECTED:
            self.status = "preflight-failed"
        else:
            self.status = "error"
        if self.error is None and self.status in {"error", "preflight-failed"}:
            self.error = next((line for line in reversed(run.stderr_tail) if line.strip()), None)
        self.stderr_tail = run.stderr_tail

    def outputs(self) -> dict[str, str]:
        return {"submission-id": self.submission_id, "status": self.status, "log-path": self.log_path}

    def summary(self) -> str:
        mark = {"Accepted": "✅", "Invalid": "❌", "Rejected": "❌"}.get(self.status, "⚠️")
        name = Path(self.path).name or self.path
        lines = [f"### {mark} notaryd: {_cell(name)} {_cell(self.status)}", "",
                 "| | |", "|---|---|"]
        for label, value in (("submission", self.submission_id), ("log", self.log_path),
                             ("staple", self.staple), ("error", self.error or "")):
            if value:
                lines.append(f"| {label} | {_cell(value)} |")
        lines.append("")
        if self.report:
            lines += ["<details open><summary>Notary log: grouped issues</summary>", "",
                      *_fenced(self.report), "", "</details>", ""]
        elif self.status == "preflight-failed" and self.stderr_tail:
            lines += ["<details open><summary>Preflight</summary>", "",
                      *_fenced("\n".join(self.stderr_tail)), "", "</details>", ""]
        return "\n".join(lines) + "\n"


def write_outputs(outputs: dict[str, str], file: Path) -> None:
    with open(file, "a", encoding="utf-8") as out:
        for name, value in outputs.items():
            if "\n" in value or "\r" in value:
                delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{name}={value}\n")


def _json_object(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _staple_text(value: object) -> str:
    if isinstance(value, dict):  # {"outcome": ..., "text"/"message": ...}
        return " ".join(str(value[k]) for k in ("outcome", "text", "message") if value.get(k))
    return _text(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _fenced(text: str) -> list[str]:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


# -- entry ------------------------------------------------------------------------------------


def notarize() -> int:
    path = os.environ.get(_input_variable("path"), "")
    command = notarize_command(path)
    timeout = parse_duration(os.environ.get(_input_variable("timeout"), ""))
    run = run_notaryd(command, timeout)
    verdict = Verdict(run, path)
    if output := os.environ.get("GITHUB_OUTPUT"):
        write_outputs(verdict.outputs(), Path(output))
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a", encoding="utf-8") as out:
            out.write(verdict.summary())
    if verdict.status == "timeout":
        print(f"::error::{verdict.error}", flush=True)
        return EXIT_FAILURE
    if verdict.status in {"Invalid", "Rejected"}:
        print(f"::error::{verdict.path}: {verdict.status}; see the job summary for the issues", flush=True)
    return run.code if run.code in (EXIT_ACCEPTED, EXIT_FAILURE, EXIT_REJECTED) else EXIT_FAILURE


def main(argv: list[str]) -> int:
    try:
        if argv == ["key"]:
            mask_key()
            return 0
        if argv == ["notarize"]:
            return notarize()
        raise ActionError("usage: github_action.py key | notarize")
    except ActionError as error:
        print(f"::error::{error}", flush=True)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
