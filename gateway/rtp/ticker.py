"""The 20 ms mix schedule shared by a meeting's own tick and the plane-wide mix engine.

``await run_ticks(step, ...)`` calls ``step(now)`` every ``TICK_S`` on a drift-free
schedule (tick k is due at start + k * TICK_S, whatever the previous one cost). When the
loop stalled so far that catching up would burst (more than 200 ms behind), it starts the
schedule again and says so through ``overrun``. A failing step is reported through
``failed`` and the schedule goes on: one bad frame must not end the media of a meeting.
``observe()`` returns the plane's tick observer (or None): it gets each tick's duration and
its lateness against its slot, for /metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.rtp.mixer import TICK_S

MAX_BEHIND_S = 0.2
Observer = Callable[[float, float], None]


async def run_ticks(step: Callable[[float], None], *, overrun: Callable[[], None],
                    failed: Callable[[], None], observe: Callable[[], Observer | None]) -> None:
    start = time.monotonic()
    k = 0
    while True:
        k += 1
        due = start + k * TICK_S
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -MAX_BEHIND_S:
            overrun()
            start, k = time.monotonic(), 0
        began = time.monotonic()
        try:
            step(began)
        except Exception:
            failed()
        obs = observe()
        if obs is not None:
            obs(time.monotonic() - began, max(0.0, began - due))
