"""The webhook outbox against a real HTTP receiver on loopback: in order per URL while the
receiver refuses, and a restart retries at once whatever back-off the last process stored."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp import web

from gateway.meetings.events import Outbox
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


class Receiver:
    """Answers 503 to the first `refuse` requests, then 204; records every attempt."""

    def __init__(self, refuse: int = 0) -> None:
        self.port = free_port()
        self.refuse = refuse
        self.attempts: list[str] = []
        self.accepted: list[str] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        self.attempts.append(key)
        if len(self.attempts) <= self.refuse:
            return web.Response(status=503)
        self.accepted.append(key)
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def _until(pred, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


async def test_events_arrive_in_order_while_the_receiver_refuses(tmp_path: Path) -> None:
    async with Receiver(refuse=2) as rx:
        box = Outbox(tmp_path / "db.sqlite3", urls=(rx.url,), secret="s")
        await box.start()
        try:
            for name in ("started", "joined", "left", "ended"):
                box.add({"id": name})
            await _until(lambda: len(rx.accepted) == 4, 20)  # two refusals: 1 s + 2 s back-off
        finally:
            await box.close(flush_s=0)
    assert rx.accepted == ["started", "joined", "left", "ended"]
    # while the head was refused nothing behind it was tried
    assert rx.attempts == ["started", "started", "started", "joined", "left", "ended"]


async def test_a_restart_retries_at_once_in_order(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    port = free_port()
    down = f"http://127.0.0.1:{port}/hook"  # nobody listens yet
    box = Outbox(db, urls=(down,), secret="s")
    await box.start()
    box.add({"id": "first"})
    box.add({"id": "second"})
    await _until(lambda: box._due_in() not in (None, 0.0), 10)  # the head failed and backs off
    await box.close(flush_s=0)
    con = sqlite3.connect(db)
    con.execute("UPDATE outbox SET next_attempt = ?", (time.time() + 3600,))  # a long back-off
    con.commit()
    con.close()
    rx = Receiver()
    rx.port = port
    async with rx:
        again = Outbox(db, urls=(down,), secret="s")
        started = time.monotonic()
        await again.start()
        try:
            await _until(lambda: len(rx.accepted) == 2, 10)
            assert again.pending() == 0
        finally:
            await again.close(flush_s=0)
    assert time.monotonic() - started < 10  # not the hour the last process stored
    assert rx.accepted == ["first", "second"]
