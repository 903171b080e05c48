"""Bounded adaptive audio jitter buffer (sans-I/O, time passed in).

Packets go in by sequence number; the mixer pulls one packet's worth per 20 ms tick.
- Depth adapts to the RFC 3550-style interarrival jitter seen (target = 1 + ceil(2J/ptime)
  packets, between ``min_depth`` and ``max_depth``). Playout (re)starts only once the target
  depth is buffered.
- A missing packet is concealed once the buffer holds later packets (``Pull.LOST``);
  an empty buffer is an underrun (``Pull.EMPTY``) and rebuffers.
- Late packets (behind the playout point) and duplicates are dropped and counted; a jump of
  more than ``max_depth * 4`` packets is treated as a source restart.
- The buffer never holds more than ``capacity`` packets: the oldest go first.
"""

from __future__ import annotations

import enum
import math


class Pull(enum.Enum):
    PACKET = "packet"
    LOST = "lost"  # conceal one frame
    EMPTY = "empty"  # nothing to play (silence, or concealment by the caller)


class JitterBuffer:
    __slots__ = (
        "_buf",
        "_highest",
        "_jitter_s",
        "_last_transit",
        "_next",
        "_playing",
        "capacity",
        "duplicates",
        "late",
        "lost",
        "max_depth",
        "min_depth",
        "overflows",
        "ptime_s",
        "underruns",
    )

    def __init__(
        self, *, min_depth: int = 1, max_depth: int = 10, capacity: int = 50, ptime_s: float = 0.02
    ) -> None:
        self.min_depth, self.max_depth, self.capacity, self.ptime_s = (
            min_depth,
            max_depth,
            capacity,
            ptime_s,
        )
        self._buf: dict[int, tuple[int, bytes]] = {}  # ext seq -> (timestamp, payload)
        self._next: int | None = None  # ext seq to play next
        self._highest: int | None = None
        self._playing = False
        self._jitter_s = 0.0
        self._last_transit: float | None = None
        self.late = self.duplicates = self.lost = self.underruns = self.overflows = 0

    @property
    def target_depth(self) -> int:
        want = 1 + math.ceil(2 * self._jitter_s / self.ptime_s)
        return max(self.min_depth, min(self.max_depth, want))

    def __len__(self) -> int:
        return len(self._buf)

    def _extend(self, seq: int) -> int:
        ref = self._highest if self._highest is not None else seq
        return ref + ((seq - ref + 0x8000) & 0xFFFF) - 0x8000

    def put(
        self, seq: int, timestamp: int, payload: bytes, now: float, clock_rate: int = 8000
    ) -> None:
        ext = self._extend(seq)
        transit = now - timestamp / clock_rate
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < 1.0:
                self._jitter_s += (d - self._jitter_s) / 16
        self._last_transit = transit
        if self._next is not None and ext < self._next:
            if not self._playing and self._next - ext <= self.capacity:
                self._next = ext  # an earlier packet arrived before playout began
            elif self._next - ext > self.max_depth * 4:  # far behind: the source restarted
                self._restart()
                ext = seq
            else:
                self.late += 1
                return
        if self._highest is not None and ext - self._highest > self.max_depth * 4 + self.capacity:
            self._restart()
            ext = seq
        if ext in self._buf:
            self.duplicates += 1
            return
        self._buf[ext] = (timestamp, payload)
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if self._next is None or ext < self._next and not self._playing:
            self._next = ext
        while len(self._buf) > self.capacity:
            self.overflows += 1
            oldest = min(self._buf)
            del self._buf[oldest]
            if self._next is not None and self._next <= oldest:
                self._next = oldest + 1

    def _restart(self) -> None:
        self._buf.clear()
        self._next = self._highest = None
        self._playing = False

    def pull(self) -> tuple[Pull, bytes]:
        """One frame's worth for this tick."""
        if not self._playing:
            if self._next is None or len(self._buf) < self.target_depth:
                return Pull.EMPTY, b""
            self._playing = True
        if not self._buf:
            self._playing = False
            self.underruns += 1
            return Pull.EMPTY, b""
        assert self._next is not None
        item = self._buf.pop(self._next, None)
        self._next += 1
        if item is None:
            self.lost += 1
            return Pull.LOST, b""
        # drain excess beyond twice the target (clock drift, bursts): skip one old frame
        if len(self._buf) > 2 * self.target_depth + 2:
            self._buf.pop(self._next, None)
            self._next += 1
        return Pull.PACKET, item[1]
