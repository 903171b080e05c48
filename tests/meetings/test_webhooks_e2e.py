"""Webhook events: every event delivered exactly once, signed, across a gateway restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from aiohttp import web

from tests.conftest import free_port
from tests.daemon import start_daemon
from tests.peers import Agent, sip_uri, tone_wav

OPEN = "4718203956"


class Receiver:
    def __init__(self, port: int, secret: str) -> None:
        self.port, self.secret = port, secret
        self.ids: Counter[str] = Counter()
        self.kinds: list[str] = []
        self.bad_signatures = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Vtcgw-Timestamp"]
        want = "v1=" + hmac.new(self.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers["X-Vtcgw-Signature"]):
            self.bad_signatures += 1
            return web.Response(status=400)
        ev = json.loads(body)
        assert request.headers["Idempotency-Key"] == ev["id"]
        assert set(ev) == {"version", "id", "detail-type", "source", "account", "time", "region",
                           "resources", "detail"}
        self.ids[ev["id"]] += 1
        self.kinds.append(ev["detail-type"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def _call(port: int, tmp: Path, name: str) -> None:
    agent = Agent({"uri": sip_uri(OPEN, port), "transport": "tls", "hangup_after": 2, "max_duration": 20,
                   "play_wav": str(tone_wav(tmp / f"{name}.wav", 440))}, name=name)
    await asyncio.to_thread(agent.wait_for, "ended", 20)
    assert await asyncio.to_thread(agent.stop) == 0


async def _until(pred, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.1)


async def test_events_exactly_once_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "var"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--id", OPEN,
                    "--data-dir", str(data)], check=True, capture_output=True, timeout=60)
    secret = "s3cret-for-test"
    port = free_port()
    rx = Receiver(port, secret)
    env = {"VTCGW_WEBHOOKS": f"http://127.0.0.1:{port}/hook", "VTCGW_WEBHOOK_SECRET": secret}
    await rx.start()
    gw = await asyncio.to_thread(start_daemon, data, env=env)
    try:
        await _call(gw.ports["sip_tls"], tmp_path, "first")
        await _until(lambda: "MeetingEnded" in rx.kinds, 15)
        # receiver down: the next call's events queue in the outbox; the gateway restarts meanwhile
        await rx.stop()
        await _call(gw.ports["sip_tls"], tmp_path, "second")
    finally:
        assert await asyncio.to_thread(gw.stop) == 0
    await rx.start()
    gw = await asyncio.to_thread(start_daemon, data, env=env)
    try:
        await _until(lambda: rx.kinds.count("MeetingEnded") == 2, 30)
        await asyncio.sleep(1.5)  # nothing more may arrive
    finally:
        await asyncio.to_thread(gw.stop)
        await rx.stop()
    assert rx.bad_signatures == 0
    assert all(n == 1 for n in rx.ids.values()), rx.ids
    per_call = ["MeetingStarted", "ParticipantJoined", "ParticipantLeft", "MeetingEnded"]
    assert sorted(rx.kinds) == sorted(per_call * 2), rx.kinds
