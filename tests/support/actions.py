"""Running a composite GitHub Action (``action.yml``) the way the runner does, on this machine.

What the runner does and this reproduces: inputs with their defaults (a missing required one is
an error), ``INPUT_<NAME>`` variables, the ``${{ … }}`` expressions it substitutes in ``env:``
and ``run:`` (``inputs.*``, ``github.action_path``, ``runner.temp``, ``steps.<id>.outputs.*``;
any other expression fails the test, so the action cannot use one untried here), each ``run:``
step as ``bash --noprofile --norc -eo pipefail FILE``, a fresh ``GITHUB_OUTPUT``,
``GITHUB_PATH`` and ``GITHUB_STEP_SUMMARY`` file per step, ``GITHUB_PATH`` lines put in front of
``PATH`` for the later steps, ``::add-mask::`` commands taken out of the log, the first failing
step ending the action, and the action's ``outputs:`` evaluated from its steps' outputs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service.emulator.auth import TeamKey
from service.emulator.notary import BackgroundEmulator
from tests.support.daemon import notaryd
from tests.support.emulator import notary_settings

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepRun:
    name: str
    code: int
    stdout: str
    stderr: str
    outputs_file: str  # the GITHUB_OUTPUT file's text, as the step wrote it
    outputs: dict[str, str]


@dataclass
class ActionRun:
    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    masks: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return self.steps[-1].code if self.steps else 0

    @property
    def log(self) -> str:
        """What the job's log shows: every step's output but the ``::add-mask::`` commands."""
        shown = []
        for step in self.steps:
            shown += [line for line in step.stdout.splitlines() if not line.startswith("::add-mask::")]
            shown += step.stderr.splitlines()
        return "\n".join(shown)

    def written(self) -> str:
        """Everything the steps wrote to the runner's files."""
        return "\n".join(step.outputs_file for step in self.steps) + self.summary


def parse_output_file(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks, as the runner reads GITHUB_OUTPUT."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index)
            values[name] = "\n".join(lines[index:end])
            index = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        elif line:
            raise AssertionError(f"GITHUB_OUTPUT line is neither name=value nor name<<DELIMITER: {line!r}")
    return values


class CompositeAction:
    def __init__(self, action_dir: Path) -> None:
        self.dir = action_dir
        self.document: dict[str, Any] = yaml.safe_load((action_dir / "action.yml").read_text())
        assert self.document["runs"]["using"] == "composite"

    def inputs(self, given: dict[str, str]) -> dict[str, str]:
        declared: dict[str, Any] = self.document.get("inputs") or {}
        unknown = set(given) - set(declared)
        assert not unknown, f"inputs the action does not declare: {unknown}"
        values = {}
        for name, spec in declared.items():
            if name in given:
                values[name] = given[name]
            elif spec.get("required") and "default" not in spec:
                raise AssertionError(f"required input {name!r} not given")
            else:
                values[name] = str(spec.get("default", ""))
        return values

    def run(self, given: dict[str, str], *, env: dict[str, str], runner_temp: Path,
            workspace: Path, timeout: float = 300) -> ActionRun:
        inputs = self.inputs(given)
        result = ActionRun()
        step_outputs: dict[str, dict[str, str]] = {}
        context = {"inputs": inputs, "steps": step_outputs, "action_path": str(self.dir),
                   "runner_temp": str(runner_temp)}
        path = env["PATH"]
        files = runner_temp / "_runner_file_commands"
        files.mkdir(parents=True, exist_ok=True)
        for number, step in enumerate(self.document["runs"]["steps"]):
            assert set(step) <= {"name", "id", "shell", "env", "run"}, f"step keys the harness does not run: {set(step)}"
            assert step["shell"] == "bash", "every run step names its shell: bash"
            output, path_file, summary = (files / f"{kind}_{number}" for kind in ("output", "path", "summary"))
            for file in (output, path_file, summary):
                file.write_text("")
            script = runner_temp / f"step_{number}.sh"
            script.write_text(substitute(step["run"], context))
            step_env = {
                **env,
                **{f"INPUT_{name.upper().replace(' ', '_')}": value for name, value in inputs.items()},
                "PATH": path,
                "GITHUB_ACTION_PATH": str(self.dir),
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_ACTIONS": "true",
                "CI": "true",
                "RUNNER_TEMP": str(runner_temp),
                "GITHUB_OUTPUT": str(output),
                "GITHUB_PATH": str(path_file),
                "GITHUB_STEP_SUMMARY": str(summary),
                **{key: substitute(str(value), context) for key, value in (step.get("env") or {}).items()},
            }
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                  cwd=workspace, env=step_env, capture_output=True, text=True,
                                  timeout=timeout)
            written = output.read_text()
            run = StepRun(step.get("name", f"step {number}"), done.returncode, done.stdout,
                          done.stderr, written, parse_output_file(written))
            result.steps.append(run)
            result.masks += [line.removeprefix("::add-mask::") for line in done.stdout.splitlines()
                             if line.startswith("::add-mask::")]
            result.summary += summary.read_text()
            if "id" in step:
                step_outputs[step["id"]] = run.outputs
            added = [line for line in path_file.read_text().splitlines() if line]
            path = os.pathsep.join([*reversed(added), path])
            if done.returncode != 0:
                break
        for name, spec in (self.document.get("outputs") or {}).items():
            result.outputs[name] = substitute(str(spec["value"]), context)
        return result


