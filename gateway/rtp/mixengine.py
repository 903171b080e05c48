"""The shared conference mix engine: every G.711 meeting mixed in one 20 ms tick.

A :class:`~gateway.rtp.conference.Conference` whose audio is all G.711 (PCMU/PCMA at 8 kHz,
no SRTP) and that has no video hands its audio to the plane's one :class:`MixEngine`
(``Conference`` decides: see ``Conference._schedule``); the others keep their own
per-meeting task and :class:`~gateway.rtp.mixer.AudioMixer` tick. Per tick, for all engine
meetings together:

1. receive: one :func:`gateway.rtp.tickrecv.tick_recv` call drains every leg's RTP socket
   (the legs' own readers are off), logs each clean packet and puts it into the leg's
   jitter ring; what it leaves (telephone-events, RTCP-mux, strays, first packets before
   the latch) goes through the leg's ordinary ``receive`` (DTMF, latching, statistics);
2. one :func:`~gateway.rtp.tickrecv.tick_pull` yields each leg's frame (packet, concealment
   or nothing), decoded;
3. the mix, one :func:`~gateway.rtp.tickrecv.mix_tick` call for every meeting with the
   AudioMixer's rules: muted and lobby members
   contribute nothing, the ``max_talkers`` loudest frames above the level floor per meeting
   are summed, each member gets the sum minus its own frame plus its prompts (lobby members
   only their prompts), clipped and G.711-encoded by table lookup; the speaker detectors'
   smoothing is vectorized and their decision runs only where a change is possible;
4. one :func:`~gateway.rtp.tickrecv.send_rows` call sends every member's RTP packet from its
   leg's socket (headers built for all rows at once).

The AudioMixer stays the registry of members (codec, mute, lobby, prompts, ts offset), so
``Conference.play``/``set_muted``/... work unchanged. Per-leg state that the legs' sessions
report (packet log rows for reception statistics and MOS, counters, sequence numbers) is
moved into the sessions every ``SYNC_TICKS`` ticks (a 40th of the legs each tick), when a
packet log is half full, when ``leg.stats()`` is read and when a leg leaves the engine.
A leg tells the engine when it is re-configured (codec, direction, SRTP: ``leg_changed``)
or closed (``leg_closed``: its socket is never read again, even before the next tick), and
a new latch shows in the fallback rows; so the per-tick work does not grow with legs that
did not change. A slow sweep over every slot and meeting, a ``CHECK_TICKS``-th per tick,
stays as the safety net (a video leg, anything the notices missed).
Each tick reports its duration and lateness to ``plane.on_tick`` (the daemon's
``ConferenceTickSeconds`` / ``ConferenceTickLatenessSeconds``). ``VTCGW_NO_MIX_ENGINE=1``
turns the engine off (every meeting on its own tick).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.rtp import tickrecv as tr
from gateway.rtp.codecs import _g711_tables
from gateway.rtp.jitter import JitterBuffer
from gateway.rtp.mixer import TICK_S, AudioMixer
from gateway.rtp.packets import MalformedPacket, RtpHeader
from gateway.rtp.session import Channel
from gateway.rtp.speaker import FLOOR as SPEAKER_FLOOR
from gateway.rtp.ticker import run_ticks
from gateway.rtp.udpbatch import ADDR_DTYPE, get_addr, set_addr

if TYPE_CHECKING:
    from gateway.rtp.conference import Conference
    from gateway.rtp.mixer import _Member
    from gateway.rtp.plane import MediaPlane, RtpLeg

log = structlog.get_logger(__name__)

FRAME = tr.SLOT  # samples per 20 ms frame at 8 kHz
PKT = 12 + FRAME
SYNC_TICKS = 40  # move logs/counters into the sessions every 0.8 s (LOG_ROWS has room)
CHECK_TICKS = 50  # the safety-net sweep: each slot and meeting looked at once a second
LAWS = ("PCMU", "PCMA")


def g711_law(name: str) -> int | None:
    """Index into the engine's tables for a codec the engine can carry, else None."""
    name = name.upper()
    return LAWS.index(name) if name in LAWS else None


@dataclass(slots=True)
class _Slot:
    """One conference audio leg on the engine."""

    idx: int
    conf: Conference
    pid: str
    leg: RtpLeg
    member: _Member
    dest: object = None
    latched: object = None
    pts: object = None


