"""What the fault proxy does to each request: the plan, and the seeded draws under it.

``FaultPlan`` is an immutable value (probabilities per fault, the operations they apply to,
latency, bandwidth, expiry and outage settings, the seed). ``FaultDraws`` applies a plan to a
stream of requests without touching the network, so it can be tested with a fake clock:

* each request's random draws come from ``random.Random`` seeded with the plan's seed, the
  request's target (method, path, part number) and how many times that target was asked for
  before: the n-th attempt at part 7 meets the same fault on every run, whatever order
  concurrent parts arrive in;
* only the plan's ``operations`` are selected, and the first ``clean_first`` selected requests
  pass untouched;
* an **outage** overrides the draw: once ``outage_after_bytes`` of request bodies were
  received, every selected request is reset for ``outage_seconds``;
* **expiry**: with ``expired_token`` set, or ``expired_token_after_seconds`` after the plan
  was set, every request (selected or not) answers ExpiredToken.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from uploader.errors import ConfigError


class Operation(enum.StrEnum):
    UPLOAD_PART = "UploadPart"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    PUT_OBJECT = "PutObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    OTHER = "Other"


def classify(method: str, path: str, query: Mapping[str, str]) -> Operation:
    """Name the S3 operation of a path-style request from its method, path and query."""
    in_object = path.strip("/").count("/") >= 1  # "/bucket/key..." rather than "/bucket"
    if "uploadId" in query:
        if method == "PUT" and "partNumber" in query:
            return Operation.UPLOAD_PART
        return {
            "POST": Operation.COMPLETE_MULTIPART_UPLOAD,
            "GET": Operation.LIST_PARTS,
            "DELETE": Operation.ABORT_MULTIPART_UPLOAD,
        }.get(method, Operation.OTHER)
    if method == "POST" and "uploads" in query:
        return Operation.CREATE_MULTIPART_UPLOAD
    if in_object and not query:
        return {
            "PUT": Operation.PUT_OBJECT,
            "GET": Operation.GET_OBJECT,
            "HEAD": Operation.HEAD_OBJECT,
        }.get(method, Operation.OTHER)
    return Operation.OTHER


class Fault(enum.StrEnum):
    RESET = "reset"
    INTERNAL_ERROR = "internal_error"
    SLOW_DOWN = "slow_down"
    REQUEST_TIMEOUT = "request_timeout"
    STALL = "stall"
    MID_BODY_STALL = "mid_body_stall"
    EXPECT_HANG = "expect_hang"
    LOST_RESPONSE = "lost_response"


# Outcomes counted in ProxyStats.outcomes besides the Fault values.
FORWARDED = "forwarded"
EXPIRED_TOKEN = "expired_token"
UPSTREAM_ERROR = "upstream_error"
CLIENT_GONE = "client_gone"
OUTAGE = "outage"


DEFAULT_OPERATIONS = frozenset({Operation.UPLOAD_PART})


@dataclass(frozen=True)
class FaultPlan:
    """What the proxy does to requests. Probabilities are per selected request; sum ≤ 1."""

    reset: float = 0.0  # part of the body read, then TCP RST
    internal_error: float = 0.0  # 500 InternalError
    slow_down: float = 0.0  # 503 SlowDown
    request_timeout: float = 0.0  # 400 RequestTimeout
    stall: float = 0.0  # no read, no answer for stall_seconds, then RST
    mid_body_stall: float = 0.0  # part of the body read, then a stall
    expect_hang: float = 0.0  # no 100 Continue to Expect: 100-continue
    lost_response: float = 0.0  # forwarded (it takes effect), then RST instead of the answer
    stall_seconds: float = 600.0
    latency_seconds: float = 0.0  # added to every request: the link's
    bandwidth_bytes_per_second: float | None = None  # request bodies, all connections together
    expired_token: bool = False  # every request: 400 ExpiredToken
    expired_token_after_seconds: float | None = None  # ... from this long after the plan was set
    outage_after_bytes: int | None = None  # a total outage from this many body bytes received
    outage_seconds: float = 0.0
    operations: frozenset[Operation] = DEFAULT_OPERATIONS  # the requests faults are drawn for
    clean_first: int = 0  # the first N of those pass untouched
    seed: int = 0

    def __post_init__(self) -> None:
        for fault, probability in self.fault_probabilities().items():
            if not 0.0 <= probability <= 1.0:
                raise ConfigError(f"FaultPlan.{fault}: probability {probability} is not in [0, 1]")
        total = sum(self.fault_probabilities().values())
        if total > 1.0 + 1e-9:
            raise ConfigError(f"FaultPlan: fault probabilities add up to {total:g}; at most 1")
        if self.stall_seconds <= 0:
            raise ConfigError("FaultPlan.stall_seconds must be > 0")
        if self.latency_seconds < 0:
            raise ConfigError("FaultPlan.latency_seconds must be ≥ 0")
        if self.bandwidth_bytes_per_second is not None and self.bandwidth_bytes_per_second <= 0:
            raise ConfigError("FaultPlan.bandwidth_bytes_per_second must be > 0 (or None: no cap)")
        if self.outage_seconds < 0 or (self.outage_after_bytes or 0) < 0:
            raise ConfigError("FaultPlan.outage_after_bytes and outage_seconds must be ≥ 0")
        if self.clean_first < 0:
            raise ConfigError("FaultPlan.clean_first must be ≥ 0")
        # Accept plain strings (from JSON / the command line) and normalise to Operation.
        object.__setattr__(self, "operations", frozenset(Operation(o) for o in self.operations))

    def fault_probabilities(self) -> dict[Fault, float]:
        return {fault: float(getattr(self, fault.value)) for fault in Fault}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultPlan | None = None) -> FaultPlan:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"FaultPlan: unknown field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return dataclasses.replace(base or cls(), **data)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["operations"] = sorted(self.operations)
        return data


@dataclass(frozen=True)
class Draw:
    """The decision for one request: at most one fault, and where in its body to act."""

    fault: Fault | None
    fraction: float  # of the body to read before a reset or stall
    outage: bool = False  # the fault is the outage's reset, not a draw


class FaultDraws:
    """Applies the current plan to requests in arrival order. One event loop; set_plan from any
    thread is safe (it swaps whole values)."""

    def __init__(self, plan: FaultPlan | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.plan = FaultPlan()
        self._plan_since = clock()
        self._attempts: dict[str, int] = {}  # request target -> times seen under this seed
        self._selected_seen = 0
        self._outage_since: float | None = None
        self.set_plan(plan or FaultPlan())

    def set_plan(self, plan: FaultPlan) -> None:
        """Use ``plan`` from the next request on; a new seed starts the attempt counts afresh."""
        if plan.seed != self.plan.seed or self._selected_seen == 0:
            self._attempts = {}
        if plan.expired_token_after_seconds != self.plan.expired_token_after_seconds:
            self._plan_since = self._clock()
        self.plan = plan

    def expired(self) -> bool:
        plan = self.plan
        after = plan.expired_token_after_seconds
        return plan.expired_token or (
            after is not None and self._clock() - self._plan_since >= after
        )

    def draw(
        self, method: str, path: str, part_number: str, operation: Operation, received_bytes: int
    ) -> Draw:
        """Decide for one request; ``received_bytes`` is every request body byte so far."""
        plan = self.plan
        target = f"{method} {path} {part_number}"
        attempt = self._attempts.get(target, 0)
        self._attempts[target] = attempt + 1
        rng = random.Random(f"{plan.seed}|{target}|{attempt}")
        choice, fraction = rng.random(), rng.random()
        if operation not in plan.operations:
            return Draw(None, fraction)
        self._selected_seen += 1
        if self._in_outage(plan, received_bytes):
            return Draw(Fault.RESET, fraction, outage=True)
        if self._selected_seen <= plan.clean_first:
            return Draw(None, fraction)
        for fault, probability in plan.fault_probabilities().items():
            if choice < probability:
                return Draw(fault, fraction)
            choice -= probability
        return Draw(None, fraction)

    def _in_outage(self, plan: FaultPlan, received_bytes: int) -> bool:
        if plan.outage_after_bytes is None or not plan.outage_seconds:
            return False
        now = self._clock()
        if self._outage_since is None:
            if received_bytes < plan.outage_after_bytes:
                return False
            self._outage_since = now
        return now - self._outage_since < plan.outage_seconds
