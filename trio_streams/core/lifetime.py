"""The lifetime of an object used as ``async with obj:`` that runs tasks of its own.

The session manager and the stores each hold a nursery open from ``__aenter__`` to
``__aexit__`` (producers and housekeeping run in it) and, on the way out, shut down
*before* unwinding: that nursery waits for its tasks, and they end only because the
shutdown told them to (cancelled the housekeeping, finalized every session, woke every
reader). :class:`Lifetime` writes that order once, as trio's ``AsyncContextManagerMixin``
writes ``async with lock:`` once in terms of ``acquire`` and ``release``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import trio

#: A housekeeping chore: every ``interval`` seconds, call ``action`` (and await what it
#: returns, if that is awaitable).
Chore = tuple[float, Callable[[], object]]


class Lifetime:
    """Base of the objects that own a nursery for as long as their ``async with`` lasts.

    A subclass says what to enter (:meth:`_open`, by default just the nursery), which
    chores to repeat (:meth:`_chores`) and how to stop (:meth:`shutdown`, extended with
    ``super().shutdown()``). Leaving the block calls :meth:`shutdown`, then unwinds what
    :meth:`_open` entered, in reverse.

    The chores run under a cancel scope of their own, not the nursery's: the nursery's
    scope also encloses the body of ``async with obj`` (a server, with its readers), which
    must keep running until it ends by itself.
    """

    def __init__(self) -> None:
        self._closed = False
        #: The nursery the tasks run in, from :meth:`_open_nursery` on.
        self._nursery: trio.Nursery | None = None
        self._housekeeping = trio.CancelScope()
        self._exit_stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await self._open(stack)
            self._exit_stack = stack.pop_all()  # nothing raised: kept open until exit
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.shutdown()
        assert self._exit_stack is not None
        stack, self._exit_stack = self._exit_stack, None
        return await stack.__aexit__(exc_type, exc, tb)

    def shutdown(self) -> None:
        """Refuse new work and stop the chores. Idempotent; subclasses extend it."""
        self._closed = True
        self._housekeeping.cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    async def _open(self, stack: AsyncExitStack) -> None:
        """Enter what the object needs, in order, on ``stack``; if this raises, what
        was entered unwinds at once. By default: the nursery and the chores."""
        await self._open_nursery(stack)

    async def _open_nursery(self, stack: AsyncExitStack) -> trio.Nursery:
        """Open the nursery on ``stack`` and start the chores in it."""
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._nursery = nursery
        chores = list(self._chores())
        if chores:
            nursery.start_soon(self._run_chores, chores)
        return nursery

    def _chores(self) -> Iterable[Chore]:
        """The housekeeping to repeat until :meth:`shutdown` (none by default)."""
        return ()

    async def _run_chores(self, chores: list[Chore]) -> None:
        with self._housekeeping:
            async with trio.open_nursery() as nursery:
                for interval, action in chores:
                    nursery.start_soon(_repeat, interval, action)


async def _repeat(interval: float, action: Callable[[], object]) -> None:
    while True:
        await trio.sleep(interval)
        result = action()
        if inspect.isawaitable(result):
            await result
