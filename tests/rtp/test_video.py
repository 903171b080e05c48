"""H.264 keyframe detection, the pure video switch, and switching over real sockets."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import struct

import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from av import VideoFrame
from hypothesis import given
from hypothesis import strategies as st

from gateway.rtp.h264 import nal_types, starts_keyframe
from gateway.rtp.packets import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtpHeader,
    build_rtp,
    parse_rtcp,
)
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from gateway.rtp.video import VideoSwitcher
from tests.rtp.helpers import H264, Device, port_range

pytestmark = pytest.mark.timeout(60)


def encoded_frames(count: int, keyframes: set[int]) -> list[list[bytes]]:
    """Real H.264 RTP payloads from aiortc's encoder (PyAV/libx264)."""
    enc = H264Encoder()
    out = []
    for i in range(count):
        img = np.full((120, 160, 3), (i * 37) % 255, dtype=np.uint8)
        img[:, : (i * 7) % 160] = 255
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        payloads, _ = enc.encode(frame, force_keyframe=i in keyframes)
        out.append(payloads)
    return out


FRAMES = encoded_frames(6, {0, 4})


def test_real_encoder_output_is_classified():
    assert starts_keyframe(FRAMES[0][0]) and 7 in nal_types(FRAMES[0][0])
    assert not any(starts_keyframe(p) for p in FRAMES[1])
    assert any(starts_keyframe(p) for p in FRAMES[4])


def test_nal_forms():
    assert starts_keyframe(bytes([0x65, 0x88]))  # single NAL IDR
    assert not starts_keyframe(bytes([0x41, 0x9A]))  # single NAL non-IDR
    stap = (
        bytes([0x78])
        + struct.pack("!H", 2)
        + bytes([0x67, 0x42])
        + struct.pack("!H", 2)
        + bytes([0x68, 0x01])
    )
    assert nal_types(stap) == [7, 8] and starts_keyframe(stap)
    assert starts_keyframe(bytes([0x7C, 0x85, 0x00]))  # FU-A start, IDR
    assert not starts_keyframe(bytes([0x7C, 0x05, 0x00]))  # FU-A middle
    assert not starts_keyframe(bytes([0x7C, 0x81, 0x00]))  # FU-A start, non-IDR


@given(st.binary(max_size=64))
def test_nal_parser_never_raises(data):
    assert isinstance(starts_keyframe(data), bool)


def _pkt(seq: int, ts: int, payload: bytes, ssrc: int = 99) -> bytes:
    return build_rtp(pt=126, seq=seq, ts=ts, ssrc=ssrc, payload=payload)


KEY = bytes([0x65, 0x88])
DELTA = bytes([0x41, 0x9A])


def test_switch_waits_for_keyframe_and_keeps_stream_continuous():
    sw = VideoSwitcher()
    for pid, ssrc in (("a", 1), ("b", 2), ("c", 3)):
        sw.add(pid, ssrc, 0.0)
    assert sorted(sw.keyframe_requests()) == [
        "a",
        "b",
    ]  # a is speaker: everyone else wants a; a wants b
    out = sw.receive("a", _pkt(100, 1000, KEY), 0.0)
    assert sorted(r for r, _ in out) == ["b", "c"]
    for i in range(1, 5):
        sw.receive("a", _pkt(100 + i, 1000 + 3000 * i, DELTA), 0.033 * i)
    sw.set_speaker("b", 1.0)
    assert sw.keyframe_requests() == ["b"]
    # until b's keyframe, c keeps getting a; b's delta frames go nowhere
    assert sw.receive("b", _pkt(7000, 50, DELTA, 7), 1.01) == []
    assert [r for r, _ in sw.receive("a", _pkt(105, 16000, DELTA), 1.02)] == ["b", "c"]
    seen = {}
    for r, data in sw.receive("b", _pkt(7001, 3050, KEY, 7), 1.05):
        seen[r] = RtpHeader.parse(data)
    assert set(seen) == {"a", "c"}
    assert seen["c"].ssrc == 3 and seen["c"].seq == 106  # continues c's sequence
    assert seen["c"].timestamp > 16000
    assert sw.source_of("c") == "b" and sw.source_of("b") == "a" and sw.source_of("a") == "b"
    nxt = dict(sw.receive("b", _pkt(7002, 6050, DELTA, 7), 1.08))
    assert RtpHeader.parse(nxt["c"]).seq == 107


