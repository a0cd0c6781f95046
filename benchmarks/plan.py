"""What a benchmark run covers: conditions, sizes, repetitions, tuning (quick and full).

Conditions: ``clean`` goes straight to the sink; ``tls`` too, but over HTTPS (real S3 is
HTTPS; see ``benchmarks.tls``); ``tls-shaped`` and ``tls-slow`` are HTTPS through a TCP-level
link (``benchmarks.linkshaper``: 1 Gbit/s and 20 ms, 200 Mbit/s and 50 ms), where the receiver,
not the client's CPU, sets the pace; the others go through the fault proxy. ``lossy`` and
``hostile`` run at loopback speed (no latency or cap) so that what they measure is recovery,
not the link. Quick mode uses small files, fewer runs and 5-second stalls instead of 2-minute
ones, to finish in a few minutes on 2 cores; RESULTS.md says which mode produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.linkshaper import Link
from benchmarks.peers import MiB, Tuning
from benchmarks.services import Shaping

GiB = 1024 * MiB


@dataclass(frozen=True)
class Condition:
    name: str
    shaping: Shaping | None  # None: clients talk to the sink directly
    sizes: tuple[int, ...]
    runs: int
    timeout_seconds: float  # per attempt; a run that takes longer is killed and counts as failed
    notaryd_reruns: int = 0  # re-runs of `notaryd upload` after a non-zero exit (it resumes)
    tls: bool = False  # HTTPS to a sink with a generated CA every tool is told to trust
    link: Link | None = None  # a TCP-level link (cap, round trip) in front of the sink

    def __post_init__(self) -> None:
        if self.tls and self.shaping is not None:
            raise ValueError(f"condition {self.name}: the fault proxy speaks plain HTTP only")
        if self.link is not None and self.shaping is not None:
            raise ValueError(f"condition {self.name}: a link shaper or the fault proxy, not both")

    def describe(self) -> str:
        if self.tls and self.link is not None:
            return f"HTTPS over a {self.link.describe()}, certificate verified"
        if self.tls:
            return "HTTPS direct to the sink, certificate verified against a generated CA"
        return "direct to the sink" if self.shaping is None else self.shaping.describe()


@dataclass(frozen=True)
class Plan:
    mode: str  # "quick" or "full"
    conditions: tuple[Condition, ...]
    tuning: Tuning
    hash_size: int
    ceiling_bytes: int
    tools: tuple[str, ...] = ("notaryd", "s5cmd", "aws-cli", "boto3", "boto3-crt")
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted({s for c in self.conditions for s in c.sizes}))


TUNING = Tuning(part_size=16 * MiB, concurrency=8, stall_timeout_seconds=20)
SHAPED = Shaping(latency_ms=50, bandwidth_mbit=200)
LOSSY = Shaping(reset_rate=0.05, error_rate=0.05)
# Real uploads: HTTPS over a studio's link (1 Gbit/s near the region, 200 Mbit/s far from it).
TLS_SHAPED = Link(mbit=1000, rtt_ms=20)
TLS_SLOW = Link(mbit=200, rtt_ms=50)


def hostile(stall_seconds: float) -> Shaping:
    return Shaping(reset_rate=0.20, error_rate=0.10, stall_rate=0.02, stall_seconds=stall_seconds)


def quick_plan() -> Plan:
    small = 256 * MiB
    return Plan(
        mode="quick",
        conditions=(
            Condition("clean", None, (256 * MiB, 1 * GiB), runs=3, timeout_seconds=120),
            Condition("tls", None, (1 * GiB,), runs=2, timeout_seconds=120, tls=True),
            Condition("shaped", SHAPED, (128 * MiB,), runs=1, timeout_seconds=90),
            Condition("tls-shaped", None, (256 * MiB,), runs=1, timeout_seconds=90, tls=True,
                      link=TLS_SHAPED),
            Condition("tls-slow", None, (128 * MiB,), runs=1, timeout_seconds=90, tls=True,
                      link=TLS_SLOW),
            Condition("lossy", LOSSY, (small,), runs=2, timeout_seconds=60, notaryd_reruns=3),
            Condition("hostile", hostile(5), (small,), runs=1, timeout_seconds=60,
                      notaryd_reruns=3),
        ),
        tuning=Tuning(part_size=16 * MiB, concurrency=8, stall_timeout_seconds=4),
        hash_size=1 * GiB,
        ceiling_bytes=1 * GiB,
        notes=(
            "quick mode: 256 MiB and 1 GiB clean, 1 GiB tls, 128 MiB shaped, 256 MiB tls-shaped, "
            "128 MiB tls-slow, 256 MiB lossy/hostile; "
            "hostile stalls last 5 s (not 2 min) and notaryd's stall timeout is 4 s; 1-3 runs per cell. "
            "At these sizes each tool's fixed start-up cost (imports, client set-up) weighs "
            "heavily; the marginal rates between the two clean sizes remove it.",
        ),
    )


def full_plan() -> Plan:
    return Plan(
        mode="full",
        conditions=(
            Condition("clean", None, (1 * GiB, 6 * GiB, 25 * GiB), runs=3, timeout_seconds=3600),
            Condition("tls", None, (1 * GiB, 6 * GiB), runs=3, timeout_seconds=3600, tls=True),
            Condition("shaped", SHAPED, (1 * GiB,), runs=3, timeout_seconds=600),
            Condition("tls-shaped", None, (1 * GiB, 6 * GiB), runs=3, timeout_seconds=900,
                      tls=True, link=TLS_SHAPED),
            Condition("tls-slow", None, (1 * GiB, 6 * GiB), runs=3, timeout_seconds=900,
                      tls=True, link=TLS_SLOW),
            Condition("lossy", LOSSY, (1 * GiB, 6 * GiB), runs=3, timeout_seconds=1800,
                      notaryd_reruns=5),
            Condition("hostile", hostile(120), (1 * GiB,), runs=3, timeout_seconds=1800,
                      notaryd_reruns=5),
        ),
        tuning=TUNING,
        hash_size=6 * GiB,
        ceiling_bytes=4 * GiB,
        notes=(
            "full mode: clean at 1, 6 and 25 GiB; tls at 1 and 6 GiB; shaped at 1 GiB (25 GiB "
            "at 200 Mbit/s would take 18 min per tool and run); tls-shaped and tls-slow at 1 "
            "and 6 GiB (6 GiB at 200 Mbit/s: about 4.5 min per tool and run); lossy at 1 and 6 GiB; hostile at "
            "1 GiB with 2-minute stalls; 3 runs per cell.",
        ),
    )
