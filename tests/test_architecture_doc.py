"""docs/ARCHITECTURE.md draws the lifecycle tables (``uploader/lifecycle.py``, the job's in
``service/daemon/job_states.py``): they must agree."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from service.daemon.job_states import JOB_LIFECYCLE, JOB_STATES
from uploader.lifecycle import SUBMISSION_LIFECYCLE, UPLOAD_LIFECYCLE, Lifecycle

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
