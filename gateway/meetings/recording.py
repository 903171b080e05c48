"""Meeting recordings: the mixed audio, and the switched video when the meeting has video.

Which file a recording makes is decided when it starts:
- the meeting has video (some participant negotiated H.264): ``<stamp>.mkv``, Matroska with the
  switched H.264 stream exactly as receivers get it (no transcoding: RTP is depacketized per
  RFC 6184 into access units that are muxed as they are) and the mix encoded as Opus (Matroska's
  usual audio codec, which players and ffprobe read everywhere);
- audio only: ``<stamp>.wav``, 16-bit mono PCM at 16 kHz, as before (no encoder in the loop and
  the widest player support). A camera that joins later does not turn a WAV into an MKV.

Taps: the conference hands its mix to ``write(pcm, rate)`` every 20 ms tick (``on_mix``) and the
switched stream's RTP packets to ``write_video(packet, now)`` (``on_video``). One clock orders
both: recording time 0 is the start; audio time is the count of mixed samples; video time is
the arrival time of the first keyframe plus the 90 kHz RTP timestamp advance since (the
switched stream's timestamps are continuous across speaker changes).
The MKV needs the H.264 parameter sets for its header, so it is opened at the first keyframe
(asked of the speaker when the tap starts); audio mixed before that is held and written first.
If no keyframe comes within ``wait_s``, the file is opened with audio only (a camera that is
shut stays shut). Files live under ``<recordings_dir>/<meeting_id>/``; a recording's failure
(disk full, a muxer error) ends that recording, never the meeting.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gateway import logs
from gateway.rtp.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_types
from gateway.rtp.packets import MalformedPacket, RtpHeader

log = logs.get_logger("vtcgw.recording")

RECORD_RATE = 16000  # Hz, the recordings' audio rate (the mix is 8 or 16 kHz)
VIDEO_CLOCK = 90000
CONTENT_TYPES = {".wav": "audio/wav", ".mkv": "video/matroska"}  # RFC 9559 registers video/matroska
_OPUS_FRAME = RECORD_RATE // 50  # 20 ms, a frame size libopus accepts
_SETUP = frozenset({NAL_SPS, NAL_PPS, 6, 9})  # parameter sets, SEI, access unit delimiter


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _to_rate(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
    if sample_rate != RECORD_RATE:
        idx = np.arange(int(len(pcm) * RECORD_RATE / sample_rate)) * sample_rate // RECORD_RATE
        pcm = pcm[idx]
    return pcm


def _stamp(now_wall: float | None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_wall or time.time()))


# ----- RTP -> access units (pure) ---------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AccessUnit:
    """One coded picture in Annex-B form, with its 90 kHz RTP timestamp."""

    rtp_ts: int
    data: bytes
    keyframe: bool  # carries an IDR slice
    nal_types: tuple[int, ...]


class AccessUnitAssembler:
    """RFC 6184 RTP packets (single NAL, STAP-A, FU-A) in, complete access units out.

    An access unit ends at the marker bit or when the timestamp changes. A sequence gap or a
    payload that will not depacketize spoils the access unit(s) it touches; after that only
    units carrying nothing but parameter sets (SPS/PPS sent apart from their IDR) are given out
    until the next keyframe, so the output always decodes. ``need_keyframe`` tells the caller
    to ask for one. Decode order is taken as presentation order: conversational encoders send
    no B-frames.
    """

    def __init__(self) -> None:
        from aiortc.codecs.h264 import h264_depayload  # PyAV underneath: loaded on first use

        self._depayload = h264_depayload
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._types: list[int] = []
        self._broken = False
        self._last_seq: int | None = None
        self.need_keyframe = True
        self.spoiled = 0  # access units lost to gaps or bad payloads
        self.skipped = 0  # whole access units left out while waiting for a keyframe

    def receive(self, packet: bytes) -> list[AccessUnit]:
        try:
            h = RtpHeader.parse(packet)
        except MalformedPacket:
            return []
        gap = self._last_seq is not None and h.seq != (self._last_seq + 1) & 0xFFFF
        self._last_seq = h.seq
        out: list[AccessUnit] = []
        if gap:
            self._broken = True  # the lost packet may end the unit in progress ...
        if self._ts is not None and h.timestamp != self._ts:
            out += self._finish()
            self._broken = gap  # ... or start this one
        self._ts = h.timestamp
        payload = packet[h.payload_offset : h.payload_end]
        try:
            self._parts.append(self._depayload(payload))
            self._types += nal_types(payload)
        except ValueError:
            self._broken = True
        if h.marker:
            out += self._finish()
        return out

    def _finish(self) -> list[AccessUnit]:
        ts, parts, types, broken = self._ts, self._parts, self._types, self._broken
        self._ts, self._parts, self._types, self._broken = None, [], [], False
        if ts is None or not parts:
            return []
        if broken:
            self.spoiled += 1
            self.need_keyframe = True
            return []
        key = NAL_IDR in types
        if self.need_keyframe and not key:
            if not (set(types) <= _SETUP and {NAL_SPS, NAL_PPS} & set(types)):
                self.skipped += 1
                return []  # parameter sets alone are let through: the keyframe will need them
        else:
            self.need_keyframe = False
        return [AccessUnit(rtp_ts=ts, data=b"".join(parts), keyframe=key, nal_types=tuple(types))]


def _annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer (start codes removed)."""
    out = []
    for chunk in data.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00")  # a 4-byte start code's leading zero
        if chunk:
            out.append(chunk)
    return out