def test_receiver_keyframe_requests_are_rate_limited():
    sw = VideoSwitcher(min_request_s=0.5)
    sw.add("a", 1, 0.0)
    sw.add("b", 2, 0.0)
    sw.receive("a", _pkt(1, 1, KEY), 0.0)
    sw.receive("b", _pkt(1, 1, KEY), 0.0)
    sw.keyframe_requests()
    sw.receiver_wants_keyframe("b", 1.0)
    sw.receiver_wants_keyframe("b", 1.1)
    sw.receiver_wants_keyframe("b", 1.2)
    assert sw.keyframe_requests() == ["a"]
    sw.receiver_wants_keyframe("b", 1.6)
    assert sw.keyframe_requests() == ["a"]


class VideoParty:
    def __init__(self, plane: MediaPlane, name: str, fb: frozenset[str], ssrc: int) -> None:
        self.dev = Device()
        self.dev.ssrc = ssrc
        self.leg = plane.open_leg(name, MediaKind.VIDEO, Pool.SIP)
        self.leg.configure(self.dev.config(kind=MediaKind.VIDEO, codecs=(H264,), rtcp_fb=fb))

    def send_frame(self, payloads: list[bytes]) -> None:
        for i, p in enumerate(payloads):
            data = build_rtp(
                pt=126,
                seq=self.dev.seq,
                ts=self.dev.ts,
                ssrc=self.dev.ssrc,
                payload=p,
                marker=i == len(payloads) - 1,
            )
            self.dev.seq += 1
            self.dev.send(data, self.leg.local_rtp_port)
        self.dev.ts += 3000

    def received(self) -> list[RtpHeader]:
        out = []
        while True:
            try:
                data = self.dev.rtp.recv(4096)
            except BlockingIOError:
                return out
            out.append(RtpHeader.parse(data))

    def rtcp_fmts(self) -> list[int]:
        fmts = []
        while True:
            try:
                data = self.dev.rtcp.recv(4096)
            except BlockingIOError:
                return fmts
            fmts += [p.fmt for p in parse_rtcp(data) if isinstance(p, RtcpPsfbPacket)]


async def test_video_switch_over_sockets_with_fir_and_pli():
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await plane.start()
    a = VideoParty(plane, "a", frozenset({"ccm fir"}), 0xA)
    b = VideoParty(plane, "b", frozenset({"nack pli"}), 0xB)
    c = VideoParty(plane, "c", frozenset(), 0xC)
    fallback = []
    c.leg.on_keyframe_request_fallback = lambda: fallback.append(1)
    conf = plane.conference("v")
    try:
        for name, p in (("a", a), ("b", b), ("c", c)):
            conf.join(name, audio=None, video=p.leg)
        await asyncio.sleep(0.05)
        assert RTCP_PSFB_FIR in a.rtcp_fmts()  # entering the meeting: keyframe asked of a (FIR)
        a.send_frame(FRAMES[0])
        a.send_frame(FRAMES[1])
        await asyncio.sleep(0.1)
        got_c = c.received()
        assert got_c and {h.ssrc for h in got_c} == {c.leg.ssrc}
        conf.switcher.set_speaker("b", asyncio.get_running_loop().time())
        conf._ask_keyframes()
        await asyncio.sleep(0.05)
        assert RTCP_PSFB_PLI in b.rtcp_fmts()  # b advertised nack pli only
        b.send_frame(FRAMES[1])  # not a keyframe: c must still be on a
        a.send_frame(FRAMES[2])
        await asyncio.sleep(0.1)
        assert conf.switcher.source_of("c") == "a"
        b.send_frame(FRAMES[4])  # keyframe: switch
        b.send_frame(FRAMES[5])
        await asyncio.sleep(0.1)
        assert conf.switcher.source_of("c") == "b"
        got_c += c.received()
        seqs = [h.seq for h in got_c]
        assert {h.ssrc for h in got_c} == {c.leg.ssrc}
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one continuous sequence
        ts = [h.timestamp for h in got_c]
        assert all(t2 >= t1 for t1, t2 in itertools.pairwise(ts))
        assert c.leg.request_keyframe().value == "signalling" and fallback == [1]
    finally:
        await plane.close()
        for p in (a, b, c):
            p.dev.close()


