"""The meetings layer's asyncio adapter: the :class:`CallApplication` the daemon runs.

It feeds calls, digits and the clock into :class:`MeetingControl` and carries out
the actions that come back: prompts and conferences through the media plane,
hang-ups through the signalling adapter's :class:`CallControl`, recordings, CDRs,
webhook events and metrics. No meeting rules live here.

A call in the voice menu or the lobby sits alone in a private conference
(``menu:<call_id>``) so prompts travel the same media path as meeting audio.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from gateway import logs
from gateway.calls import Admission, CallControl, DigitSource, IncomingCall
from gateway.meetings import prompts
from gateway.meetings.actions import (
    Action,
    EnterMeeting,
    Hangup,
    MeetingEvent,
    Play,
    SetMuted,
    SetRecording,
    VerifyPasscode,
)
from gateway.meetings.cdr import CallRecord, CdrWriter
from gateway.meetings.control import MeetingControl, PState
from gateway.meetings.events import Outbox, envelope
from gateway.meetings.guard import AttemptGuard
from gateway.meetings.quality_feed import QualityFeed
from gateway.meetings.recording import MkvRecorder, WavRecorder, beep, open_recorder
from gateway.rtp.types import MediaKind

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.config import Config
    from gateway.meetings.store import MeetingStore
    from gateway.metrics import Metrics
    from gateway.rtp.conference import Conference
    from gateway.rtp.plane import MediaPlane, RtpLeg

log = logs.get_logger("vtcgw.meetings")
PROMPT_GAP = np.zeros(1600, dtype=np.int16)  # 100 ms at 16 kHz between queued prompts
PROMPT_RATE = 16000
HANGUP_GRACE_S = 0.4


@functools.lru_cache(maxsize=64)
def _prompt_sequence(names: tuple[str, ...]) -> np.ndarray:
    """Prompts one after another with a gap, read-only and shared: the same sequence (the
    welcome, the menu) is one array for every call, so the mixer converts it once."""
    pcm = np.concatenate([part for n in names for part in (prompts.load(n, PROMPT_RATE), PROMPT_GAP)])
    pcm.setflags(write=False)
    return pcm


@dataclass(slots=True, kw_only=True)
class LiveCall:
    call: IncomingCall
    control: CallControl
    start_wall: float
    answer_wall: float
    conference_key: str
    prompt: Any = None  # PlayHandle of the prompt playing now
    hangup_handle: asyncio.TimerHandle | None = None
    meeting_id: str | None = None
    end_reason: str = "hangup"
    quality_timer: asyncio.TimerHandle | None = None
    # the legs as they were at connect: signalling may drop its list before call_ended
    legs: tuple[RtpLeg, ...] = ()

    def leg(self, kind: MediaKind) -> RtpLeg | None:
        return next((leg for leg in self.legs if leg.kind is kind), None)


class MeetingsApplication:
    def __init__(self, *, config: Config, store: MeetingStore, media: MediaPlane, metrics: Metrics,
                 draining: Any = lambda: False) -> None:
        self.config = config
        self.store = store
        self.media = media
        self.metrics = metrics
        self._draining = draining
        self.guard = AttemptGuard(budget=config.bad_attempts_per_ip_hour)
        self.control = MeetingControl(lookup=store.lookup, source_allowed=self.guard.allowed,
                                      on_bad_attempt=self._bad_attempt)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[Any]] = set()
        self._cdr = CdrWriter(config.path("cdr_dir"))  # group commits on its own thread
        self.calls: dict[str, LiveCall] = {}
        self.recorders: dict[str, WavRecorder | MkvRecorder] = {}
        self.room_started_wall: dict[str, float] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self.outbox: Outbox | None = None
        self.quality = QualityFeed(config, metrics)
        self.quality_interval_s = config.quality_interval_s

    # ---- life cycle -----------------------------------------------------------------
    async def start(self) -> None:
        secret = self.config.webhook_secret or self._secret_file()
        self.outbox = Outbox(self.config.path("database"), urls=self.config.webhooks, secret=secret)
        await self.outbox.start()

    def _secret_file(self) -> str:
        path: Path = self.config.data_dir / "webhook-secret"
        if not path.exists():
            path.write_text(secrets.token_hex(32) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    async def close(self) -> None:
        for cid in list(self.calls):
            self.calls[cid].control.hangup("gateway shutting down")
            self.call_ended(cid, "gateway shutting down")
        for rec in self.recorders.values():
            rec.close()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await asyncio.to_thread(self._cdr.close)
        self.quality.writer.close()
        if self.outbox is not None:
            await self.outbox.close()

    def active_calls(self) -> int:
        return len(self.calls)

    # ---- CallApplication ------------------------------------------------------------
    def admit(self, call: IncomingCall) -> Admission:
        self.metrics.inc("InboundCallAttempts")
        if self._draining():
            return Admission.DRAINING
        if not self.guard.allowed(call.source[0], time.monotonic()):
            # the adapter counts this refusal in Throttles as it answers it
            log.warning("source over attempt budget", peer=call.source[0])
            return Admission.THROTTLED
        return Admission.ACCEPT

    def call_connected(self, call: IncomingCall, control: CallControl) -> None:
        now_wall = time.time()
        live = LiveCall(call=call, control=control, start_wall=now_wall, answer_wall=now_wall,
                        conference_key=f"menu:{call.call_id}", legs=tuple(control.legs))
        self.calls[call.call_id] = live
        self.idle.clear()
        self.metrics.inc("InboundCallsAnswered")
        self.metrics.set("InboundCallsActive", len(self.calls))
        audio, video = live.leg(MediaKind.AUDIO), live.leg(MediaKind.VIDEO)
        if audio is not None:
            audio.on_timeout = lambda reason, cid=call.call_id: self._media_timeout(cid, reason)
        conf = self.media.conference(live.conference_key)
        conf.join(call.call_id, audio, video)
        conf.set_lobby(call.call_id, True)
        self._schedule_quality(live)
        with structlog.contextvars.bound_contextvars(call_id=call.call_id):
            log.info("call connected", protocol=call.protocol.value, transport=call.transport.value,
                     peer=call.source[0], menu=call.target.menu,
                     meeting_id=call.target.meeting_id)
        self._run(self.control.call_connected(call.call_id, call.target, identity=call.from_uri,
                                              source_ip=call.source[0], now=time.monotonic()))

    def digit(self, call_id: str, digit: str, source: DigitSource, *, suspect: bool = False) -> None:
        live = self.calls.get(call_id)
        if live is None:
            return
        p = self.control.participants.get(call_id)
        if p is not None and p.state is PState.MENU and live.prompt is not None:
            live.prompt.stop()  # barge-in: keying interrupts the menu prompt
        self._run(self.control.digit(call_id, digit, time.monotonic(), source=source, suspect=suspect))

    def call_ended(self, call_id: str, reason: str) -> None:
        live = self.calls.pop(call_id, None)
        if live is None:
            return
        for handle in (live.hangup_handle, live.quality_timer):
            if handle is not None:
                handle.cancel()
        quality = self._report_quality(live)  # the final, partial minute
        self.quality.forget(call_id)
        participant = self.control.participants.get(call_id)
        moderator = bool(participant and participant.moderator)
        conf_start = self.room_started_wall.get(live.meeting_id or "")
        self._run(self.control.call_ended(call_id, time.monotonic()))
        conf_end = time.time() if conf_start is not None and live.meeting_id not in self.room_started_wall else None
        conf = self.media.conference(live.conference_key)
        conf.leave(call_id)
        self.metrics.set("InboundCallsActive", len(self.calls))
        live.end_reason = reason if live.end_reason == "hangup" else live.end_reason
        self._write_cdr(live, moderator, conf_start, conf_end, quality)
        with structlog.contextvars.bound_contextvars(call_id=call_id):
            log.info("call ended", reason=live.end_reason, meeting_id=live.meeting_id)
        if not self.calls:
            self.idle.set()

    # ---- actions --------------------------------------------------------------------
    def _run(self, acts: list[Action]) -> None:
        queued: dict[str, list[str]] = {}
        for a in acts:
            match a:
                case Play(call_id=cid, prompt=name):
                    queued.setdefault(cid, []).append(name)
                case EnterMeeting():
                    self._enter(a)
                case SetMuted(call_id=cid, muted=muted):
                    live = self.calls.get(cid)
                    if live is not None:
                        self.media.conference(live.conference_key).set_muted(cid, muted)
                case SetRecording(meeting_id=mid, on=on):
                    self._recording(mid, on)
                case Hangup():
                    self._hangup(a, queued.get(a.call_id, []))
                case MeetingEvent():
                    self._event(a)
                case VerifyPasscode():
                    task = asyncio.get_running_loop().create_task(self._verify(a))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        for cid, names in queued.items():
            self._play(cid, names)
        self._arm()

    def _play(self, call_id: str, names: list[str]) -> float:
        live = self.calls.get(call_id)
        if live is None:
            return 0.0
        pcm = _prompt_sequence(tuple(names))
        if live.prompt is not None:
            live.prompt.stop()
        live.prompt = self.media.conference(live.conference_key).play(call_id, pcm, PROMPT_RATE)
        return len(pcm) / PROMPT_RATE

    async def _verify(self, a: VerifyPasscode) -> None:
        try:
            ok = await asyncio.to_thread(self.store.check_passcode, a.meeting_id, a.passcode)
        except Exception as exc:  # a store failure is a failed check, never a crash
            log.error("passcode check failed", call_id=a.call_id, error=type(exc).__name__)
            ok = False
        self._run(self.control.passcode_checked(a.call_id, ok, time.monotonic()))

    def _enter(self, a: EnterMeeting) -> None:
        live = self.calls.get(a.call_id)
        if live is None:
            return
        key = f"meeting:{a.meeting_id}"
        if live.conference_key != key:
            self.media.conference(live.conference_key).leave(a.call_id)
            live.conference_key = key
            conf = self.media.conference(key)
            conf.join(a.call_id, live.leg(MediaKind.AUDIO), live.leg(MediaKind.VIDEO))
            if a.meeting_id in self.recorders:
                self._tap(conf, self.recorders[a.meeting_id])
        live.meeting_id = a.meeting_id
        conf = self.media.conference(key)
        conf.set_lobby(a.call_id, a.lobby)
        if not a.lobby and live.leg(MediaKind.VIDEO) is not None:
            # frozen video after a PIN-entry screen is a known peer failure: ask for a keyframe
            # (never for an audio-only call: SIP INFO picture_fast_update would confuse it)
            live.control.request_keyframe()
            conf.request_keyframe(a.call_id)

    def _hangup(self, a: Hangup, queued_prompts: list[str]) -> None:
        live = self.calls.get(a.call_id)
        if live is None:
            return
        live.end_reason = a.reason
        if a.throttle:
            self.metrics.inc("Throttles")
            log.warning("attempt limit reached", call_id=a.call_id, peer=live.call.source[0])
        delay = 0.0
        if a.after_prompt and queued_prompts:
            delay = sum(len(prompts.load(n, PROMPT_RATE)) + len(PROMPT_GAP)
                        for n in queued_prompts) / PROMPT_RATE + HANGUP_GRACE_S
        loop = asyncio.get_running_loop()
        live.hangup_handle = loop.call_later(delay, self._do_hangup, a.call_id, a.reason)

    def _do_hangup(self, call_id: str, reason: str) -> None:
        live = self.calls.get(call_id)
        if live is not None:
            live.control.hangup(reason)
            self.call_ended(call_id, reason)

    def _media_timeout(self, call_id: str, reason: str) -> None:
        log.warning("media timeout", call_id=call_id, reason=reason)
        self._do_hangup(call_id, reason)

    def _recording(self, meeting_id: str, on: bool) -> None:
        key = f"meeting:{meeting_id}"
        # stopping after the last one left must not create an empty conference again
        conf = self.media.conference(key) if on else self.media.conferences.get(key)
        rec = self.recorders.pop(meeting_id, None)
        if rec is not None:
            if conf is not None:
                conf.on_mix = None
                conf.set_video_tap(None)
            path = rec.close()
            log.info("recording stopped", meeting_id=meeting_id, file=path.name)
        if on and conf is not None:
            rec = open_recorder(self.config.path("recordings_dir"), meeting_id, video=conf.has_video,
                                now=time.monotonic(), request_keyframe=conf.request_tap_keyframe)
            self.recorders[meeting_id] = rec
            self._tap(conf, rec)
            log.info("recording started", meeting_id=meeting_id, file=rec.path.name)
        if conf is not None and conf.participants:
            conf.play_all(beep(16000, hz=1000 if on else 600), 16000)

    @staticmethod
    def _tap(conf: Conference, rec: WavRecorder | MkvRecorder) -> None:
        """Point a (possibly re-created) conference's taps at the meeting's recorder."""
        conf.on_mix = rec.write
        if isinstance(rec, MkvRecorder) and conf.on_video != rec.write_video:
            rec.rebase()  # a new switched stream: its own sequence and timestamps
            rec.request_keyframe = conf.request_tap_keyframe
            conf.set_video_tap(rec.write_video)

    def _event(self, ev: MeetingEvent) -> None:
        now = time.time()
        if ev.kind == "MeetingStarted":
            self.room_started_wall[ev.meeting_id] = now
            self.metrics.add("MeetingsActive", 1)
        elif ev.kind == "MeetingEnded":
            self.room_started_wall.pop(ev.meeting_id, None)
            self.metrics.add("MeetingsActive", -1)
        if self.outbox is None:
            return
        detail: dict[str, Any] = {"meetingId": ev.meeting_id, "nodeId": self.config.node_id}
        live = self.calls.get(ev.call_id or "")
        if live is not None:
            detail.update(callId=ev.call_id, protocol=live.call.protocol.value,
                          transport=live.call.transport.value, fromUri=live.call.from_uri)
        self.outbox.add(envelope(kind=ev.kind, account=self.config.region, region=self.config.region,
                                 source="vtcgw", resources=[f"meeting/{ev.meeting_id}"], detail=detail,
                                 now_wall=now))

    def _bad_attempt(self, ip: str, now: float) -> None:
        self.guard.record(ip, now)
        if not self.guard.allowed(ip, now):
            log.warning("source locked out", peer=ip, window_s=self.guard.window_s)

    def _write_cdr(self, live: LiveCall, moderator: bool, conf_start: float | None,
                   conf_end: float | None, quality: dict[str, Any]) -> None:
        mid = live.meeting_id
        meeting = None
        if mid is not None:
            try:
                meeting = self.store.get(mid)
            except Exception:  # deleted while the call ran: still write the record
                meeting = None
        record = CallRecord(
            account=self.config.region, conference_id=mid, organizer=meeting.host if meeting else "",
            caller_uri=live.call.from_uri, called_uri=logs.mask_dial_string(live.call.to_uri),
            protocol=live.call.protocol.value, transport=live.call.transport.value,
            start_s=live.start_wall, answer_s=live.answer_wall, end_s=time.time(),
            conference_start_s=conf_start, conference_end_s=conf_end,
            end_reason=live.end_reason, moderator=moderator, quality=quality)
        # durable off the event loop (CdrWriter's group commits), awaited at shutdown so none is lost
        fut = asyncio.wrap_future(self._cdr.submit(record))
        self._writes.add(fut)
        fut.add_done_callback(lambda f, cid=live.call.call_id: self._written(f, cid))

    def _written(self, fut: asyncio.Future[Any], call_id: str) -> None:
        self._writes.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("CDR not written", call_id=call_id, error=str(fut.exception()))

    def _schedule_quality(self, live: LiveCall) -> None:
        loop = asyncio.get_running_loop()
        live.quality_timer = loop.call_later(self.quality_interval_s, self._quality_tick, live.call.call_id)

    def _quality_tick(self, call_id: str) -> None:
        live = self.calls.get(call_id)
        if live is not None:
            self._report_quality(live)
            self._schedule_quality(live)

    def _report_quality(self, live: LiveCall) -> dict[str, Any]:
        audio = live.leg(MediaKind.AUDIO)
        if audio is None:
            return {}
        try:
            rec = self.quality.record(call_id=live.call.call_id, from_uri=live.call.from_uri,
                                      to_uri=live.call.to_uri, stats=audio.stats())
        except Exception as exc:  # quality must never cost a call or a CDR
            log.warning("no quality reading", call_id=live.call.call_id, error=str(exc))
            return {}
        return {k: v for k, v in rec.items() if k.startswith(("cust2vc", "vc2cust", "rtt_btwn_vc_and_cust",
                                                                "mos_btwn_vc_and_cust"))}

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.control.get_timer()
        if deadline is None:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._run(self.control.handle_timer(time.monotonic()))

    # ---- admin API ------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        from gateway.meetings.live_api import add_live_routes

        add_live_routes(app, self)

