"""Three synthetic room systems in one conference over real loopback sockets.

Each sends a different PCMU tone; each must hear the other two and not itself.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from gateway.rtp.codecs import AudioCodec
from gateway.rtp.packets import RtpHeader
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from tests.rtp.helpers import PCMU, Device, goertzel_power, port_range, tone

pytestmark = pytest.mark.timeout(60)

TONES = {"a": 400.0, "b": 700.0, "c": 1100.0}


@pytest.fixture
async def plane():
    p = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await p.start()
    try:
        yield p
    finally:
        await p.close()


class Party:
    def __init__(self, plane: MediaPlane, name: str) -> None:
        self.name = name
        self.freq = TONES[name]
        self.dev = Device()
        self.dev.ssrc = random.getrandbits(32)
        self.leg = plane.open_leg(f"call-{name}", MediaKind.AUDIO, Pool.SIP)
        self.leg.configure(self.dev.config())
        self.codec = AudioCodec(PCMU)
        self.received: dict[int, bytes] = {}
        self.sent = 0

    def frame(self, k: int) -> bytes:
        return self.codec.encode(tone(self.freq, 160, start=160 * k))

    def drain(self) -> None:
        while True:
            try:
                data = self.dev.rtp.recv(2048)
            except BlockingIOError:
                return
            h = RtpHeader.parse(data)
            self.received[h.seq] = h.payload(data)

    def heard(self, last_frames: int = 40) -> np.ndarray:
        seqs = sorted(self.received)[-last_frames:]
        return np.concatenate([self.codec.decode(self.received[s]) for s in seqs])


async def run_senders(parties, frames: int, *, impair=None) -> None:
    """Send ``frames`` 20 ms frames from every party in real time; collect what arrives."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    held: list[tuple[Party, bytes]] = []
    for k in range(frames):
        for p in parties:
            pkt = p.dev.packet(p.frame(k))
            out = impair(k, pkt, held, p) if impair else [pkt]
            for data in out:
                p.dev.send(data, p.leg.local_rtp_port)
            p.drain()
        await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))
    await asyncio.sleep(0.1)
    for p in parties:
        p.drain()


def assert_hears_others(p: Party, parties, exclude=()) -> None:
    x = p.heard()
    for q in parties:
        power = goertzel_power(x, q.freq)
        if q is p or q.name in exclude:
            assert power < 0.02, f"{p.name} hears {q.name} ({power:.3f})"
        else:
            assert power > 0.1, f"{p.name} does not hear {q.name} ({power:.3f})"


async def test_three_party_mix_minus_and_mute(plane):
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("m1")
    taps = []
    conf.on_mix = lambda pcm, rate: taps.append((len(pcm), rate))
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        await run_senders(parties, 60)
        for p in parties:
            assert_hears_others(p, parties)
        assert taps and taps[-1] == (160, 8000)
        assert conf.active_speaker in TONES
        conf.set_muted("a", True)
        for p in parties:
            p.received.clear()
        await run_senders(parties, 50)
        for p in parties[1:]:
            assert_hears_others(p, parties, exclude=("a",))
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()
    assert "m1" not in plane.conferences


async def test_mix_survives_loss_reorder_duplication(plane):
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("m2")
    rng = random.Random(7)

    def impair(k, pkt, held, p):
        r = rng.random()
        if r < 0.05:
            return []  # loss
        if r < 0.10:
            return [pkt, pkt]  # duplicate
        if r < 0.15:
            held.append((p, pkt))  # reorder: send after the next one
            return []
        out = [pkt] + [h for q, h in held if q is p]
        held[:] = [(q, h) for q, h in held if q is not p]
        return out

    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        await run_senders(parties, 70, impair=impair)
        for p in parties:
            assert_hears_others(p, parties)
        jb = conf.mixer.jitter_buffer("a")
        assert jb is not None and (jb.duplicates + jb.late + jb.lost) > 0
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()


async def test_lobby_hears_only_its_prompt(plane):
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("m3")
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        conf.set_lobby("c", True)
        conf.play("c", tone(1500, 16000), 8000, loop=True)
        await run_senders(parties, 50)
        c = parties[2]
        x = c.heard()
        assert goertzel_power(x, 1500) > 0.5
        assert goertzel_power(x, 400) < 0.02 and goertzel_power(x, 700) < 0.02
        # the others do not hear the lobby participant
        assert_hears_others(parties[0], parties, exclude=("c",))
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()
