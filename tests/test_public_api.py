"""``uploader``'s public API: the names it exports, loaded on use, and the layer rule."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import uploader

ROOT = Path(__file__).resolve().parents[1]

# What a library user needs to upload a file resumably and to notarise one. Adding a name is a
# decision; this list makes it a visible one.
PUBLIC = [
    "ConfigError", "Credentials", "CredentialsExpiredError", "Database", "EngineConfig", "Event",
    "Hook", "IllegalTransition", "MultipartUploader", "NotarizeOutcome",
    "NotarizeRequest", "Notarizer", "NotaryConfig", "NotaryError", "NotaryStage", "NotaryStatus",
    "NotarydError", "PermanentUploadError", "Progress", "SourceChangedError", "StateError",
    "SubmissionState", "UploadLimits", "UploadResult", "UploadState",
]


def test_the_public_names_are_pinned_and_each_imports() -> None:
    assert sorted(uploader.__all__) == sorted(PUBLIC)
    namespace: dict[str, object] = {}
    exec(f"from uploader import {', '.join(PUBLIC)}", namespace)  # the statement users write
    for name in PUBLIC:
        home = importlib.import_module(f"uploader.{uploader._HOME[name]}")
        assert namespace[name] is getattr(home, name) is getattr(uploader, name), name
    assert set(PUBLIC) <= set(dir(uploader))


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import() -> None:
    try:
        uploader.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("uploader.NoSuchThing did not raise")
    from uploader import redaction

    assert redaction.__name__ == "uploader.redaction"


@pytest.mark.process
def test_importing_the_package_does_not_import_the_s3_stack() -> None:
    probe = "import sys, uploader, uploader.redaction; print(sorted(m for m in sys.modules if m.startswith(('uploader.engine', 'aioboto3', 'service'))))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_the_library_never_imports_the_application() -> None:
    offenders = []
    for path in sorted((ROOT / "uploader").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n == "service" or n.startswith("service.")]
    assert offenders == []
