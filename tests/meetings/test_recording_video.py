"""Meeting recordings with video: RFC 6184 depacketizing, the switcher's monitor tap, and a real
conference (synthetic room systems over loopback sending real H.264 and tones) recorded to
Matroska, read back with PyAV (ffprobe is not installed here)."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Config
from gateway.meetings.application import MeetingsApplication
from gateway.meetings.live_api import add_live_routes
from gateway.meetings.recording import (
    AccessUnitAssembler,
    MkvRecorder,
    WavRecorder,
    content_type,
    list_recordings,
    open_recorder,
)
from gateway.meetings.store import SQLiteMeetingStore
from gateway.metrics import Metrics
from gateway.rtp.codecs import AudioCodec
from gateway.rtp.packets import RtcpPsfbPacket, build_rtp, parse_rtcp
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from gateway.rtp.video import MONITOR, VideoSwitcher
from tests.rtp.helpers import H264, PCMU, Device, goertzel_power, port_range, tone

pytestmark = pytest.mark.timeout(60)
W, H = 160, 120


def picture(level: int, noise: np.ndarray | None = None) -> av.VideoFrame:
    img = np.full((H, W, 3), level, dtype=np.uint8)
    if noise is not None:
        img ^= noise
    return av.VideoFrame.from_ndarray(img, format="rgb24")


class Camera:
    """A room system's camera: real H.264 (aiortc's encoder over PyAV/libx264), one flat grey
    level per camera so a decoded picture tells whose it was; a keyframe only when asked."""

    def __init__(self, level: int, *, noisy: bool = False) -> None:
        self.enc = H264Encoder()
        self.level = level
        self.noise = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8) if noisy else None
        self.n = 0

    def frame(self, *, keyframe: bool) -> list[bytes]:
        f = picture(self.level, self.noise)
        f.pts, f.time_base = self.n * 6000, fractions.Fraction(1, 90000)  # 15 fps
        self.n += 1
        payloads, _ = self.enc.encode(f, force_keyframe=keyframe)
        return payloads


def rtp_frames(cam: Camera, count: int, keyframes: set[int], *, seq: int = 1, ts: int = 0) -> list[bytes]:
    return [p for frame in rtp_frame_groups(cam, count, keyframes, seq=seq, ts=ts) for p in frame]


def rtp_frame_groups(cam: Camera, count: int, keyframes: set[int], *, seq: int = 1,
                     ts: int = 0) -> list[list[bytes]]:
    """``count`` frames at 15 fps as RTP packets (one list per frame)."""
    out: list[list[bytes]] = []
    for i in range(count):
        payloads = cam.frame(keyframe=i in keyframes)
        out.append([build_rtp(pt=126, seq=(seq + k + sum(map(len, out))) & 0xFFFF,
                              ts=(ts + 6000 * i) & 0xFFFFFFFF, ssrc=7, payload=p,
                              marker=k == len(payloads) - 1) for k, p in enumerate(payloads)])
    return out


def decode(aus: list[bytes]) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264", "r")
    frames = []
    for au in aus:
        frames += dec.decode(av.Packet(au))
    return frames + dec.decode(None)


# ----- depacketizing ----------------------------------------------------------------------
def test_assembler_gives_decodable_access_units_from_stap_a_and_fu_a():
    cam = Camera(90, noisy=True)
    cam.enc.target_bitrate = 3_000_000  # big frames: FU-A fragments, as well as STAP-A for SPS/PPS
    packets = rtp_frames(cam, 8, {0})
    assert {p[12] & 0x1F for p in packets} >= {24, 28}  # STAP-A (SPS+PPS first) and FU-A
    assert packets[0][12] & 0x1F == 24
    asm = AccessUnitAssembler()
    aus = [au for p in packets for au in asm.receive(p)]
    assert len(aus) == 8 and aus[0].keyframe and not any(a.keyframe for a in aus[1:])
    assert [a.rtp_ts for a in aus] == [6000 * i for i in range(8)]
    assert all(a.data.startswith(b"\x00\x00\x00\x01") for a in aus)
    frames = decode([a.data for a in aus])
    assert len(frames) == 8 and (frames[0].width, frames[0].height) == (W, H)
    # the same stream with every STAP-A split into single-NAL packets gives the same units
    single, seq = [], 1
    for pkt in packets:
        nals, payload = [pkt[12:]], pkt[12:]
        if payload[0] & 0x1F == 24:
            nals, pos = [], 1
            while pos < len(payload):
                n = struct.unpack_from("!H", payload, pos)[0]
                nals.append(payload[pos + 2 : pos + 2 + n])
                pos += 2 + n
        for i, nal in enumerate(nals):
            marker = bool(pkt[1] & 0x80) and i == len(nals) - 1
            single.append(build_rtp(pt=126, seq=seq, ts=struct.unpack_from("!I", pkt, 4)[0], ssrc=7,
                                    payload=nal, marker=marker))
            seq += 1
    asm = AccessUnitAssembler()
    assert [au.data for p in single for au in asm.receive(p)] == [a.data for a in aus]


def test_assembler_drops_a_spoiled_unit_and_waits_for_the_next_keyframe():
    cam = Camera(40)
    packets = rtp_frames(cam, 6, {0, 4})
    asm = AccessUnitAssembler()
    # a packet of frame 2 lost: frames 2 and 3 are left out, frame 4 (a keyframe) resumes
    lost = next(i for i, p in enumerate(packets) if struct.unpack_from("!I", p, 4)[0] == 12000)
    aus = [au for i, p in enumerate(packets) if i != lost for au in asm.receive(p)]
    assert [a.rtp_ts // 6000 for a in aus] == [0, 1, 4, 5]
    assert asm.spoiled >= 1 and not asm.need_keyframe
    assert len(decode([a.data for a in aus])) == 4


def test_assembler_waits_for_a_keyframe_at_start():
    packets = rtp_frames(Camera(40), 5, {3})  # (an encoder's first frame is always a keyframe)
    joined = [p for p in packets if struct.unpack_from("!I", p, 4)[0] > 0]  # tuned in at frame 1
    asm = AccessUnitAssembler()
    aus = [au for p in joined for au in asm.receive(p)]
    assert [au.rtp_ts // 6000 for au in aus] == [3, 4] and aus[0].keyframe
    assert asm.skipped == 2 and len(decode([au.data for au in aus])) == 2


def test_parameter_sets_sent_apart_from_the_idr_still_open_the_file(tmp_path: Path):
    frames = rtp_frame_groups(Camera(150, noisy=True), 4, {0})
    stap = frames[0][0]
    assert stap[12] & 0x1F == 24
    frames[0][0] = stap[:1] + bytes([stap[1] | 0x80]) + stap[2:]  # SPS+PPS end their own unit
    asm = AccessUnitAssembler()
    aus = [au for f in frames for p in f for au in asm.receive(p)]
    assert {7, 8} <= set(aus[0].nal_types) <= {6, 7, 8} and not aus[0].keyframe  # (6: x264's SEI)
    assert set(aus[1].nal_types) == {5} and aus[1].keyframe  # (FU-A start, and a second slice)
    rec = MkvRecorder(tmp_path, "m5", now=0.0)
    for k, f in enumerate(frames):
        rec.write(tone(300, 320, rate=16000, start=320 * k), 16000)
        for pkt in f:
            rec.write_video(pkt, 0.02 * k)
    with av.open(str(rec.close())) as c:
        assert len(list(c.decode(video=0))) == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), max_size=20))
def test_assembler_never_raises_on_junk(payloads):
    asm = AccessUnitAssembler()
    keyed = False
    for i, p in enumerate(payloads):
        for au in asm.receive(build_rtp(pt=126, seq=i, ts=i // 3, ssrc=1, payload=p, marker=i % 3 == 2)):
            keyed = keyed or au.keyframe
            assert keyed or set(au.nal_types) <= {6, 7, 8, 9}  # only a keyframe or its setup first
            assert au.data.startswith(b"\x00\x00\x00\x01")
    assert asm.receive(b"\x80") == []


# ----- the switcher's monitor -------------------------------------------------------------
def _pkt(seq: int, ts: int, payload: bytes) -> bytes:
    return build_rtp(pt=126, seq=seq, ts=ts, ssrc=5, payload=payload)


def test_monitor_follows_the_speaker_at_keyframes_without_becoming_one():
    key, delta = bytes([0x65, 0x88]), bytes([0x41, 0x9A])
    sw = VideoSwitcher()
    sw.add("a", 1, 0.0)
    sw.add("b", 2, 0.0)
    sw.keyframe_requests()
    sw.receive("a", _pkt(1, 100, key), 0.0)
    sw.receive("b", _pkt(1, 100, key), 0.0)
    sw.start_monitor(0.6)
    assert sw.keyframe_requests() == ["a"]  # the speaker is asked for a keyframe at once
    assert [r for r, _ in sw.receive("a", _pkt(2, 3100, delta), 0.61)] == ["b"]  # not yet
    out = dict(sw.receive("a", _pkt(3, 6100, key), 0.62))
    assert set(out) == {"b", MONITOR} and sw.source_of(MONITOR) == "a"
    seq0 = struct.unpack_from("!H", out[MONITOR], 2)[0]
    sw.set_speaker("b", 1.0)
    assert sw.speaker == "b" and len(sw) == 2
    sw.receive("b", _pkt(2, 3100, delta), 1.01)
    assert sw.source_of(MONITOR) == "a"
    out = dict(sw.receive("b", _pkt(3, 6100, key), 1.02))
    assert MONITOR in out and sw.source_of(MONITOR) == "b"
    assert struct.unpack_from("!H", out[MONITOR], 2)[0] == (seq0 + 1) & 0xFFFF  # continuous
    sw.remove("b", 1.5)
    assert sw.source_of(MONITOR) is None and sw.speaker == "a"
    sw.stop_monitor()
    assert MONITOR not in dict(sw.receive("a", _pkt(4, 9100, key), 1.6))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.booleans(), st.booleans()),
                min_size=1, max_size=80))
def test_monitor_stream_stays_continuous_and_never_changes_the_speaker(script):
    """Whatever the switching, keyframes and leaving, the monitor sees +1 sequence numbers and
    forward timestamps, only ever from the speaker (or the one it is switching away from)."""
    key, delta = bytes([0x65, 0x88]), bytes([0x41, 0x9A])
    sw, plain = VideoSwitcher(min_request_s=0, rerequest_s=0), VideoSwitcher(min_request_s=0, rerequest_s=0)
    for v in (sw, plain):
        for i, pid in enumerate("abc"):
            v.add(pid, i, 0.0)
    sw.start_monitor(0.0)
    seq, ts, last, now, prev_source = dict.fromkeys("abc", 0), dict.fromkeys("abc", 0), None, 0.0, None
    for src, is_key, switch, leave in script:
        now += 0.01
        for v in (sw, plain):
            if switch:
                v.set_speaker(src, now)
            if leave and src in v and len(v) > 1:
                v.remove(src, now)
                v.add(src, 9, now)
        assert sw.speaker == plain.speaker  # the monitor is no participant
        seq[src], ts[src] = seq[src] + 1, ts[src] + 3000
        pkt = _pkt(seq[src] & 0xFFFF, ts[src], key if is_key else delta)
        out = dict(sw.receive(src, pkt, now))
        assert set(out) - {MONITOR} == {r for r, _ in plain.receive(src, pkt, now)}  # others unchanged
        if MONITOR in out:
            s_, t_ = struct.unpack_from("!HI", out[MONITOR], 2)
            if last is not None:
                assert s_ == (last[0] + 1) & 0xFFFF and (t_ - last[1]) & 0xFFFFFFFF < 0x80000000
            last = (s_, t_)
            assert src == sw.speaker or src == prev_source
        prev_source = sw.source_of(MONITOR)


# ----- file kinds and the admin API -------------------------------------------------------
def test_audio_only_recording_is_wav_and_listed(tmp_path: Path):
    rec = open_recorder(tmp_path, "m1", video=False, now=0.0, now_wall=1_700_000_000)
    assert isinstance(rec, WavRecorder)
    rec.write(tone(440, 160), 8000)
    path = rec.close()
    assert path.read_bytes()[:4] == b"RIFF"
    assert content_type(path.name) == "audio/wav" and content_type("x.mkv") == "video/matroska"
    assert list_recordings(tmp_path) == [{"meeting_id": "m1", "name": path.name,
                                          "bytes": path.stat().st_size, "content_type": "audio/wav"}]


def test_video_meeting_without_a_keyframe_still_records_its_audio(tmp_path: Path):
    rec = open_recorder(tmp_path, "m2", video=True, now=0.0)
    assert isinstance(rec, MkvRecorder)
    rec.wait_s = 0.2
    for k in range(25):
        rec.write(tone(700, 320, rate=16000, start=320 * k), 16000)
    path = rec.close()
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio"]
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert goertzel_power(pcm, 700, 48000) > 0.5


def test_mkv_recorder_keeps_time_across_loss_and_a_new_stream(tmp_path: Path):
    """Loss asks for a keyframe; a re-created conference (new seq/timestamps) is re-anchored."""
    asked: list[int] = []
    rec = MkvRecorder(tmp_path, "m4", now=100.0, request_keyframe=lambda: asked.append(1))
    cam = Camera(120)
    first = rtp_frame_groups(cam, 10, {0, 6}, seq=65530, ts=0xFFFFFFFF - 20000)  # both wrap
    del first[3][0]  # a lost packet
    second = rtp_frame_groups(cam, 10, {0}, seq=5000, ts=123)
    for k in range(100):  # 2 s of mix; a frame every 4th tick (12.5 fps)
        rec.write(tone(500, 320, rate=16000, start=320 * k), 16000)
        t = 100.0 + 0.02 * k
        if k == 50:
            rec.rebase()  # the conference was re-created: a new switched stream
        frames, n = (first, k // 4) if k < 50 else (second, (k - 50) // 4)
        if k % 4 == 0 and n < 10:
            for pkt in frames[n]:
                rec.write_video(pkt, t)
    assert asked  # the lost packet spoiled a frame: a keyframe was asked for
    path = rec.close()
    with av.open(str(path)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert all(t2 > t1 for t1, t2 in itertools.pairwise(times))
    # frames 0-2 and 6-9 of the first stream (3-5 wait for the keyframe), all of the second,
    # each at its own 15 fps spacing from the arrival of its first keyframe
    assert len(times) == 3 + 4 + 10, times
    assert times[0] == 0.0 and abs(times[3] - 6 / 15) < 0.002
    assert abs(times[7] - 1.04) < 0.002 and abs(times[-1] - (1.04 + 9 / 15)) < 0.002  # from tick 52


async def test_recordings_routes_list_and_serve_mkv_with_its_type(tmp_path: Path):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    (tmp_path / "m3").mkdir()
    (tmp_path / "m3" / "20260101T000000Z.mkv").write_bytes(b"\x1a\x45\xdf\xa3rest")
    (tmp_path / "m3" / "notes.txt").write_text("not a recording")

    class Meetings:  # only what the recordings routes read
        control = None
        config = type("C", (), {"path": staticmethod(lambda _key: tmp_path)})()

    app = web.Application()
    add_live_routes(app, Meetings())  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        listed = await (await client.get("/api/v1/recordings")).json()
        assert [r["name"] for r in listed["recordings"]] == ["20260101T000000Z.mkv"]
        resp = await client.get("/api/v1/recordings/m3/20260101T000000Z.mkv")
        assert resp.status == 200 and resp.headers["Content-Type"] == "video/matroska"
        assert (await resp.read())[:4] == b"\x1a\x45\xdf\xa3"  # the EBML magic
        assert (await client.get("/api/v1/recordings/m3/notes.txt")).status == 400


# ----- a real conference recorded ---------------------------------------------------------
class RoomSystem:
    """Audio (PCMU tone) and video (H.264, keyframes only on FIR) legs of one synthetic device."""

    def __init__(self, plane: MediaPlane, name: str, *, hz: float, level: int, ssrc: int) -> None:
        self.mic, self.cam_dev = Device(), Device()
        self.cam_dev.ssrc = ssrc
        self.audio = plane.open_leg(f"{name}-a", MediaKind.AUDIO, Pool.SIP)
        self.audio.configure(self.mic.config())
        self.video = plane.open_leg(f"{name}-v", MediaKind.VIDEO, Pool.SIP)
        self.video.configure(self.cam_dev.config(kind=MediaKind.VIDEO, codecs=(H264,),
                                                 rtcp_fb=frozenset({"ccm fir"})))
        self.hz, self.camera, self.enc = hz, Camera(level), AudioCodec(PCMU)
        self.loud, self.k, self.firs = False, 0, 0

    def fir_pending(self) -> bool:
        got = False
        while True:
            try:
                data = self.cam_dev.rtcp.recv(4096)
            except BlockingIOError:
                return got
            if any(isinstance(p, RtcpPsfbPacket) for p in parse_rtcp(data)):
                self.firs += 1
                got = True

    def send_audio(self) -> None:
        pcm = tone(self.hz, 160, start=160 * self.k, amp=9000 if self.loud else 30)
        self.k += 1
        self.mic.send(self.mic.packet(self.enc.encode(pcm)), self.audio.local_rtp_port)

    def send_video(self, *, keyframe: bool = False) -> None:
        payloads = self.camera.frame(keyframe=keyframe or self.fir_pending())
        d = self.cam_dev
        for i, p in enumerate(payloads):
            d.send(build_rtp(pt=126, seq=d.seq, ts=d.ts, ssrc=d.ssrc, payload=p,
                             marker=i == len(payloads) - 1), self.video.local_rtp_port)
            d.seq = (d.seq + 1) & 0xFFFF
        d.ts = (d.ts + 6000) & 0xFFFFFFFF

    def close(self) -> None:
        self.mic.close()
        self.cam_dev.close()


async def run_devices(rooms: list[RoomSystem], seconds: float) -> None:
    """20 ms audio and 15 fps video from every room, on a drift-free schedule."""
    start, k = time.monotonic(), 0
    while k * 0.02 < seconds:
        for r in rooms:
            r.send_audio()
            if k % 3 == 0:
                r.send_video()
        k += 1
        await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))


async def test_conference_recording_has_switched_h264_and_the_mixed_audio(tmp_path: Path):
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await plane.start()
    a = RoomSystem(plane, "a", hz=440, level=60, ssrc=0xA)
    b = RoomSystem(plane, "b", hz=1000, level=200, ssrc=0xB)
    app = MeetingsApplication(config=Config(data_dir=tmp_path), store=SQLiteMeetingStore(tmp_path / "m.db"),
                              media=plane, metrics=Metrics())
    try:
        conf = plane.conference("meeting:rec")
        conf.speaker.hold_s, conf.speaker.dwell_s = 0.2, 0.3
        for name, r in (("a", a), ("b", b)):
            conf.join(name, r.audio, r.video)
        a.send_video(keyframe=True)  # the meeting is under way before the recording starts
        b.send_video(keyframe=True)
        a.loud = True
        await run_devices([a, b], 0.6)
        assert conf.has_video and conf.active_speaker == "a"
        a.fir_pending()
        a.firs = 0

        t_start = time.monotonic()
        app._recording("rec", True)  # what *2 and the admin API's recording/start do
        rec = app.recorders["rec"]
        assert isinstance(rec, MkvRecorder)
        await run_devices([a, b], 1.5)
        assert a.firs >= 1  # starting the recording asked the speaker for a keyframe
        a.loud, b.loud = False, True  # b takes the floor: the recording follows the switch
        await run_devices([a, b], 1.5)
        assert conf.active_speaker == "b" and conf.switcher.source_of(MONITOR) == "b"
        app._recording("rec", False)
        elapsed = time.monotonic() - t_start
        assert conf.on_video is None and not conf.switcher.monitoring
        path = rec.path
        assert list_recordings(tmp_path / "recordings") == [{
            "meeting_id": "rec", "name": path.name, "bytes": path.stat().st_size,
            "content_type": "video/matroska"}]
    finally:
        await plane.close()
        app.store.close()
        a.close()
        b.close()

    assert path.suffix == ".mkv" and rec.video_frames > 0
    with av.open(str(path)) as c:
        kinds = {s.type: s for s in c.streams}
        assert set(kinds) == {"video", "audio"}
        assert kinds["video"].codec_context.name == "h264" and kinds["audio"].codec_context.name == "opus"
        assert abs(c.duration / 1e6 - elapsed) < 0.5, (c.duration, elapsed)
        packets = [p for p in c.demux(kinds["video"]) if p.size]
    first_video_s = float(packets[0].pts * packets[0].time_base)
    assert packets[0].is_keyframe and first_video_s < 0.5  # starts decodable, near the start
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == len(packets) >= 0.8 * 15 * (elapsed - first_video_s)
    assert (frames[0].width, frames[0].height) == (W, H)
    greys = [float(f.to_ndarray(format="gray").mean()) for f in frames]
    times = [float(f.pts * f.time_base) for f in frames]
    assert all(t2 > t1 for t1, t2 in itertools.pairwise(times))
    first_b = next(i for i, g in enumerate(greys) if g > 130)  # b's camera is the bright one
    assert all(g < 130 for g in greys[:first_b]) and all(g > 130 for g in greys[first_b:])
    assert 1.3 < times[first_b] < elapsed  # after b took the floor, not before

    with av.open(str(path)) as c:
        audio = [f for f in c.decode(audio=0)]
    rate = audio[0].sample_rate
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in audio])
    assert abs(len(pcm) / rate - elapsed) < 0.5
    early, late = pcm[int(0.5 * rate) : int(1.3 * rate)], pcm[-int(1.0 * rate) :]
    assert goertzel_power(early, 440, rate) > 0.5, goertzel_power(early, 440, rate)
    assert goertzel_power(late, 1000, rate) > 0.5, goertzel_power(late, 1000, rate)