async def test_participant_without_h264_stays_audio_only():
    from gateway.rtp.types import Codec

    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await plane.start()
    a = VideoParty(plane, "a", frozenset({"ccm fir"}), 0xA)
    dev = Device()
    try:
        vp8 = plane.open_leg("vp8", MediaKind.VIDEO, Pool.SIP)
        vp8.configure(
            dev.config(
                kind=MediaKind.VIDEO,
                codecs=(Codec(payload_type=100, name="VP8", clock_rate=90000),),
            )
        )
        conf = plane.conference("v2")
        conf.join("a", audio=None, video=a.leg)
        conf.join("x", audio=None, video=vp8)
        assert "a" in conf.switcher and "x" not in conf.switcher
        a.send_frame(FRAMES[0])
        await asyncio.sleep(0.05)
        with pytest.raises(BlockingIOError):
            dev.rtp.recv(4096)  # nothing forwarded to the VP8-only participant
    finally:
        await plane.close()
        a.dev.close()
        dev.close()


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.booleans(), st.booleans()), min_size=1, max_size=120
    ),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 0xFFFF), min_size=3, max_size=3),
)
def test_rewritten_streams_stay_continuous(script, seq0):
    """Whatever the switching and keyframe pattern, each receiver sees +1 sequence numbers,
    one SSRC and non-decreasing timestamps (modulo 2^32)."""
    sw = VideoSwitcher(min_request_s=0.0, rerequest_s=0.0)
    for i, pid in enumerate("abc"):
        sw.add(pid, 100 + i, 0.0)
    seq = dict(seq0)
    ts = {"a": 0xFFFF0000, "b": 5, "c": 0x7FFFFFFF}
    last: dict[str, tuple[int, int]] = {}
    now = 0.0
    for src, key, switch in script:
        now += 0.01
        if switch:
            sw.set_speaker(src, now)
        pkt = _pkt(seq[src], ts[src], KEY if key else DELTA, ssrc=ord(src))
        seq[src] = (seq[src] + 1) & 0xFFFF
        ts[src] = (ts[src] + 900) & 0xFFFFFFFF
        for rid, data in sw.receive(src, pkt, now):
            h = RtpHeader.parse(data)
            assert h.ssrc == 100 + "abc".index(rid)
            if rid in last:
                pseq, pts = last[rid]
                assert h.seq == (pseq + 1) & 0xFFFF
                assert (h.timestamp - pts) & 0xFFFFFFFF < 0x80000000
            last[rid] = (h.seq, h.timestamp)


async def test_voice_activity_drives_the_video_switch():
    """Audio levels pick the speaker; the switch asks the new speaker for a keyframe (FIR)."""
    import time

    from gateway.rtp.codecs import AudioCodec
    from tests.rtp.helpers import PCMU, tone

    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await plane.start()
    names = "abc"
    parties = {
        n: VideoParty(plane, f"v{n}", frozenset({"ccm fir"}), 0x100 + i)
        for i, n in enumerate(names)
    }
    mics = {n: Device() for n in names}
    audio = {n: plane.open_leg(f"a{n}", MediaKind.AUDIO, Pool.SIP) for n in names}
    enc = AudioCodec(PCMU)
    try:
        conf = plane.conference("vad")
        for n in names:
            audio[n].configure(mics[n].config())
            conf.join(n, audio=audio[n], video=parties[n].leg)
        conf._task.cancel()  # drive the 20 ms ticks by hand (same monotonic clock as the legs)
        conf.speaker.hold_s, conf.speaker.dwell_s = 0.1, 0.2
        parties["a"].send_frame(FRAMES[0])  # a (first to join) is on everyone's screen ...
        parties["b"].send_frame(FRAMES[0])  # ... and a sees b
        await asyncio.sleep(0.05)
        assert conf.switcher.source_of("c") == "a" and conf.switcher.source_of("a") == "b"
        for p in parties.values():
            p.rtcp_fmts()
        t = time.monotonic()

        async def talk(loud: str, frames: int) -> None:
            nonlocal t
            for k in range(frames):
                for n in names:
                    amp = 9000 if n == loud else 20
                    mics[n].send(
                        mics[n].packet(enc.encode(tone(300, 160, start=160 * k, amp=amp))),
                        audio[n].local_rtp_port,
                    )
                await asyncio.sleep(0.002)
                t += 0.02
                conf.tick(t)

        await talk("c", 40)
        assert conf.active_speaker == "c" and conf.switcher.speaker == "c"
        await asyncio.sleep(0.05)
        assert RTCP_PSFB_FIR in parties["c"].rtcp_fmts()  # keyframe asked of the new speaker
        assert conf.switcher.source_of("a") == "b"  # no switch until c's keyframe arrives
        parties["c"].send_frame(FRAMES[0])
        await asyncio.sleep(0.05)
        assert conf.switcher.source_of("a") == "c" and conf.switcher.source_of("c") == "a"
    finally:
        await plane.close()
        for d in (*mics.values(), *(p.dev for p in parties.values())):
            d.close()
