"""``notaryd staple --check``: is a ticket for the artifact's *current* signature stapled?

Offline. A ticket counts when it has the ``s8ch`` magic and names the cdhash the artifact's
signature has now (a ticket lists the cdhashes it vouches for); re-signing after stapling
changes the cdhash and makes the stapled ticket stale. Apple's signature over the ticket itself
is verified by Gatekeeper on the Mac, not here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uploader.staple.identity import TicketKey
from uploader.staple.tickets import TICKET_MAGIC

if TYPE_CHECKING:
    from uploader.artifact import Artifact


class CheckOutcome(enum.StrEnum):
    VALID = "valid"
    NOT_STAPLED = "not-stapled"
    NOT_A_TICKET = "not-a-ticket"
    STALE = "stale"


_ADVICE = {
    CheckOutcome.VALID: "a ticket for the current signature is stapled",
    CheckOutcome.NOT_STAPLED: "no ticket is stapled; run: notaryd staple {path}",
    CheckOutcome.NOT_A_TICKET: "the stapled data is not a notarisation ticket; run: "
                               "notaryd staple {path}",
    CheckOutcome.STALE: "the stapled ticket is for another signature (signed again after "
                        "stapling?); notarise this build and run: notaryd staple {path}",
}


@dataclass(frozen=True)
class CheckResult:
    path: Path
    outcome: CheckOutcome
    key: TicketKey

    @property
    def ok(self) -> bool:
        return self.outcome is CheckOutcome.VALID

    @property
    def message(self) -> str:
        return f"{self.path}: {_ADVICE[self.outcome].format(path=self.path)}"


def check_staple(target: Path | Artifact) -> CheckResult:
    """Blocking (reads the signature and the ticket); raises StapleInputError for bad input."""
    from uploader.artifact import for_stapling

    artifact = for_stapling(target)
    key = artifact.ticket_key()
    ticket = artifact.read_ticket()
    if ticket is None:
        outcome = CheckOutcome.NOT_STAPLED
    elif not ticket.startswith(TICKET_MAGIC):
        outcome = CheckOutcome.NOT_A_TICKET
    elif key.cdhash not in ticket:
        outcome = CheckOutcome.STALE
    else:
        outcome = CheckOutcome.VALID
    return CheckResult(target if isinstance(target, Path) else artifact.path, outcome, key)
