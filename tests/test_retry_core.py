"""One retry core, for real: no loop in ``uploader`` or ``service`` waits out time but ``Retrier``'s.

README.md, ARCHITECTURE.md and ``uploader/retry.py`` say every retry goes through
``Retrier`` (``run`` for a call that fails, ``poll`` for an answer that is not final yet). This
test reads the AST of every module and fails on any loop (``while``, ``for``, ``async for``)
whose body pauses for time, outside ``uploader/retry.py``, unless ``NOT_RETRIES`` names it with
the reason it is no retry. A loop that asks again after a pause is a retry (or a poll) whatever
it is called, so it belongs on the one core, where the back-off, the jitter, the injected clock
and sleep, and the give-up rule are written once.

What counts as pausing (searched in the loop's body, not in functions defined there):

* a call of anything named ``*sleep`` (``asyncio.sleep``, ``time.sleep``, an injected
  ``sleep`` or ``self._sleep``), except ``sleep(0)``, which yields and does not wait;
* ``asyncio.wait(..., timeout=...)`` and ``asyncio.wait_for(...)``: a sleep that can end early.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("uploader", "service")
CORE = "uploader/retry.py"

# "path:Qualified.name" of a loop's function -> why that loop is not a retry.
NOT_RETRIES = {
    "uploader/part_phase.py:PartPhase._admit":
        "admission pacing: the sans-IO session says when the next part may start; nothing "
        "failed and nothing is asked again (a failed part is retried through Retrier)",
    "uploader/part_phase.py:PartPhase._watch":
        "the stall watchdog: looks at the parts' progress every few seconds",
    "uploader/notary/pipeline.py:Notarizer._upload_before_expiry":
        "a watchdog: compares the upload's projected finish with the credentials' expiry",
    "service/fleet/budget.py:SharedBudget.acquire":
        "rate limiting, like admission pacing: waits the time the fleet's shared bucket names "
        "until its next token; nothing failed and nothing is asked again",
    "service/fleet/queue.py:Fleet.keep":
        "lease renewal: renews a running job's lease every third of the lease for as long as "
        "the job runs; a renewal that fails is not retried, the next one is due anyway",
    "service/fleet/scheduler.py:FleetScheduler._heartbeats":
        "the worker's heartbeat and fleet gauges: a beat every third of the lease",
    "uploader/part_body.py:PartProgress.left":
        "waits for the kernel to send what the body handed over, reading the socket's counter at "
        "the link's pace; nothing failed (a link that stops is the stall watchdog's)",
    "service/daemon/flusher.py:Flusher.run_forever":
        "batches the daemon's progress writes: at most one flush per interval (a change of "
        "state cuts the pause short)",
    "service/progress.py:ticking.tick":
        "the progress display's ticker: a line about every second",
    "service/emulator/tickets.py:TicketDesk._stream":
        "the emulator sends an answer in pieces with pauses, as the real service does",
    "service/emulator/seaweed.py:SeaweedServer._wait_until_ready":
        "the emulated world's start-up probe of its own child process, synchronous (Retrier is "
        "async), bounded by the start-up timeout",
}


def _callee(func: ast.expr) -> str:
    """``a.b.c`` for a call of ``a.b.c``; the last name alone for anything else."""
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _pauses(call: ast.Call) -> bool:
    name = _callee(call.func)
    if name.rpartition(".")[2].endswith("sleep"):
        zero = (len(call.args) == 1 and isinstance(call.args[0], ast.Constant)
                and call.args[0].value == 0)
        return not zero
    if name == "asyncio.wait_for":
        return True
    return name == "asyncio.wait" and any(keyword.arg == "timeout" for keyword in call.keywords)


def _body_nodes(loop: ast.While | ast.For | ast.AsyncFor) -> Iterator[ast.AST]:
    """Every node of the loop's body and ``else``, not entering functions defined there."""
    todo: list[ast.AST] = [*loop.body, *loop.orelse]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def pausing_loops(source: str) -> list[tuple[str, int]]:
    """(qualified name of the enclosing function, line) of each loop that pauses for time."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.While | ast.For | ast.AsyncFor) and any(
                    isinstance(inner, ast.Call) and _pauses(inner) for inner in _body_nodes(child)):
                found.append((".".join(scope) or "<module>", child.lineno))
            visit(child, scope)

    visit(ast.parse(source), [])
    return found


def loops_in_tree() -> dict[str, list[int]]:
    """``"path:Qualified.name"`` -> lines of its pausing loops, over both packages."""
    loops: dict[str, list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for where, line in pausing_loops(path.read_text(encoding="utf-8")):
                loops.setdefault(f"{relative}:{where}", []).append(line)
    return loops


def test_only_the_retrier_loops_and_waits() -> None:
    loops = loops_in_tree()
    core = [where for where in loops if where.startswith(CORE + ":")]
    assert core == [f"{CORE}:Retrier.run"], f"the core itself loops in {core}"
    strays = sorted(
        f"{where} (line {', '.join(map(str, lines))})" for where, lines in loops.items()
        if not where.startswith(CORE + ":") and where not in NOT_RETRIES)
    assert not strays, (
        "loops that wait and go round again outside uploader/retry.py: run them on Retrier "
        "(run: retry a failed call; poll: ask again until an answer is final), or, if one is "
        "not a retry, name it in NOT_RETRIES with the reason:\n" + "\n".join(strays))
    stale = sorted(set(NOT_RETRIES) - set(loops))
    assert not stale, f"NOT_RETRIES names loops that no longer wait (or moved): {stale}"


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("async def f(sleep):\n    while True:\n        await sleep(1)\n",
                 [("f", 2)], id="injected-sleep"),
    pytest.param("class C:\n    async def f(self):\n        for _ in range(3):\n"
                 "            if x:\n                await self._sleep(d)\n",
                 [("C.f", 3)], id="method-nested-if"),
    pytest.param("import time\ndef f():\n    while x():\n        time.sleep(0.1)\n",
                 [("f", 3)], id="blocking-sleep"),
    pytest.param("import asyncio\nasync def f(t):\n    while True:\n"
                 "        await asyncio.wait({t}, timeout=5)\n", [("f", 3)], id="wait-timeout"),
    pytest.param("import asyncio\nasync def f(e):\n    async for x in y:\n"
                 "        await asyncio.wait_for(e.wait(), 5)\n", [("f", 3)], id="wait-for"),
    pytest.param("import asyncio\nasync def f():\n    for x in y:\n        await asyncio.sleep(0)\n",
                 [], id="yield-is-no-pause"),
    pytest.param("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", [], id="no-loop"),
    pytest.param("async def f(sleep):\n    while True:\n        async def g():\n"
                 "            await sleep(1)\n", [], id="defined-inside-not-run"),
    pytest.param("async def f(sleep):\n    async def g():\n        while True:\n"
                 "            await sleep(1)\n", [("f.g", 3)], id="nested-function"),
])
def test_what_counts_as_a_loop_that_waits(source: str, expected: list[tuple[str, int]]) -> None:
    assert pausing_loops(source) == expected
