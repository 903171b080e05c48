"""The shared mix engine over real loopback sockets: a G.711 meeting on the fast path mixes,
still delivers DTMF, still measures MOS, feeds the tick histogram, and leaves the engine when
a participant needs the per-meeting path (video)."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from gateway.rtp.packets import TelephoneEvent
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from tests.rtp.helpers import H264, Device, port_range
from tests.rtp.test_conference import TONES, Party, assert_hears_others, run_senders

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def plane():
    p = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def _until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_fast_path_mixes_reports_quality_and_ticks(plane):
    ticks: list[tuple[float, float]] = []
    plane.on_tick = lambda d, late: ticks.append((d, late))
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("fast1")
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        engine = plane.mix_engine
        assert engine is not None and conf._fast and conf._task is None
        await run_senders(parties, 60)
        for p in parties:
            assert_hears_others(p, parties)
        assert engine.ticks >= 40 and len(ticks) >= 40
        assert all(d >= 0 and late >= 0 for d, late in ticks)
        assert conf.active_speaker in TONES
        for p in parties:
            st = p.leg.stats()
            assert st.cust2vc.rtp_packets >= 55  # the engine's rows reach the session
            assert st.vc2cust.rtp_packets >= 40
            assert st.mos is not None and st.mos > 4.0
        # received RTP: marker on the first packet only, consecutive sequence numbers
        seqs = sorted(parties[0].received)
        assert seqs[-1] - seqs[0] == len(seqs) - 1
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()
    assert "fast1" not in plane.conferences and not engine.conferences


async def test_dtmf_and_latching_still_work_on_the_fast_path(plane):
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("fast2")
    digits: list[tuple[str, bool]] = []
    parties[0].leg.on_dtmf = lambda d, suspect: digits.append((d, suspect))
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        assert conf._fast
        await run_senders(parties, 15)  # the first packet latches through the Python path
        a = parties[0]
        assert a.leg.session.latched_rtp == a.dev.rtp_addr
        for event, ts in ((5, 90000), (11, 98000)):
            for dur, end in ((160, False), (320, False), (480, True), (480, True)):
                a.dev.ts = ts
                a.dev.send(
                    a.dev.packet(
                        bytes(TelephoneEvent(event=event, end=end, volume=10, duration=dur)),
                        pt=101,
                        step=0,
                    ),
                    a.leg.local_rtp_port,
                )
        await _until(lambda: len(digits) == 2)
        # no loss came before them: the engine's media keeps the loss-run watch current
        assert digits == [("5", False), ("#", False)]
        # a stray source cannot inject audio into the meeting
        intruder = Device()
        try:
            for _ in range(5):
                intruder.send(intruder.packet(b"\x00" * 160), a.leg.local_rtp_port)
            await _until(lambda: a.leg.session.stray_dropped >= 5)
        finally:
            intruder.close()
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()


async def test_video_participant_moves_the_meeting_to_its_own_tick(plane):
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("fast3")
    vdev = Device()
    vleg = plane.open_leg("call-v", MediaKind.VIDEO, Pool.SIP)
    vleg.configure(vdev.config(kind=MediaKind.VIDEO, codecs=(H264,)))
    try:
        for p in parties[:2]:
            conf.join(p.name, audio=p.leg, video=None)
        assert conf._fast
        await run_senders(parties[:2], 10)
        conf.join(parties[2].name, audio=parties[2].leg, video=vleg)
        assert not conf._fast and conf._task is not None
        assert not plane.mix_engine.conferences
        for p in parties:
            p.received.clear()
        await run_senders(parties, 50)
        for p in parties:
            assert_hears_others(p, parties)
        # RTP timestamps carry on across the hand-over (no jump back)
        a = parties[0]
        assert np.all(np.diff(sorted(a.received)) == 1)
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()
        vdev.close()


async def test_a_leg_we_only_send_to_is_not_mixed(plane):
    """Re-configured to sendonly (device on hold): its audio leaves the mix, it still hears."""
    from gateway.rtp.types import Direction

    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference("fast4")
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        await run_senders(parties, 10)
        c = parties[2]
        c.leg.configure(c.dev.config(direction=Direction.SENDONLY))
        for p in parties:
            p.received.clear()
        await run_senders(parties, 50)
        assert conf._fast
        for p in parties[:2]:
            assert_hears_others(p, parties, exclude=("c",))
        assert_hears_others(c, parties)
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()


@contextlib.asynccontextmanager
async def _running_meeting(plane, key: str):
    """The three tone parties in one fast-path meeting, media flowing; left and closed after."""
    parties = [Party(plane, n) for n in TONES]
    conf = plane.conference(key)
    try:
        for p in parties:
            conf.join(p.name, audio=p.leg, video=None)
        await run_senders(parties, 10)
        yield parties, conf, plane.mix_engine
    finally:
        for p in parties:
            conf.leave(p.name)
            p.dev.close()


async def test_a_closed_leg_is_never_read_again_and_leaves_on_the_next_tick(plane):
    """Closing a leg takes its fd out of the engine at once (a closed fd number can be reused
    by the next socket); the slot is released on the next tick, the others carry on."""
    async with _running_meeting(plane, "fast5") as (parties, conf, engine):
        c = parties[2]
        slot = engine._by_leg[c.leg.id]
        c.leg.close()
        assert engine.a.fds[slot.idx] == -1 and engine._send_fd[slot.idx] == -1  # before any tick
        ticks = engine.ticks
        await _until(lambda: c.leg.id not in engine._by_leg, 2.0)
        assert engine.ticks - ticks <= 2
        conf.leave("c")
        for p in parties[:2]:
            p.received.clear()
        await run_senders(parties[:2], 40)
        for p in parties[:2]:
            assert_hears_others(p, parties[:2])


async def test_a_reconfigured_leg_is_looked_at_on_the_next_tick(plane):
    """A re-INVITE (here: the device goes on hold) reaches the engine through leg_changed,
    not after the once-a-second safety sweep."""
    from gateway.rtp.mixengine import CHECK_TICKS
    from gateway.rtp.types import Direction

    async with _running_meeting(plane, "fast6") as (parties, _conf, engine):
        c = parties[2]
        slot = engine._by_leg[c.leg.id]
        assert engine.a.expect[slot.idx].any()  # latched: its media is taken on the fast path
        ticks = engine.ticks
        c.leg.configure(c.dev.config(direction=Direction.SENDONLY))
        await _until(lambda: not engine.a.expect[slot.idx].any(), 2.0)
        assert engine.ticks - ticks <= 2 < CHECK_TICKS