def substitute(text: str, context: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        parts = expression.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            return str(context["inputs"][parts[1]])
        if expression == "github.action_path":
            return str(context["action_path"])
        if expression == "runner.temp":
            return str(context["runner_temp"])
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return str(context["steps"].get(parts[1], {}).get(parts[3], ""))
        raise AssertionError(f"the harness does not evaluate ${{{{ {expression} }}}}")

    return EXPRESSION.sub(value, text)


REPOSITORY = Path(__file__).resolve().parents[2]
KEY_SETTINGS = ("NOTARYD_PRIVATE_KEY", "NOTARYD_KEY_ID", "NOTARYD_ISSUER_ID")


class Runner:
    """A GitHub runner's job world: a workspace, RUNNER_TEMP, a HOME, the pipx shim, the emulator's env."""

    def __init__(self, root: Path, notary: BackgroundEmulator) -> None:
        self.root = root
        self.key: TeamKey = notary.call(lambda e: e.make_team_key(root / "keys"))
        assert self.key.path is not None
        self.pem = self.key.path.read_text()
        self.workspace, self.temp, self.home, shim = (
            root / name for name in ("workspace", "runner-temp", "home", "shim"))
        self.pipx_bin = root / "pipx-bin"
        for folder in (self.workspace, self.temp, self.home, shim, self.pipx_bin):
            folder.mkdir()
        (self.pipx_bin / "notaryd").symlink_to(notaryd())
        self.pipx_calls = root / "pipx-calls"
        pipx = shim / "pipx"
        pipx.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$*\" >> '{self.pipx_calls}'\n"
            f"case \"$1\" in install) exit 0;; environment) echo '{self.pipx_bin}'; exit 0;; esac\n"
            "exit 64\n"
        )
        pipx.chmod(0o755)
        venv_bin = str(Path(sys.executable).parent)
        system_path = [p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin]
        settings = {k: v for k, v in notary_settings(notary.emulator, self.key).items()
                    if k not in KEY_SETTINGS}
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("NOTARYD_", "AWS_", "GITHUB_", "INPUT_", "RUNNER_"))},
            **settings,
            "PATH": os.pathsep.join([str(shim), *system_path]),
            "HOME": str(self.home),
            "NOTARYD_STATE_DIR": str(self.home / "state"),
        }

    def inputs(self, archive: Path, key: str, **more: str) -> dict[str, str]:
        """The action's inputs; the test archives hold data, no code, which preflight refuses
        (nothing to ticket), so preflight is skipped unless ``more`` says otherwise."""
        return {"path": str(archive), "key": key, "key-id": self.key.key_id,
                "issuer": self.key.issuer_id, "skip-preflight": "true", **more}

    def run(self, inputs: dict[str, str]) -> ActionRun:
        return CompositeAction(REPOSITORY).run(inputs, env=self.env, runner_temp=self.temp,
                                               workspace=self.workspace)

    def assert_key_never_shown(self, run: ActionRun, key_input: str) -> None:
        """No line of the key, as PEM or as the base64 secret, in the log or in any file the
        run left (the emulator's own key file excepted); every line was masked first."""
        body = [line for line in self.pem.splitlines() if line and not line.startswith("-----")]
        forms = [*body, "".join(body), key_input.strip()]
        assert set(body) <= set(run.masks), "every line of the key is registered with ::add-mask::"
        assert key_input.strip() in run.masks or "-----BEGIN" in key_input
        texts = {"log": run.log, "runner files": run.written()}
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.parent != self.root / "keys":
                texts[str(path)] = path.read_bytes().decode(errors="replace")
        for where, text in texts.items():
            for form in forms:
                assert form not in text, f"the key appears in {where}"
            assert "PRIVATE KEY-----" not in text, f"a PEM appears in {where}"
        assert not list(self.temp.glob("notaryd-key.*")), "the key file was removed"
