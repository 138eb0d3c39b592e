"""The Controller's scheduler loop stops when it is cancelled, whenever the cancel comes.

No API server is involved: with no ScheduledJobs the loop only waits for wake-ups.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from sked.controller import Controller
from sked.kube import KubeClient


def idle_controller() -> Controller:
    # An idle loop makes no API call, so no client is needed.
    return Controller(cast(KubeClient, None))


async def cancel_as_it_wakes() -> Any:
    controller = idle_controller()
    loop_task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.01)
    assert controller.running
    # The wake-up and the cancel in the same pass of the event loop: on Python
    # 3.11, asyncio.wait_for returned normally here and the loop went on.
    controller.mark(("default", "absent"))
    loop_task.cancel()
    async with asyncio.timeout(2):
        return await loop_task


def test_loop_stops_when_cancelled_at_wake_up():
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_as_it_wakes())
