"""RFC 4733 telephone-event receiver: packets in, keypad digits out (sans-I/O).

Rules (RFC 4733 section 2.5.1):
- One event is identified by its RTP timestamp (the event's start); every packet of that
  event, including the three retransmitted end packets, carries the same timestamp.
- A digit is reported once per timestamp: on the first end packet, or, if every end packet
  was lost, when a packet with a later timestamp starts a new event or when no packet of the
  event arrives for ``stale_s`` (time passed in).
- The marker bit is not required (many devices omit it or set it on every packet).
- Recently reported timestamps are remembered so late retransmissions never double a digit.
"""

from __future__ import annotations

from collections import deque

from gateway.rtp.packets import MalformedPacket, TelephoneEvent


class DtmfReceiver:
    __slots__ = ("_done", "_out", "_pending_at", "_pending_digit", "_pending_ts", "stale_s")

    def __init__(self, *, stale_s: float = 0.8, memory: int = 32) -> None:
        self.stale_s = stale_s
        self._pending_ts: int | None = None
        self._pending_digit: str | None = None
        self._pending_at = 0.0
        self._done: deque[int] = deque(maxlen=memory)
        self._out: list[str] = []

    def receive(self, payload: bytes, timestamp: int, now: float) -> None:
        """Feed one telephone-event payload; malformed payloads are ignored (counted upstream)."""
        try:
            ev = TelephoneEvent.parse(payload)
        except MalformedPacket:
            return
        digit = ev.digit
        if digit is None or timestamp in self._done:
            return
        if self._pending_ts is not None and self._pending_ts != timestamp:
            self._flush()  # a new event began before the old one's end arrived
        self._pending_ts, self._pending_digit, self._pending_at = timestamp, digit, now
        if ev.end:
            self._flush()

    def _flush(self) -> None:
        if self._pending_ts is not None and self._pending_digit is not None:
            self._done.append(self._pending_ts)
            self._out.append(self._pending_digit)
        self._pending_ts = self._pending_digit = None

    def get_timer(self) -> float | None:
        return None if self._pending_ts is None else self._pending_at + self.stale_s

    def handle_timer(self, now: float) -> None:
        if self._pending_ts is not None and now >= self._pending_at + self.stale_s:
            self._flush()

    def digits(self) -> list[str]:
        """Digits completed since the last call (pulled, h2-style)."""
        out, self._out = self._out, []
        return out