# ----- writers ----------------------------------------------------------------------------
class WavRecorder:
    """Audio-only meetings: the mix as 16-bit mono PCM in a WAV file."""

    def __init__(self, root: Path, meeting_id: str, *, now_wall: float | None = None) -> None:
        self.path = root / meeting_id / f"{_stamp(now_wall)}.wav"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = RECORD_RATE
        self._wav: Any = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RECORD_RATE)
        self.samples = 0

    def write(self, pcm: np.ndarray, sample_rate: int) -> None:
        if self._wav is None:
            return
        pcm = _to_rate(pcm, sample_rate)
        try:
            self._wav.writeframes(pcm.astype("<i2").tobytes())
        except OSError as exc:
            log.error("recording failed", file=self.path.name, error=str(exc))
            self.close()
            return
        self.samples += len(pcm)

    def close(self) -> Path:
        if self._wav is not None:
            try:
                self._wav.close()
            except OSError as exc:
                log.error("recording not finished", file=self.path.name, error=str(exc))
            self._wav = None
        return self.path


class MkvRecorder:
    """Meetings with video: the switched H.264 stream (as sent) and the mix as Opus, in Matroska.

    ``now`` values are the caller's monotonic clock (the legs' arrival times).
    ``request_keyframe`` is called when packet loss spoiled the stream, so it restarts clean.
    """

    def __init__(self, root: Path, meeting_id: str, *, now: float, now_wall: float | None = None,
                 request_keyframe: Callable[[], None] | None = None, wait_s: float = 10.0) -> None:
        self.path = root / meeting_id / f"{_stamp(now_wall)}.mkv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = now
        self.wait_s = wait_s
        self.request_keyframe = request_keyframe
        self.assembler = AccessUnitAssembler()
        self.samples = 0  # audio samples taken in (at RECORD_RATE)
        self.video_frames = 0
        self.closed = False
        self._held: list[np.ndarray] = []  # audio mixed before the file could be opened
        self._held_n = 0
        self._carry = np.zeros(0, dtype=np.int16)  # audio short of a whole Opus frame
        self._container: Any = None
        self._audio: Any = None
        self._video: Any = None
        self._audio_pts = 0
        self._ts_last: int | None = None
        self._ts_ext = 0
        self._pts0 = 0
        self._last_pts: int | None = None
        self._param_sets: list[bytes] = []  # Annex-B SPS/PPS last seen, for a keyframe without

    @property
    def has_video_stream(self) -> bool:
        return self._video is not None

    def rebase(self) -> None:
        """The tap moved to a new switched stream (the conference was re-created): restart
        depacketizing at its next keyframe and re-anchor its timestamps to the clock."""
        self.assembler = AccessUnitAssembler()
        self._ts_last = None

    # ---- taps ------------------------------------------------------------------------------
    def write(self, pcm: np.ndarray, sample_rate: int) -> None:
        if self.closed:
            return
        pcm = _to_rate(pcm, sample_rate)
        self.samples += len(pcm)
        if self._container is None:
            self._held.append(pcm)
            self._held_n += len(pcm)
            if self._held_n >= self.wait_s * RECORD_RATE:
                log.warning("recording without video: no keyframe came", file=self.path.name,
                            waited_s=self.wait_s)
                self._guarded(self._open, None)
            return
        self._guarded(self._write_audio, pcm)

    def write_video(self, packet: bytes, now: float) -> None:
        if self.closed or (self._container is not None and self._video is None):
            return
        spoiled = self.assembler.spoiled
        for au in self.assembler.receive(packet):
            self._guarded(self._write_au, au, now)
        if self.assembler.spoiled != spoiled and self.request_keyframe is not None:
            self.request_keyframe()

    def close(self) -> Path:
        if self.closed:
            return self.path
        if self.samples == 0:  # stopped before the first tick: still leave a valid file
            self.write(np.zeros(_OPUS_FRAME, dtype=np.int16), RECORD_RATE)
        if self._container is None:
            self._guarded(self._open, None)
        if self._container is not None:
            self._guarded(self._finish)
        self._container = None
        self.closed = True
        return self.path

    # ---- muxing ----------------------------------------------------------------------------
    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        import av

        try:
            fn(*args)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.error("recording failed", file=self.path.name, error=str(exc))
            container, self._container = self._container, None
            self.closed = True
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError):
                    pass

    def _open(self, first: AccessUnit | None) -> None:
        import av

        template = None
        if first is not None:
            template = self._probe(first.data) or self._probe(b"".join(self._param_sets) + first.data)
            if template is None:
                return  # parameter sets not seen yet: wait for the next keyframe
        container = av.open(str(self.path), "w", format="matroska")
        try:
            if template is not None:
                self._video = container.add_stream_from_template(template.streams.video[0])
                self._video.time_base = Fraction(1, VIDEO_CLOCK)
            self._audio = container.add_stream("libopus", rate=RECORD_RATE, layout="mono")
            self._audio.bit_rate = 32000
        except BaseException:
            container.close()
            raise
        finally:
            if template is not None:
                template.close()
        self._container = container
        held, self._held, self._held_n = self._held, [], 0
        if held:
            self._write_audio(np.concatenate(held))

    @staticmethod
    def _probe(annexb: bytes) -> Any:
        """An H.264 stream description (size, avcC from SPS/PPS) read by FFmpeg from a keyframe."""
        import av

        try:
            probe = av.open(io.BytesIO(annexb), format="h264")
        except av.FFmpegError:
            return None
        s = probe.streams.video[0] if probe.streams.video else None
        if s is None or not s.codec_context.width or not s.codec_context.extradata:
            probe.close()
            return None
        return probe

    def _write_audio(self, pcm: np.ndarray) -> None:
        import av

        if self._carry.size:
            pcm = np.concatenate([self._carry, pcm])
        whole = len(pcm) - len(pcm) % _OPUS_FRAME
        self._carry = pcm[whole:].copy()
        for k in range(0, whole, _OPUS_FRAME):
            frame = av.AudioFrame.from_ndarray(pcm[k : k + _OPUS_FRAME].reshape(1, -1),
                                               format="s16", layout="mono")
            frame.sample_rate = RECORD_RATE
            frame.pts, frame.time_base = self._audio_pts, Fraction(1, RECORD_RATE)
            self._audio_pts += _OPUS_FRAME
            self._container.mux(self._audio.encode(frame))

    def _write_au(self, au: AccessUnit, now: float) -> None:
        import av

        if NAL_SPS in au.nal_types and NAL_PPS in au.nal_types:
            self._param_sets = [b"\x00\x00\x00\x01" + n for n in _annexb_nals(au.data)
                                if n[0] & 0x1F in (NAL_SPS, NAL_PPS)]
        if self._container is None:
            if not au.keyframe:
                return
            self._open(au)
            if self._container is None:
                if self.request_keyframe is not None:
                    self.request_keyframe()  # no parameter sets with it: try the next one
                return
        if self._video is None:
            return
        if self._ts_last is None:
            self._pts0 = max(0, round((now - self.t0) * VIDEO_CLOCK))
            self._ts_ext = 0
        else:
            self._ts_ext += ((au.rtp_ts - self._ts_last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        self._ts_last = au.rtp_ts
        pts = self._pts0 + self._ts_ext
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        packet = av.Packet(au.data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        packet.stream = self._video
        packet.is_keyframe = au.keyframe
        self._container.mux(packet)
        self.video_frames += 1

    def _finish(self) -> None:
        if self._carry.size:  # pad the last partial frame with silence
            self._write_audio(np.zeros(_OPUS_FRAME - self._carry.size, dtype=np.int16))
        self._container.mux(self._audio.encode(None))
        self._container.close()


def open_recorder(root: Path, meeting_id: str, *, video: bool, now: float,
                  now_wall: float | None = None,
                  request_keyframe: Callable[[], None] | None = None) -> WavRecorder | MkvRecorder:
    """The recorder for a meeting: MKV (video + audio) when it has video, else WAV."""
    if video:
        return MkvRecorder(root, meeting_id, now=now, now_wall=now_wall,
                           request_keyframe=request_keyframe)
    return WavRecorder(root, meeting_id, now_wall=now_wall)


def list_recordings(root: Path) -> list[dict[str, object]]:
    if not root.exists():
        return []
    files = sorted(p for p in root.glob("*/*") if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
    return [{"meeting_id": p.parent.name, "name": p.name, "bytes": p.stat().st_size,
             "content_type": content_type(p.name)} for p in files]


def beep(sample_rate: int, *, hz: float = 1000.0, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
