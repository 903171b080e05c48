"""Shared pieces of the probe tests: the CLI as a subprocess, an impairing UDP relay."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "probe-test-token-42"


@dataclass
class CliRun:
    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def vtcprobe(*args: str, timeout: float = 60.0) -> CliRun:
    """Run `vtcprobe ARGS` as a real process (the test's loop keeps serving the reflector)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probes.cli", *args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return CliRun(proc.returncode or 0, out.decode(), err.decode())


def vtcprobe_inproc(capsys: Any, *args: str) -> CliRun:
    """`vtcprobe ARGS` in this process (for runs that need no server from the test's loop)."""
    from probes.cli import main

    status = main(list(args))
    out, err = capsys.readouterr()
    return CliRun(status, out, err)


@dataclass
class _Direction:
    dropped: int = 0
    forwarded: int = 0
    dropped_echo: int = 0  # probe ECHO requests (kind 1) or their answers (kind 2)


class ImpairingRelay:
    """A UDP relay that impairs like `tc netem loss L% delay D J` (uniform jitter).

    Used because this machine's kernel has no sch_netem. Each direction draws, per
    packet, a loss (probability `loss`) and a delay of max(0, D + U(-J, +J)) ms, as
    netem does without a distribution table; packets are forwarded when their delay
    expires, so they reorder exactly as they would through netem. Counts per direction
    are kept so the test can compare the probe's loss with what was really dropped.
    """

    def __init__(self, upstream: tuple[str, int], *, loss: float, delay_ms: float, jitter_ms: float,
                 seed: int = 7) -> None:
        self.upstream, self.loss, self.delay_ms, self.jitter_ms = upstream, loss, delay_ms, jitter_ms
        self.rng = random.Random(seed)
        self.fwd, self.ret = _Direction(), _Direction()
        self.client: tuple[str, int] | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._handles: set[asyncio.TimerHandle] = set()

    def _delay(self) -> float:
        return max(0.0, self.delay_ms + self.rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000.0

    def _pass(self, d: _Direction, send: Any, data: bytes, addr: Any) -> None:
        if self.rng.random() < self.loss:
            d.dropped += 1
            d.dropped_echo += len(data) > 17 and data[17] in (1, 2)  # the probe block's kind byte
            return
        d.forwarded += 1
        loop = asyncio.get_running_loop()
        h: asyncio.TimerHandle

        def fire() -> None:
            self._handles.discard(h)
            send(data, addr)

        h = loop.call_later(self._delay(), fire)
        self._handles.add(h)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        relay = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                relay.client = addr
                assert relay._back is not None
                relay._pass(relay.fwd, relay._back.sendto, data, relay.upstream)

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if relay.client is not None and relay._front is not None:
                    relay._pass(relay.ret, relay._front.sendto, data, relay.client)

        self._back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
        self._front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        return self._front.get_extra_info("sockname")[1]

    def close(self) -> None:
        for h in list(self._handles):
            h.cancel()
        for t in (self._front, self._back):
            if t is not None:
                t.close()

