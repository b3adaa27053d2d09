"""The service's admission of report batches (policy.admission): a bounded number at a time,
a bounded FIFO behind them that waits a bounded time, and a turn never lost."""

from __future__ import annotations

import asyncio

import pytest

from policy.admission import Admission


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_up_to_the_limit_enter_at_once_and_the_next_waits_for_a_leave() -> None:
    async def scenario() -> list[str]:
        gate = Admission(limit=2, wait_s=5, max_waiting=10)
        events: list[str] = []
        assert await gate.enter()
        assert await gate.enter()

        async def late(name: str) -> None:
            ok = await gate.enter()
            events.append(f"{name}:{ok}")

        third = asyncio.create_task(late("third"))
        fourth = asyncio.create_task(late("fourth"))
        await asyncio.sleep(0.05)
        assert events == []
        assert gate.waiting == 2
        assert gate.admitted == 2
        gate.leave()
        await asyncio.sleep(0.05)
        assert events == ["third:True"]  # first come, first served
        gate.leave()
        await asyncio.gather(third, fourth)
        assert gate.admitted == 2
        assert gate.waiting == 0
        gate.leave()
        gate.leave()
        assert gate.admitted == 0
        return events

    assert _run(scenario()) == ["third:True", "fourth:True"]


def test_a_wait_past_its_limit_is_refused_and_frees_its_place_in_the_queue() -> None:
    async def scenario() -> None:
        gate = Admission(limit=1, wait_s=0.1, max_waiting=10)
        assert await gate.enter()
        assert await gate.enter() is False  # waited 0.1 s: busy
        assert gate.waiting == 0
        gate.leave()
        assert gate.admitted == 0
        assert await gate.enter()  # nothing left behind in the queue

    _run(scenario())


@pytest.mark.parametrize(("wait_s", "max_waiting"), [(0, 10), (5, 0)])
def test_no_wait_or_no_room_to_wait_is_refused_at_once(wait_s: float,
                                                        max_waiting: int) -> None:
    async def scenario() -> float:
        gate = Admission(limit=1, wait_s=wait_s, max_waiting=max_waiting)
        assert await gate.enter()
        began = asyncio.get_running_loop().time()
        assert await gate.enter() is False
        return asyncio.get_running_loop().time() - began

    assert _run(scenario()) < 0.5  # type: ignore[operator]


def test_a_waiter_that_goes_away_as_its_turn_comes_passes_the_turn_on() -> None:
    async def scenario() -> None:
        gate = Admission(limit=1, wait_s=5, max_waiting=10)
        assert await gate.enter()
        gone = asyncio.create_task(gate.enter())
        after = asyncio.create_task(gate.enter())
        await asyncio.sleep(0.05)
        gate.leave()  # the turn goes to ``gone``...
        gone.cancel()  # ...whose client disconnects before it runs
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await after is True  # the turn was passed on, not lost
        assert gate.admitted == 1
        assert gate.waiting == 0

    _run(scenario())


def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    async def scenario() -> None:
        gate = Admission(limit=1, wait_s=5, max_waiting=10)
        assert await gate.enter()
        waiter = asyncio.create_task(gate.enter())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert gate.waiting == 0
        gate.leave()
        assert gate.admitted == 0

    _run(scenario())