def _slot_bytes(addr: tuple | None) -> np.ndarray:
    out = np.zeros(1, ADDR_DTYPE)
    if addr is not None:
        set_addr(out, 0, addr)
    return out.view(np.uint8)


class MixEngine:
    """Mixes every fast-path conference of one plane on one shared 20 ms ticker."""

    def __init__(self, plane: MediaPlane, capacity: int = 64) -> None:
        self.plane = plane
        self.a = tr.SlotArrays(capacity)
        self._slots: list[_Slot | None] = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self._by_leg: dict[int, _Slot] = {}
        self._by_conf: dict[str, dict[str, _Slot]] = {}  # meeting key -> pid -> slot
        self.conferences: dict[str, Conference] = {}
        self._dirty = True
        self._closed: list[_Slot] = []  # legs closed since the last tick (leg_closed)
        self._recheck: set[str] = set()  # meetings with a re-configured leg (leg_changed)
        self._task: asyncio.Task[None] | None = None
        tabs = [_g711_tables(n) for n in LAWS]
        self._dtab = np.ascontiguousarray(np.stack([d for d, _ in tabs]).astype(np.int16))
        self._etab = np.stack([e for _, e in tabs])
        # per slot (engine capacity): send state
        self._alloc_send(capacity)
        self.ticks = 0
        self.tick_overruns = 0
        self.fallback_rows = 0
        self.send_failed = 0

    def _alloc_send(self, n: int, old: dict[str, np.ndarray] | None = None) -> None:
        """Per-slot send state (sequence, timestamp, SSRC, PT, destination, counters)."""

        def arr(name: str, dtype: object) -> np.ndarray:
            out = np.zeros(n, dtype)  # type: ignore[call-overload]
            if old is not None:
                out[: len(old[name])] = old[name]
            return out

        self._seq = arr("seq", np.uint16)
        self._ts = arr("ts", np.uint32)
        self._ssrc = arr("ssrc", np.uint32)
        self._pt = arr("pt", np.uint8)
        self._started = arr("started", bool)
        self._send_fd = arr("send_fd", np.int32)
        self._tx_packets = arr("tx_packets", np.int64)
        self._smooth = arr("smooth", np.float64)
        self._dest = arr("dest", ADDR_DTYPE)

    # ----- membership ----------------------------------------------------------------
    def attach(self, conf: Conference) -> None:
        """Carry this conference's audio from the next tick on."""
        self.conferences[conf.key] = conf
        self.refresh(conf)
        if self._task is None:
            self._task = self.plane.loop.create_task(self._run(), name="mix-engine")

    def detach(self, conf: Conference) -> None:
        """Hand the conference's audio back to its own tick (or it ended)."""
        if self.conferences.pop(conf.key, None) is None:
            return
        for s in list(self._by_conf.get(conf.key, {}).values()):
            self._release(s)
        self._by_conf.pop(conf.key, None)
        self._dirty = True
        if not self.conferences and self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        for conf in list(self.conferences.values()):
            self.detach(conf)

    def refresh(self, conf: Conference) -> None:
        """Match the slots to the conference's mixer members that have an audio leg."""
        want: dict[str, tuple[RtpLeg, _Member]] = {}
        for pid, m in conf.mixer._members.items():
            p = conf._parts.get(pid)
            if p is not None and p.audio is not None and not p.audio.closed:
                want[pid] = (p.audio, m)
        mine = self._by_conf.setdefault(conf.key, {})
        for s in list(mine.values()):
            w = want.get(s.pid)
            if w is None or w[0] is not s.leg or w[1] is not s.member:
                self._release(s)
        have = set(mine)
        for pid, (leg, m) in want.items():
            if pid not in have:
                self._assign(conf, pid, leg, m)
        self._dirty = True

    def changed(self) -> None:
        """Mute, lobby or prompts changed somewhere: rebuild the per-row flags."""
        self._dirty = True

    def leg_changed(self, leg: RtpLeg) -> None:
        """The leg was re-configured: its meeting is looked at on the next tick."""
        s = self._by_leg.get(leg.id)
        if s is not None:
            self._recheck.add(s.conf.key)

    def leg_closed(self, leg: RtpLeg) -> None:
        """The leg is closing (before its sockets do): never read or send on its fd again;
        it leaves the engine on the next tick."""
        s = self._by_leg.get(leg.id)
        if s is not None:
            self._sync_slot(s, time.monotonic())  # its rows into the session while it has sinks
            self.a.fds[s.idx] = -1
            self._send_fd[s.idx] = -1
            self._closed.append(s)

    def _assign(self, conf: Conference, pid: str, leg: RtpLeg, m: _Member) -> None:
        law = g711_law(m.codec.fmt.name)
        if law is None:
            return
        if not self._free:
            self._grow()
        i = self._free.pop()
        a = self.a
        a.reset(i)
        s = _Slot(idx=i, conf=conf, pid=pid, leg=leg, member=m)
        self._slots[i] = s
        self._by_leg[leg.id] = s
        self._by_conf.setdefault(conf.key, {})[pid] = s
        a.law[i] = law
        ses = leg.session
        self._seq[i] = ses.seq
        self._ts[i] = (ses.ts_base + m.ts_offset) & 0xFFFFFFFF
        self._ssrc[i] = ses.ssrc
        self._pt[i] = m.send_pt
        self._started[i] = m.started
        self._tx_packets[i] = 0
        self._smooth[i] = conf.speaker.smoothed.get(pid, 0.0)
        leg.take_reader()
        leg.media_sink = self._python_sink(i)
        a.fds[i] = leg._rtp_fd
        a.active[i] = 1
        self._check_slot(s)

    def _release(self, s: _Slot) -> None:
        """Leave the engine: logs and counters into the session, the leg reads again."""
        i = s.idx
        self._sync_slot(s, time.monotonic())
        m, leg = s.member, s.leg
        self._write_back(s)
        m.jb = JitterBuffer()
        if not leg.closed:
            leg.session.seq = int(self._seq[i])
            part = s.conf._parts.get(s.pid)
            still = part is not None and part.audio is leg
            leg.media_sink = s.conf._audio_sink(s.pid) if still else None
            leg.give_reader()
        s.conf.speaker.smoothed[s.pid] = float(self._smooth[i])
        self.a.reset(i)
        self._send_fd[i] = -1
        self._slots[i] = None
        self._by_leg.pop(leg.id, None)
        mine = self._by_conf.get(s.conf.key)
        if mine is not None and mine.get(s.pid) is s:
            del mine[s.pid]
        self._free.append(i)
        self._dirty = True

    def _write_back(self, s: _Slot) -> None:
        """The member's send position as the AudioMixer keeps it (a re-codec copies it)."""
        m = s.member
        m.ts_offset = (int(self._ts[s.idx]) - s.leg.session.ts_base) & 0xFFFFFFFF
        m.started = bool(self._started[s.idx])

    def _grow(self) -> None:
        n = self.a.n
        self.a.grow(2 * n)
        old = {k: getattr(self, "_" + k) for k in
               ("seq", "ts", "ssrc", "pt", "started", "send_fd", "tx_packets", "smooth", "dest")}  # fmt: skip
        self._alloc_send(2 * n, old)
        self._slots.extend([None] * n)
        self._free = list(range(2 * n - 1, n - 1, -1)) + self._free
        for i in range(n, 2 * n):
            self.a.reset(i)
            self._send_fd[i] = -1

    def _python_sink(self, i: int):
        a = self.a

        def sink(_leg: RtpLeg, data: bytes, arrival_ns: int) -> None:
            try:
                h = RtpHeader.parse(data)
            except MalformedPacket:
                return
            tr.jitter_put(a, i, h.seq, h.timestamp, data[h.payload_offset : h.payload_end],
                          arrival_ns)  # fmt: skip

        return sink

    def _check_slot(self, s: _Slot) -> None:
        """Follow the leg's latch, destination and payload types into the arrays."""
        ses, i = s.leg.session, s.idx
        # on hold (sendonly/inactive) or SRTP, media takes the Python path's verdicts
        ok = ses.latched_rtp is not None and s.leg._srtp is None and ses.expects_media
        want = ses.latched_rtp if ok else None
        exp = self.a.expect[i]
        if want is not s.latched or (want is not None and exp[0] == 0 and exp[1] == 0):
            s.latched = want
            exp[:] = _slot_bytes(want)
        if ses._media_pts is not s.pts:
            s.pts = ses._media_pts
            self.a.pt_mask[i] = 0
            for pt in ses._media_pts:
                self.a.pt_mask[i, pt] = 1
        dest = ses.rtp_dest if ses.sending else None
        if dest is not s.dest or self._send_fd[i] != (s.leg._rtp_fd if dest else -1):
            s.dest = dest
            self._dest[i : i + 1].view(np.uint8)[:] = _slot_bytes(dest)
            self._send_fd[i] = s.leg._rtp_fd if dest is not None else -1

    # ----- periodic bookkeeping ------------------------------------------------------
    def _check(self, now: float, phase: int) -> None:
        """The safety-net sweep: one CHECK_TICKS-th of the meetings and slots per call."""
        for k, conf in enumerate(list(self.conferences.values())):
            if k % CHECK_TICKS == phase:
                self._check_conference(conf, now)
        for i in range(phase, len(self._slots), CHECK_TICKS):
            s = self._slots[i]
            if s is not None:
                self._check_one(s)

    def _check_noticed(self, now: float) -> None:
        """What the legs told us since the last tick: closed legs leave, re-configured
        meetings go back through the conference's rules."""
        closed, self._closed = self._closed, []
        for s in closed:
            self._check_one(s)  # closed: it leaves (unless it already has)
        keys, self._recheck = self._recheck, set()
        for key in keys:
            conf = self.conferences.get(key)
            if conf is None:
                continue
            self._check_conference(conf, now)
            for s in list(self._by_conf.get(key, {}).values()):
                self._check_one(s)

    def _check_conference(self, conf: Conference, now: float) -> None:
        """Re-configured legs (codec, SRTP, video) go back through the conference's rules."""
        changed = False
        for p in list(conf._parts.values()):
            leg = p.audio
            if (leg is not None and leg.config is not p.audio_cfg) or (p.video is not None):
                slot = self._by_leg.get(leg.id) if leg is not None else None
                if slot is not None:
                    self._write_back(slot)
                conf._sync(p, now)
                changed = True
        if changed:
            conf._schedule()
            if conf.key in self.conferences:
                self.refresh(conf)

    def _check_one(self, s: _Slot) -> None:
        if self._slots[s.idx] is not s:
            return  # left the engine while its meeting was looked at
        if s.leg.closed or s.leg._srtp is not None:
            self._release(s)
            s.conf._schedule()
        else:
            self._check_slot(s)

    def _watch_out(self, s: _Slot) -> None:
        """The engine's view of the sequence (DTMF loss-run watch) into the session."""
        js, ses = self.a.js[s.idx], s.leg.session
        if js[tr.JS_PREV_SEQ] >= 0:
            ses._prev_seq = int(js[tr.JS_PREV_SEQ])
        ses._loss_run_since_digit = max(ses._loss_run_since_digit, int(js[tr.JS_MAX_GAP]))
        js[tr.JS_MAX_GAP] = 0

    def _sync_slot(self, s: _Slot, now: float) -> None:
        a, i = self.a, s.idx
        ses = s.leg.session
        self._watch_out(s)
        k = int(a.log_n[i])
        if k:
            log_ = ses.log
            if len(log_):
                log_.unordered = True
            log_.reserve(k)[:] = a.logs[i, :k]
            log_.commit(k)
            a.log_n[i] = 0
        js = a.js[i]
        v = js.tolist()  # one conversion, not one NumPy scalar per field
        n = v[tr.JS_RX_PACKETS]
        if n:
            ses.rx_packets += n
            ses.rx_bytes += v[tr.JS_RX_BYTES]
            ses.last_rx_at = v[tr.JS_LAST_ARRIVAL] / 1e9
            js[tr.JS_RX_PACKETS] = js[tr.JS_RX_BYTES] = 0
        sent = int(self._tx_packets[i])
        if sent:
            ses.tx_packets += sent
            ses.tx_bytes += sent * PKT
            ses.tx_payload_bytes += sent * FRAME
            ses._last_tx_ts = (int(self._ts[i]) - FRAME) & 0xFFFFFFFF
            ses._last_tx_at = now
            ses._sent_since_report = True
            self._tx_packets[i] = 0
        ses.seq = int(self._seq[i])
        jb = s.member.jb
        jb.late, jb.duplicates, jb.lost = v[tr.JS_LATE], v[tr.JS_DUP], v[tr.JS_LOST]
        jb.underruns, jb.overflows = v[tr.JS_UNDERRUNS], v[tr.JS_OVERFLOWS]

    def sync_leg(self, leg: RtpLeg) -> None:
        """Bring one leg's session up to date (its stats are being read)."""
        s = self._by_leg.get(leg.id)
        if s is not None:
            self._sync_slot(s, time.monotonic())

    def sync(self) -> None:
        """Move every leg's logged rows and counters into its session now."""
        now = time.monotonic()
        for s in list(self._by_leg.values()):
            self._sync_slot(s, now)

    # ----- layout --------------------------------------------------------------------
    def _layout(self) -> None:
        """Rows in conference order (members in mixer order), with their flags."""
        rows: list[int] = []
        starts: list[int] = []
        confs: list[Conference] = []
        for conf in self.conferences.values():
            by_pid = self._by_conf.get(conf.key, {})
            mine = [by_pid[pid].idx for pid in conf.mixer._members if pid in by_pid]
            if not mine:
                continue
            starts.append(len(rows))
            confs.append(conf)
            rows.extend(mine)
        self._rows = np.array(rows, np.int64)
        self._starts = np.array(starts, np.int64)
        self._confs = confs
        counts = np.diff(np.r_[self._starts, len(rows)])
        self._grp = np.repeat(np.arange(len(confs)), counts)
        self._talkers = np.array([c.mixer.max_talkers for c in confs], np.int64)
        members = [self._slots[i].member for i in rows]  # type: ignore[union-attr]
        self._lobby = np.array([m.lobby for m in members], np.uint8)
        self._quiet = np.array([m.muted or m.lobby for m in members], np.uint8)
        self._extra = np.zeros((len(confs), FRAME), np.int32)
        self._own = np.zeros((len(rows), FRAME), np.int32)
        self._meeting = np.zeros((len(confs), FRAME), np.int32)
        self._level = np.zeros(len(rows), np.float64)
        self._sel = np.zeros(len(rows), np.uint8)
        self._prompted = [(r, m) for r, m in enumerate(members) if m.prompts]
        self._sounding = [(g, c) for g, c in enumerate(confs) if c.mixer._everyone]
        self._cur = np.full(len(confs), -1, np.int64)
        self._challenged = np.zeros(len(confs), bool)
        for g, c in enumerate(confs):
            cur = c.speaker.current
            for r in range(self._starts[g], self._starts[g] + counts[g]):
                if self._slots[rows[r]].pid == cur:  # type: ignore[union-attr]
                    self._cur[g] = r
            self._challenged[g] = c.speaker._challenger is not None
        self._lenv = np.full(len(rows), PKT, np.int32)
        self._out = np.zeros((len(rows), PKT), np.uint8)
        self._out[:, 0] = 0x80
        self._out[:, 8:12] = self._ssrc[self._rows].astype(">u4").view(np.uint8).reshape(-1, 4)
        self._dirty = False

    # ----- the tick ------------------------------------------------------------------
    def _receive(self, now_ns: int) -> None:
        a = self.a
        off = self.plane.clock_offset_ns
        for _ in range(8):
            fb_n, _acc, complete = tr.tick_recv(*a.recv_args(), 0, off, now_ns)
            if fb_n:
                self._fallback(fb_n, now_ns)
            if complete:
                return
            now_s = time.monotonic()  # a late tick: empty the full logs, read on
            for i in np.flatnonzero(a.log_n > a.logs.shape[1] // 2).tolist():
                slot = self._slots[i]
                if slot is not None:
                    self._sync_slot(slot, now_s)

    def _fallback(self, count: int, now_ns: int) -> None:
        a = self.a
        self.fallback_rows += count
        touched: dict[int, _Slot] = {}
        # whose rows these are is fixed now: a digit handled below may move a leg to
        # another meeting and its slot index to another leg
        owners = [self._slots[i] for i in a.fb_leg[:count].tolist()]
        for j, s in enumerate(owners):
            if s is None or s.leg.closed:
                continue
            n = min(int(a.fb_len[j]), a.fb_buf.shape[1])
            t = int(a.fb_ts[j])
            arrival = t - self.plane.clock_offset_ns if t else now_ns
            if s.idx not in touched:
                self._watch_out(s)
            s.leg.receive(a.fb_buf[j, :n].tobytes(), get_addr(a.fb_addr, j)[:2], Channel.RTP,
                          arrival)  # fmt: skip
            touched[s.idx] = s
        for s in touched.values():
            if self._slots[s.idx] is not s:
                continue  # left the engine (or another meeting) while its rows were handled
            if s.leg.session._prev_seq is not None:
                a.js[s.idx, tr.JS_PREV_SEQ] = s.leg.session._prev_seq
            if not s.leg.closed:
                s.leg._flush()
                self._check_slot(s)

    def tick(self, now: float) -> None:
        """One 20 ms step for every engine meeting."""
        self.ticks += 1
        self._check_noticed(now)
        self._check(now, self.ticks % CHECK_TICKS)
        a = self.a
        self._receive(time.monotonic_ns())
        tr.tick_pull(*a.pull_args(self._dtab))
        if self._dirty:
            self._layout()
        rows = self._rows
        if len(rows):
            self._mix(rows, now)
        now_s = time.monotonic()
        due = list(range(self.ticks % SYNC_TICKS, len(self._slots), SYNC_TICKS))
        # (each slot's session is brought up to date every SYNC_TICKS ticks) and a late loop
        # or a burst can fill a packet log sooner: those go now, before the C path would
        # have to leave their packets to the slow path
        due += np.flatnonzero(a.log_n > a.logs.shape[1] // 2).tolist()
        for i in due:
            slot = self._slots[i]
            if slot is not None:
                self._sync_slot(slot, now_s)

    def _mix(self, rows: np.ndarray, now: float) -> None:
        a = self.a
        extra, own = self._extra, self._own
        for g, conf in self._sounding:
            sound = conf.mixer._sound(conf.mixer._everyone, int(16000 * TICK_S), 8000)
            extra[g] = 0 if sound is None else sound
            if not conf.mixer._everyone:
                self._dirty = True
        for r, m in self._prompted:
            sound = _prompt(m)
            own[r] = 0 if sound is None else sound
            if not m.prompts:
                self._dirty = True
        level, buf = self._level, self._out
        tr.mix_tick(a.pcm, a.kind, rows, self._grp, self._starts, self._talkers, self._quiet,
                    self._lobby, extra, own, a.law, self._etab, level, self._sel, self._meeting,
                    buf)  # fmt: skip
        meeting = self._meeting
        nrow = len(rows)
        started = self._started[rows]
        buf[:, 1] = self._pt[rows] | np.where(started, 0, 0x80).astype(np.uint8)
        buf[:, 2:4] = self._seq[rows].astype(">u2").view(np.uint8).reshape(-1, 2)
        buf[:, 4:8] = self._ts[rows].astype(">u4").view(np.uint8).reshape(-1, 4)
        fds = self._send_fd[rows]
        _sent, failed, err = tr.send_rows(fds, buf, self._lenv, self._dest[rows], nrow)
        if failed:
            self.send_failed += failed
            if err:
                log.info("mixengine.send_failed", error=err)
        sending = fds >= 0
        self._seq[rows] += sending.astype(np.uint16)
        self._ts[rows] += np.uint32(FRAME)
        self._started[rows] = True
        self._tx_packets[rows] += sending
        # meeting mix taps and speakers
        mix = None
        for g, conf in enumerate(self._confs):
            if conf.on_mix is not None:
                if mix is None:
                    mix = np.clip(meeting, -32768, 32767).astype(np.int16)
                conf.on_mix(mix[g], 8000)
        self._speakers(rows, level, now)

    def _speakers(self, rows: np.ndarray, level: np.ndarray, now: float) -> None:
        """SpeakerDetector smoothing for every row at once; decisions only where one may fall."""
        alpha = 0.07
        sm = self._smooth[rows] * (1 - alpha) + level * alpha
        self._smooth[rows] = sm
        order = np.lexsort((-sm, self._grp))
        best = order[self._starts]
        best_lvl = sm[best]
        need = ((best_lvl >= SPEAKER_FLOOR) & (best != self._cur)) | self._challenged
        for g in np.flatnonzero(need).tolist():
            conf = self._confs[g]
            det = conf.speaker
            b = int(best[g])
            cur = int(self._cur[g])
            cur_lvl = float(sm[cur]) if cur >= 0 else 0.0
            pid = self._slots[int(rows[b])].pid  # type: ignore[union-attr]
            if det.decide(pid, float(sm[b]), cur_lvl, now):
                self._cur[g] = b
            self._challenged[g] = det._challenger is not None

    async def _run(self) -> None:
        await run_ticks(self.tick, overrun=self._overrun, failed=self._tick_failed,
                        observe=lambda: self.plane.on_tick)

    def _overrun(self) -> None:
        self.tick_overruns += 1

    def _tick_failed(self) -> None:
        log.exception("mixengine.tick_failed")
        self._dirty = True  # rebuild the layout on the next tick


def _prompt(m: _Member) -> np.ndarray | None:
    return AudioMixer._sound(m.prompts, int(16000 * TICK_S), 8000)
