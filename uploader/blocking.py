"""A run's blocking file work, off the event loop, bounded and cancelled with the run.

``asyncio.to_thread`` runs work on the loop's shared pool (six threads on a 2-CPU machine): a
call that never returns (a read on a hung network volume, say) holds a worker for good, a few of
them starve every other ``to_thread`` in the process (a server's API among them), and the
interpreter waits for them at exit, so SIGTERM never ends the process. ``off_loop`` runs the call
on a thread of its own instead, a daemon thread, with the caller's context (``confine_to``):

* cancelling the caller returns at once and sets ``stop`` (long loops check it between reads);
* ``timeout_seconds`` bounds the wait: past it, ``BlockingTimeout`` names what was running;
* a call that ignores both is left behind without holding a pool worker or the process's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

from uploader.errors import NotarydError

T = TypeVar("T")


class BlockingTimeout(NotarydError):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} took longer than {seconds:.0f} s and was abandoned; check that "
                         "the volume answers, then run again")


async def off_loop(
    call: Callable[[threading.Event], T],
    *,
    what: str,
    timeout_seconds: float | None = None,
) -> T:
    """``call(stop)`` on its own daemon thread; see the module doc."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():  # the caller may have gone (cancelled, timed out) meanwhile
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    def run() -> None:
        try:
            result = context.run(call, stop)
        except BaseException as error:  # handed to the awaiting task
            failure = error
            hand_over(lambda: done.set_exception(failure))
        else:
            hand_over(lambda: done.set_result(result))

    threading.Thread(target=run, name=f"notaryd: {what}"[:60], daemon=True).start()
    try:
        async with asyncio.timeout(timeout_seconds):
            return await done
    except TimeoutError:
        raise BlockingTimeout(what, timeout_seconds or 0) from None
    finally:
        stop.set()
        done.cancel()  # a no-op once settled; otherwise a late result is dropped, not logged
