"""The fault proxy's decisions without a network: seeded draws, selection, outage and expiry."""

from __future__ import annotations

import dataclasses

from service.emulator.faultplan import Draw, Fault, FaultDraws, FaultPlan, Operation
from tests.support.clocks import ManualClock

PART = Operation.UPLOAD_PART


def part(draws: FaultDraws, number: int, received: int = 0) -> Draw:
    return draws.draw("PUT", "/bucket/key", str(number), PART, received)


def test_each_attempt_at_a_target_meets_the_same_fault_whatever_the_arrival_order() -> None:
    plan = FaultPlan(reset=0.3, slow_down=0.3, seed=7)
    forwards, backwards = FaultDraws(plan), FaultDraws(plan)
    in_order = {(n, a): part(forwards, n) for a in range(3) for n in range(1, 21)}
    reversed_order = {(n, a): part(backwards, n) for a in range(3) for n in reversed(range(1, 21))}
    assert in_order == reversed_order
    faults = {draw.fault for draw in in_order.values()}
    assert {None, Fault.RESET, Fault.SLOW_DOWN} <= faults  # the seed spreads them
    other_seed = FaultDraws(dataclasses.replace(plan, seed=8))
    assert [part(other_seed, n) for n in range(1, 21)] != [in_order[n, 0] for n in range(1, 21)]


def test_a_new_seed_starts_the_attempt_counts_afresh() -> None:
    draws = FaultDraws(FaultPlan(reset=0.5, seed=1))
    first = [part(draws, 1) for _ in range(5)]
    draws.set_plan(FaultPlan(reset=0.5, seed=2))
    draws.set_plan(FaultPlan(reset=0.5, seed=1))
    assert [part(draws, 1) for _ in range(5)] == first


def test_only_selected_operations_meet_faults_after_the_clean_ones() -> None:
    draws = FaultDraws(FaultPlan(internal_error=1.0, clean_first=2))
    assert draws.draw("PUT", "/b/k", "", Operation.PUT_OBJECT, 0).fault is None
    assert [part(draws, n).fault for n in range(1, 5)] == [
        None,
        None,
        Fault.INTERNAL_ERROR,
        Fault.INTERNAL_ERROR,
    ]


def test_the_outage_starts_at_its_byte_count_and_lasts_its_time() -> None:
    clock = ManualClock()
    draws = FaultDraws(FaultPlan(outage_after_bytes=1000, outage_seconds=60), clock=clock)
    before = part(draws, 1, received=999)
    assert (before.fault, before.outage) == (None, False)
    clock.now = 5.0
    assert part(draws, 2, received=1000).outage
    clock.now = 64.9
    outage = part(draws, 3, received=5000)
    assert (outage.fault, outage.outage) == (Fault.RESET, True)
    clock.now = 65.0
    assert part(draws, 4, received=9000).fault is None  # once over, it does not come back


def test_expiry_by_switch_or_by_timer_since_the_plan_was_set() -> None:
    clock = ManualClock()
    draws = FaultDraws(FaultPlan(), clock=clock)
    clock.now = 100.0
    assert not draws.expired()
    draws.set_plan(FaultPlan(expired_token_after_seconds=30))
    clock.now = 129.9
    assert not draws.expired()
    draws.set_plan(FaultPlan(expired_token_after_seconds=30, reset=0.1))  # same timer: runs on
    clock.now = 130.0
    assert draws.expired()
    draws.set_plan(FaultPlan(expired_token_after_seconds=60))  # a new timer starts now
    assert not draws.expired()
    draws.set_plan(FaultPlan(expired_token=True))
    assert draws.expired()
