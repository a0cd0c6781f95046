"""docs/ARCHITECTURE.md draws the lifecycle tables (``uploader/lifecycle.py``, the job's in
``service/daemon/job_states.py``), the engine's failure table (``uploader/upload_session.py``)
and the kinds table of ``uploader/artifact.py``: they must agree; and its map names every shipped
module."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from service.daemon.job_states import JOB_LIFECYCLE, JOB_STATES
from uploader.lifecycle import SUBMISSION_LIFECYCLE, UPLOAD_LIFECYCLE, Lifecycle
from uploader.upload_session import FAILURES

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def drawn_table(heading: str) -> dict[str, set[str]]:
    """The ``| from | may become |`` rows under the bold ``heading`` of the Lifecycles section."""
    section = DOC.read_text(encoding="utf-8").split("## Lifecycles", 1)[1].split("\n## ", 1)[0]
    block = section.split(f"**{heading}**", 1)[1].split("\n**", 1)[0]
    drawn: dict[str, set[str]] = {}
    for row in re.findall(r"^\| (`.+?) \| (.+?) \|$", block, re.MULTILINE):
        sources, targets = row
        if targets.startswith("nothing"):
            moves = set()
        elif targets.startswith("any job state"):
            moves = {str(state) for state in JOB_STATES}
        else:
            moves = set(re.findall(r"`([^`]+)`", targets))
        for source in re.findall(r"`([^`]+)`", sources):
            drawn[source] = moves
    return drawn


@pytest.mark.parametrize(
    ("heading", "lifecycle"),
    [("Upload", UPLOAD_LIFECYCLE), ("Submission", SUBMISSION_LIFECYCLE), ("Job", JOB_LIFECYCLE)],
)
def test_the_drawn_table_is_the_codes_table(heading: str, lifecycle: Lifecycle[enum.Enum]) -> None:
    in_code = {str(state.value): {str(new.value) for new in moves} for state, moves in lifecycle.moves.items()}
    assert drawn_table(heading) == in_code


def test_the_drawn_failure_table_is_the_engines() -> None:
    section = DOC.read_text(encoding="utf-8").split("**Failure table**", 1)[1].split("\n\n*", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| `(\w+)` \| (yes|no) \| (\d+) \|$", section,
                      re.MULTILINE)
    drawn = {kind: (action, error, aborts == "yes", int(precedence))
             for kind, action, error, aborts, precedence in rows}
    in_code = {str(kind): (str(row.action), row.error.__name__, row.aborts, row.precedence)
               for kind, row in FAILURES.items()}
    assert drawn == in_code


def drawn_kinds() -> list[list[str]]:
    """The rows of the table under "## Artifacts: one table of kinds", cells without backticks."""
    section = DOC.read_text(encoding="utf-8").split("## Artifacts: one table of kinds", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`.+?) \|$", section, re.MULTILINE)
    return [[cell.strip().replace("`", "") for cell in row.split(" | ")] for row in rows]


def test_the_drawn_kinds_are_the_codes_kinds() -> None:
    from uploader.artifact import KINDS

    def name(function: object | None, missing: str) -> str:
        return getattr(function, "__name__", missing)

    in_code = [
        [kind.name, kind.suffix, "folder" if kind.folder else "file",
         "zipped" if kind.zipped else "as it is", name(kind.preflight, ""),
         name(kind.ticket_key, "none"),
         f"{name(kind.read_ticket, '')}, {name(kind.write_ticket, '')}" if kind.stapled
         else "cannot be stapled"]
        for kind in KINDS
    ]
    assert drawn_kinds() == in_code


def shipped_module_names() -> set[str]:
    root = DOC.parents[1]
    return {path.name for package in ("uploader", "service") for path in (root / package).rglob("*.py")
            if path.name not in ("__init__.py", "__main__.py")}


def test_the_map_names_every_shipped_module() -> None:
    text = DOC.read_text(encoding="utf-8")
    unnamed = sorted(name for name in shipped_module_names()
                     if not re.search(rf"(?<![\w/.]){re.escape(name)}\b", text))
    assert not unnamed, f"modules ARCHITECTURE.md does not name: {unnamed}"


def test_the_map_names_no_module_that_is_gone() -> None:
    root = DOC.parents[1]
    known = {path.name for path in root.rglob("*.py") if ".venv" not in path.parts}
    map_block = DOC.read_text(encoding="utf-8").split("```", 2)[1]
    drawn = set(re.findall(r"(?<![\w/.])(\w+\.py)\b", map_block))
    assert drawn - known == set(), f"names in the map with no module: {sorted(drawn - known)}"
