"""The drain gate's order: readiness false first, answers during the grace period, then
503 with the reason, and the drain waits for what is in flight."""

from __future__ import annotations

import asyncio

import pytest

from cellship.serve.drain import DRAINING, REFUSING, SERVING, DrainGate
from cellship.serve.errors import RequestError
from tests.unit.serve.test_batching import run


def test_drain_refuses_new_requests_only_after_the_grace_and_waits_for_those_in_flight() -> None:
    async def main():
        gate = DrainGate()
        seen = []
        release = asyncio.Event()

        async def in_flight():
            with gate.request():
                await release.wait()
                seen.append("in-flight finished")

        task = asyncio.create_task(in_flight())
        await asyncio.sleep(0)
        assert gate.state == SERVING and gate.ready and gate.in_flight == 1
        drain = asyncio.create_task(gate.drain(grace_s=0.05, timeout_s=30))
        await asyncio.sleep(0)
        assert gate.state == DRAINING and not gate.ready
        with gate.request():  # during the grace period: still answered
            seen.append("answered in grace")
        while gate.state != REFUSING:
            await asyncio.sleep(0.01)
        with pytest.raises(RequestError) as info:
            with gate.request():
                pass
        assert info.value.status == 503 and "shutting down" in str(info.value)
        assert not drain.done()  # still waiting for the request in flight
        release.set()
        left = await drain
        await task
        return seen, left

    seen, left = run(main())
    assert seen == ["answered in grace", "in-flight finished"] and left == 0


def test_drain_gives_up_after_the_timeout_and_says_how_many_were_left() -> None:
    async def main():
        gate = DrainGate()
        gate.in_flight = 2  # two requests that never finish
        return await gate.drain(grace_s=0, timeout_s=0.05)

    assert run(main()) == 2
