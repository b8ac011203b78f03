"""The group committer: batches concurrent callers, and never strands a caller that arrives as a runner finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mailsc.outbox.batch import GroupCommitter


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_back_to_back_submits_are_each_written(in_flight: int) -> None:
    batches: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(write, in_flight=in_flight)
    for i in range(20):  # each submit arrives just as the previous runner is finishing
        assert await asyncio.wait_for(committer.submit(i), 2) == i * 10
    assert sorted(i for batch in batches for i in batch) == list(range(20))


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_concurrent_callers_share_transactions(in_flight: int) -> None:
    running = 0
    most = 0
    batches: list[int] = []

    async def write(items: Sequence[int]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        batches.append(len(items))
        await asyncio.sleep(0.01)
        running -= 1
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(write, in_flight=in_flight)
    results = await asyncio.wait_for(asyncio.gather(*(committer.submit(i) for i in range(200))), 5)
    assert results == list(range(200))
    assert most <= in_flight
    assert len(batches) < 20  # grouped, not one transaction per caller
