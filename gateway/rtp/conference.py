"""One meeting's media: the asyncio adapter around the mixer, speaker detector and video switch.

The decisions live in pure objects (:class:`~gateway.rtp.mixer.AudioMixer`,
:class:`~gateway.rtp.speaker.SpeakerDetector`, :class:`~gateway.rtp.video.VideoSwitcher`);
:meth:`Conference.tick` joins them for one 20 ms step with ``now`` passed in, and the only
asyncio here is the task that calls it on a drift-free 20 ms schedule and the legs' sinks.
Recording taps: ``on_mix`` gets the mix every tick; :meth:`Conference.set_video_tap` gets the
switched video (the speaker's stream as receivers see it) through the switcher's monitor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.rtp.codecs import UnsupportedCodec, audio_codec_supported
from gateway.rtp.mixer import AudioMixer, PlayHandle
from gateway.rtp.packets import MalformedPacket, RtpHeader
from gateway.rtp.speaker import SpeakerDetector
from gateway.rtp.ticker import run_ticks
from gateway.rtp.types import Codec, LegConfig
from gateway.rtp.video import MONITOR, VideoSwitcher

if TYPE_CHECKING:
    from gateway.rtp.plane import MediaPlane, RtpLeg

log = structlog.get_logger(__name__)


def h264_codec(cfg: LegConfig | None) -> Codec | None:
    if cfg is None:
        return None
    return next((c for c in cfg.codecs if c.name.upper() == "H264"), None)


def mix_codec(cfg: LegConfig | None) -> Codec | None:
    if cfg is None:
        return None
    return next((c for c in cfg.codecs if audio_codec_supported(c)), None)


@dataclass(slots=True)
class _Participant:
    pid: str
    audio: RtpLeg | None
    video: RtpLeg | None
    audio_cfg: LegConfig | None = None
    video_cfg: LegConfig | None = None
    lobby: bool = False
    muted: bool = False


class Conference:
    def __init__(self, plane: MediaPlane | None, key: str, *, max_talkers: int = 4) -> None:
        self.plane = plane
        self.key = key
        self.mixer = AudioMixer(max_talkers=max_talkers)
        self.speaker = SpeakerDetector()
        self.switcher = VideoSwitcher()
        self.on_mix: Callable[[np.ndarray, int], None] | None = None
        # the switched video as receivers see it: (rewritten RTP packet, arrival time)
        self.on_video: Callable[[bytes, float], None] | None = None
        self._parts: dict[str, _Participant] = {}
        self._task: asyncio.Task[None] | None = None
        self._fast = False  # audio carried by the plane's shared MixEngine, not our own tick
        self.tick_overruns = 0
        self.ticks = 0

    # ----- membership ----------------------------------------------------------------
    def join(self, participant_id: str, audio: RtpLeg | None, video: RtpLeg | None) -> None:
        if participant_id in self._parts:
            self.leave(participant_id)
        p = _Participant(pid=participant_id, audio=audio, video=video)
        self._parts[participant_id] = p
        for leg in (audio, video):
            if leg is not None and leg.relay_peer is not None:
                leg.plane.unrelay(leg)  # a relayed call moving into the meeting
        if audio is not None:
            audio.media_sink = self._audio_sink(participant_id)
        if video is not None:
            video.media_sink = self._video_sink(participant_id)
            video.on_keyframe_requested = self._keyframe_sink(participant_id)
        self._sync(p, time.monotonic())
        self._schedule()

    def leave(self, participant_id: str) -> None:
        p = self._parts.pop(participant_id, None)
        if p is None:
            return
        for leg in (p.audio, p.video):
            if leg is not None:
                leg.media_sink = None
                leg.on_keyframe_requested = None
        self.mixer.remove(participant_id)
        self.switcher.remove(participant_id, time.monotonic())
        self.speaker.forget(participant_id)
        if not self._parts:
            self._stop_fast()
            if self._task is not None:
                self._task.cancel()
                self._task = None
            if self.plane is not None:
                self.plane._conference_empty(self.key)
        else:
            self._schedule()

    async def aclose(self) -> None:
        for pid in list(self._parts):
            self.leave(pid)
        self._stop_fast()
        if self._task is not None:
            self._task.cancel()

    # ----- which tick carries the audio ------------------------------------------------
    def _fast_eligible(self) -> bool:
        """The shared engine carries G.711 audio-only meetings without SRTP; any video,
        video tap, wideband codec or SRTP leg keeps the meeting on its own tick."""
        if self.on_video is not None or len(self.switcher):
            return False
        for p in self._parts.values():
            if p.video is not None:
                return False
            leg = p.audio
            if leg is None or leg.config is None:
                continue
            if leg._srtp is not None:
                return False
            codec = mix_codec(leg.config)
            if codec is not None and (
                codec.name.upper() not in ("PCMU", "PCMA") or codec.clock_rate != 8000
            ):
                return False
        return True

    def _schedule(self) -> None:
        """(Re)decide between the shared engine and our own 20 ms task."""
        if self.plane is None or not self._parts:
            return
        engine = self.plane.mix_engine
        if engine is not None and self._fast_eligible():
            if self._task is not None:
                self._task.cancel()
                self._task = None
            self._fast = True
            engine.attach(self)
            return
        self._stop_fast()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"conf-{self.key}"
            )

    def _stop_fast(self) -> None:
        if self._fast:
            self._fast = False
            engine = self.plane.mix_engine if self.plane is not None else None
            if engine is not None:
                engine.detach(self)

    def _engine_changed(self) -> None:
        if self._fast and self.plane is not None and self.plane.mix_engine is not None:
            self.plane.mix_engine.changed()

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def set_muted(self, participant_id: str, muted: bool) -> None:
        p = self._parts.get(participant_id)
        if p is not None:
            p.muted = muted
            self.mixer.set_muted(participant_id, muted)
            self._engine_changed()

    def set_lobby(self, participant_id: str, lobby: bool) -> None:
        p = self._parts.get(participant_id)
        if p is not None:
            p.lobby = lobby
            self.mixer.set_lobby(participant_id, lobby)
            self._engine_changed()
            if not lobby and p.video is not None:
                self.switcher.receiver_wants_keyframe(participant_id, time.monotonic())

    def play(
        self, participant_id: str, pcm: np.ndarray, sample_rate: int, loop: bool = False
    ) -> PlayHandle:
        h = self.mixer.play(participant_id, pcm, sample_rate, loop)
        self._engine_changed()
        return h

    def play_all(self, pcm: np.ndarray, sample_rate: int, loop: bool = False) -> PlayHandle:
        h = self.mixer.play_all(pcm, sample_rate, loop)
        self._engine_changed()
        return h

    def request_keyframe(self, participant_id: str) -> None:
        p = self._parts.get(participant_id)
        if p is not None and p.video is not None:
            p.video.request_keyframe()

    @property
    def active_speaker(self) -> str | None:
        return self.speaker.current

    @property
    def has_video(self) -> bool:
        """Some participant negotiated H.264, so there is a switched stream to tap."""
        return len(self.switcher) > 0

    def set_video_tap(self, tap: Callable[[bytes, float], None] | None) -> None:
        """Tap the switched stream (the speaker's, rewritten); a keyframe is asked at once."""
        self.on_video = tap
        self._schedule()
        if tap is None:
            self.switcher.stop_monitor()
            return
        self.switcher.start_monitor(time.monotonic())
        self._ask_keyframes()

    def request_tap_keyframe(self) -> None:
        """The tap lost packets: ask its current source for a keyframe (rate-limited)."""
        self.switcher.receiver_wants_keyframe(MONITOR, time.monotonic())
        self._ask_keyframes()

    # ----- sinks (called from the legs' readers) --------------------------------------
    def _audio_sink(self, pid: str) -> Callable[[RtpLeg, bytes, int], None]:
        mixer = self.mixer

        def sink(_leg: RtpLeg, data: bytes, arrival_ns: int) -> None:
            try:
                h = RtpHeader.parse(data)
            except MalformedPacket:
                return
            mixer.receive(
                pid, h.seq, h.timestamp, data[h.payload_offset : h.payload_end], arrival_ns / 1e9
            )

        return sink

    def _video_sink(self, pid: str) -> Callable[[RtpLeg, bytes, int], None]:
        def sink(_leg: RtpLeg, data: bytes, arrival_ns: int) -> None:
            src = self._parts.get(pid)
            if src is None or src.lobby:
                return
            for rid, out in self.switcher.receive(pid, data, arrival_ns / 1e9):
                if rid == MONITOR:
                    if self.on_video is not None:
                        self.on_video(out, arrival_ns / 1e9)
                    continue
                r = self._parts.get(rid)
                if r is not None and r.video is not None and not r.lobby:
                    r.video.send_forwarded(out)
            self._ask_keyframes()

        return sink

    def _keyframe_sink(self, pid: str) -> Callable[[RtpLeg], None]:
        def sink(_leg: RtpLeg) -> None:
            self.switcher.receiver_wants_keyframe(pid, time.monotonic())
            self._ask_keyframes()

        return sink

    def _ask_keyframes(self) -> None:
        for src in self.switcher.keyframe_requests():
            p = self._parts.get(src)
            if p is not None and p.video is not None:
                p.video.request_keyframe()

    # ----- the tick ------------------------------------------------------------------
    def _sync(self, p: _Participant, now: float) -> None:
        """Follow (re)configuration of a participant's legs (codec change, late configure)."""
        if p.audio is not None and p.audio.config is not p.audio_cfg:
            p.audio_cfg = p.audio.config
            codec = mix_codec(p.audio_cfg)
            if codec is None:
                if p.audio_cfg is not None:
                    log.warning("conference.audio_codec_unsupported", meeting=self.key, pid=p.pid)
                self.mixer.remove(p.pid)
            else:
                try:
                    self.mixer.add(p.pid, codec)
                    self.mixer.set_muted(p.pid, p.muted)
                    self.mixer.set_lobby(p.pid, p.lobby)
                except UnsupportedCodec:
                    self.mixer.remove(p.pid)
        if p.video is not None and p.video.config is not p.video_cfg:
            p.video_cfg = p.video.config
            if h264_codec(p.video_cfg) is not None:
                if p.pid not in self.switcher:
                    self.switcher.add(p.pid, p.video.ssrc, now)
            else:
                if p.video_cfg is not None:
                    log.info(
                        "conference.audio_only",
                        meeting=self.key,
                        pid=p.pid,
                        reason="no H.264 negotiated",
                    )
                self.switcher.remove(p.pid, now)

    def tick(self, now: float) -> None:
        """One 20 ms step: mix, send, pick the speaker, drive the video switch."""
        self.ticks += 1
        for p in self._parts.values():
            self._sync(p, now)
        res = self.mixer.tick(now)
        for f in res.frames:
            p = self._parts.get(f.pid)
            if p is not None and p.audio is not None:
                p.audio.send_audio(
                    pt=f.pt, payload=f.payload, ts_offset=f.ts_offset, marker=f.marker
                )
        if self.on_mix is not None:
            self.on_mix(res.mix, res.rate)
        if self.speaker.update(res.levels, now) and self.speaker.current is not None:
            self.switcher.set_speaker(self.speaker.current, now)
        self.switcher.tick(now)
        self._ask_keyframes()

    async def _run(self) -> None:
        await run_ticks(self.tick, overrun=self._overrun, failed=self._tick_failed,
                        observe=lambda: self.plane.on_tick if self.plane is not None else None)

    def _overrun(self) -> None:
        self.tick_overruns += 1

    def _tick_failed(self) -> None:
        log.exception("conference.tick_failed", meeting=self.key)
