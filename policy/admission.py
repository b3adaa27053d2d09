"""Admission of report batches: a bounded number at a time, a bounded queue behind them.

The ledger has one writer at a time, so a burst of agents (a thousand hosts started by the
same timer) cannot all be written at once. Answering each batch past the admitted ones with
503 at once made every agent resend its whole body every second or two: under a burst the
service spent more time reading batches it refused than writing the ones it took. A batch
past the admitted ones now waits for its turn first, for at most ``wait_s``; only then, or when
the queue is full, is it answered 503. The service reads a batch's body (within its deadline)
before it asks for a place, so a client that trickles its body holds no place; a waiting batch
holds its raw body (a batch of 100 observations is ~50 KB), and the queue's bound keeps that
bounded.

Touched by the event loop only: no locks.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Admission"]


class Admission:
    """``admitted`` batches at most ``limit`` at a time; FIFO waiting for at most ``wait_s``
    behind them, at most ``max_waiting`` of them."""

    def __init__(self, *, limit: int, wait_s: float, max_waiting: int) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self.admitted = 0
        self._queue: deque[asyncio.Future[bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def enter(self) -> bool:
        """Whether the batch may go on (then :meth:`leave` must follow), after waiting for
        its turn if need be; ``False``: busy, answer 503."""
        if self.admitted < self.limit and not self._queue:
            self.admitted += 1
            return True
        if self.wait_s <= 0 or len(self._queue) >= self.max_waiting:
            return False
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._queue.append(turn)
        timer = loop.call_later(self.wait_s, self._expire, turn)
        try:
            return await turn
        except asyncio.CancelledError:
            # The client went away while waiting, or just as its turn came: a turn given
            # and never taken is passed on.
            if turn.done() and not turn.cancelled() and turn.result():
                self.leave()
            raise
        finally:
            timer.cancel()
            if turn in self._queue:
                self._queue.remove(turn)

    def leave(self) -> None:
        """An admitted batch is answered: the next waiting one (if any) takes its place."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(True)  # the place passes on: ``admitted`` stays the same
                return
        self.admitted -= 1

    def _expire(self, turn: asyncio.Future[bool]) -> None:
        if not turn.done():
            turn.set_result(False)
