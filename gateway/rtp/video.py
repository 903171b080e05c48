"""Voice-activated H.264 video switching (sans-I/O, time passed in).

Every receiver sees one continuous stream: its own SSRC (our leg's), sequence numbers that
continue by +1 across a switch, and timestamps that keep advancing with wall time.
- Who sees whom: everyone receives the active speaker; the speaker receives the previous one.
- A switch is requested (keyframe asked of the new source) and completes for a receiver only
  when a packet starting a keyframe (SPS or IDR, see :mod:`gateway.rtp.h264`) arrives from
  that source; until then the receiver keeps getting its old source.
- A pending switch re-asks for the keyframe every ``rerequest_s``; receivers' own keyframe
  requests (PLI/FIR) go to their current source, at most once per ``min_request_s`` per source.
Outputs are pulled: ``receive()`` returns the packets to send, ``keyframe_requests()`` the
sources to ask for a keyframe.
- A monitor (the meeting's recording) is one more receiver under the id :data:`MONITOR`: it is
  no participant (never a speaker, sends nothing), always wants the active speaker, and gets
  the same continuous rewritten stream, switched at keyframes like everyone else's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.rtp.h264 import starts_keyframe

_SEQ_TS_SSRC = struct.Struct("!HII")
VIDEO_CLOCK = 90000
MONITOR = "\x00monitor"  # the receiver id of the monitor (recording) stream


@dataclass(slots=True)
class _Receiver:
    pid: str
    out_ssrc: int
    source: str | None = None
    pending: str | None = None
    seq_delta: int = 0
    ts_delta: int = 0
    last_seq: int | None = None
    last_ts: int | None = None
    last_at: float = 0.0
    switches: int = 0


class VideoSwitcher:
    def __init__(self, *, rerequest_s: float = 1.0, min_request_s: float = 0.5) -> None:
        self.rerequest_s, self.min_request_s = rerequest_s, min_request_s
        self._rx: dict[str, _Receiver] = {}
        self.speaker: str | None = None
        self.previous: str | None = None
        self._asked: dict[str, float] = {}  # source -> last keyframe request time
        self._requests: list[str] = []
        self._monitor: _Receiver | None = None

    def add(self, pid: str, out_ssrc: int, now: float) -> None:
        self._rx[pid] = _Receiver(pid=pid, out_ssrc=out_ssrc)
        if self.speaker is None:
            self.speaker = pid
        self._retarget(now)

    def remove(self, pid: str, now: float) -> None:
        self._rx.pop(pid, None)
        self._asked.pop(pid, None)
        if self.previous == pid:
            self.previous = None
        if self.speaker == pid:
            self.speaker, self.previous = self.previous, None
            if self.speaker is None and self._rx:
                self.speaker = next(iter(self._rx))
        for r in self._receivers():
            if r.source == pid:
                r.source = None
            if r.pending == pid:
                r.pending = None
        self._retarget(now)

    def __contains__(self, pid: str) -> bool:
        return pid in self._rx

    def __len__(self) -> int:
        return len(self._rx)

    def _receivers(self) -> list[_Receiver]:
        rxs = list(self._rx.values())
        if self._monitor is not None:
            rxs.append(self._monitor)
        return rxs

    def _get(self, pid: str) -> _Receiver | None:
        return self._monitor if pid == MONITOR else self._rx.get(pid)

    @property
    def monitoring(self) -> bool:
        return self._monitor is not None

    def start_monitor(self, now: float, out_ssrc: int = 0) -> None:
        """Add the monitor receiver (no-op when present); its keyframe is asked at once."""
        if self._monitor is None:
            self._monitor = _Receiver(pid=MONITOR, out_ssrc=out_ssrc)
            self._retarget(now)

    def stop_monitor(self) -> None:
        self._monitor = None

    def source_of(self, pid: str) -> str | None:
        r = self._get(pid)
        return r.source if r else None

    def set_speaker(self, pid: str, now: float) -> None:
        """The voice-activated choice; ignored for participants without video."""
        if pid not in self._rx or pid == self.speaker:
            return
        self.previous, self.speaker = self.speaker, pid
        self._retarget(now)

    def _desired(self, r: _Receiver) -> str | None:
        want = self.speaker if r.pid != self.speaker else self.previous
        if want is None and r.pid == self.speaker:
            want = next((p for p in self._rx if p != r.pid), None)
        return want if want in self._rx and want != r.pid else None

    def _retarget(self, now: float) -> None:
        for r in self._receivers():
            want = self._desired(r)
            if want == r.source:
                r.pending = None
            elif want != r.pending:
                r.pending = want
                if want is not None:
                    self._ask(want, now, force=True)

    def _ask(self, source: str, now: float, *, force: bool = False) -> None:
        last = self._asked.get(source)
        gap = self.rerequest_s if not force else self.min_request_s
        if last is not None and now - last < gap:
            return
        self._asked[source] = now
        if source not in self._requests:
            self._requests.append(source)

    def receiver_wants_keyframe(self, pid: str, now: float) -> None:
        """A receiver's device sent PLI/FIR: ask its current source (rate-limited)."""
        r = self._get(pid)
        if r is not None and (r.source or r.pending):
            self._ask(r.source or r.pending, now, force=True)  # type: ignore[arg-type]

    def tick(self, now: float) -> None:
        for r in self._receivers():
            if r.pending is not None:
                self._ask(r.pending, now)

    def keyframe_requests(self) -> list[str]:
        out, self._requests = self._requests, []
        return out

    def receive(self, source: str, data: bytes, now: float) -> list[tuple[str, bytes]]:
        """One plaintext RTP packet from ``source``; returns (receiver, rewritten packet)s."""
        if len(data) < 12 or source not in self._rx:
            return []
        seq, ts, _ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        key: bool | None = None
        out: list[tuple[str, bytes]] = []
        rxs = self._rx.values() if self._monitor is None else self._receivers()
        for r in rxs:
            if r.pid == source:
                continue
            if r.pending == source:
                if key is None:
                    off = 12 + 4 * (data[0] & 0x0F)
                    if data[0] & 0x10 and len(data) >= off + 4:
                        off += 4 + 4 * int.from_bytes(data[off + 2 : off + 4], "big")
                    key = starts_keyframe(data[off:])
                if key:
                    self._switch(r, seq, ts, now)
            if r.source != source:
                continue
            oseq = (seq + r.seq_delta) & 0xFFFF
            ots = (ts + r.ts_delta) & 0xFFFFFFFF
            r.last_seq, r.last_ts, r.last_at = oseq, ots, now
            out.append((r.pid, data[:2] + _SEQ_TS_SSRC.pack(oseq, ots, r.out_ssrc) + data[12:]))
        return out

    def _switch(self, r: _Receiver, seq: int, ts: int, now: float) -> None:
        want_seq = 0 if r.last_seq is None else (r.last_seq + 1) & 0xFFFF
        if r.last_ts is None:
            want_ts = ts
        else:
            want_ts = r.last_ts + max(1, int((now - r.last_at) * VIDEO_CLOCK))
        if r.last_seq is None:
            want_seq = seq
        r.seq_delta = (want_seq - seq) & 0xFFFF
        r.ts_delta = (want_ts - ts) & 0xFFFFFFFF
        r.source, r.pending = r.pending, None
        r.switches += 1
