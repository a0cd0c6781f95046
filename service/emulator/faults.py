"""Misbehaviour injected into the emulated notary API, decided by one policy object.

``Faults`` holds the knobs (mutable at run time, from the emulator's loop thread). Before each
authenticated API call, ``FaultPolicy.draw`` picks what goes wrong, in this order: a missing
agreement (403), a missing provider (403), a 429 burst, the key's hourly request budget (429),
a 5xx burst, and on status polls a connection reset. Burst counters are consumed one per
matching request; ``*_until`` fields are clock times before which every matching request fails.
``FaultPolicy.answer`` turns the pick into what the client sees.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass

from aiohttp import web

from service.emulator.auth import RequestBudget
from service.emulator.responses import NOTARY_HEADERS, json_error
from service.emulator.tcp import reset_connection

AGREEMENT_TITLE = "A required agreement is missing or has expired."
AGREEMENT_DETAIL = (
    "This request requires an in-effect agreement that has not been signed or has expired. "
    "Ensure your team has signed the necessary legal agreements and that they are not expired."
)


@dataclass
class Faults:
    """Injected misbehaviour; change fields at any time (from the emulator's loop thread).

    ``endpoints`` limits the 429/5xx faults to the named endpoints (``submit``, ``status``,
    ``logs``, ``history``); None means all.
    """

    agreement_missing: bool = False
    missing_provider: bool = False
    rate_limit_next: int = 0
    rate_limit_until: float = 0.0
    retry_after_seconds: int | None = None
    server_error_next: int = 0
    server_error_until: float = 0.0
    server_error_status: int = 503
    reset_status_next: int = 0
    reset_status_until: float = 0.0
    endpoints: frozenset[str] | None = None
    stuck_next: int = 0  # the next N submissions created never leave "In Progress"
    stuck_name_glob: str | None = None


class Injected(enum.Enum):
    AGREEMENT_MISSING = "agreement_missing"
    MISSING_PROVIDER = "missing_provider"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CONNECTION_RESET = "connection_reset"


class FaultPolicy:
    """Decides, per API call, which injected fault (if any) answers it instead of the API."""

    def __init__(self, faults: Faults, budget: RequestBudget) -> None:
        self.faults = faults
        self.budget = budget

    def draw(self, endpoint: str, key_id: str, now: float) -> Injected | None:
        faults = self.faults
        if faults.agreement_missing:
            return Injected.AGREEMENT_MISSING
        if faults.missing_provider:
            return Injected.MISSING_PROVIDER
        applies = faults.endpoints is None or endpoint in faults.endpoints
        if applies and (faults.rate_limit_next > 0 or now < faults.rate_limit_until):
            faults.rate_limit_next = max(0, faults.rate_limit_next - 1)
            return Injected.RATE_LIMITED
        if not self.budget.spend(key_id, now):
            return Injected.RATE_LIMITED
        if applies and (faults.server_error_next > 0 or now < faults.server_error_until):
            faults.server_error_next = max(0, faults.server_error_next - 1)
            return Injected.SERVER_ERROR
        if endpoint == "status" and (
            faults.reset_status_next > 0 or now < faults.reset_status_until
        ):
            faults.reset_status_next = max(0, faults.reset_status_next - 1)
            return Injected.CONNECTION_RESET
        return None

    def takes_stuck(self, name: str) -> bool:
        """Whether a submission created now, named ``name``, never leaves In Progress."""
        faults = self.faults
        stuck = faults.stuck_next > 0 or (
            faults.stuck_name_glob is not None and fnmatch.fnmatchcase(name, faults.stuck_name_glob)
        )
        faults.stuck_next = max(0, faults.stuck_next - 1)
        return stuck

    def answer(self, injected: Injected, request: web.Request) -> web.StreamResponse:
        if injected is Injected.AGREEMENT_MISSING:
            return json_error(
                403,
                "FORBIDDEN.REQUIRED_AGREEMENTS_MISSING_OR_EXPIRED",
                AGREEMENT_TITLE,
                AGREEMENT_DETAIL,
            )
        if injected is Injected.MISSING_PROVIDER:
            return json_error(
                403,
                "FORBIDDEN.MISSING_PROVIDER",
                "This provider does not exist.",
                "This provider does not exist.",
                links={"see": "/landing"},
            )
        if injected is Injected.RATE_LIMITED:
            retry_after = self.faults.retry_after_seconds
            return json_error(
                429,
                "RATE_LIMIT",
                "Too many requests",
                "Exceeded hourly limit of requests. Try again later.",
                headers={} if retry_after is None else {"Retry-After": str(retry_after)},
            )
        if injected is Injected.SERVER_ERROR:
            return web.Response(status=self.faults.server_error_status, headers=NOTARY_HEADERS)
        reset_connection(request)
        return web.Response(status=599)  # never delivered: the connection is gone
