"""Media port allocation over a configured UDP range (sans-I/O).

Rules (SPEC.md "Media and firewall ranges"; RFC 3550 section 11):
- RTP takes an even port, RTCP the next odd one; a pair is handed out whole even
  when the call later negotiates rtcp-mux, so the odd port never lands in another call.
- A released pair sits in quarantine for ``quarantine_s`` seconds before it can be
  handed out again, so stray packets of an old call never reach a new one.
- Exhaustion raises :class:`PortsExhausted`; the caller refuses the call
  (SIP 503, H.323 ReleaseComplete) and counts it.

Time is a parameter (``now`` in seconds, any monotonic origin); nothing here reads a clock.
Binding the sockets is the adapter's job; a pair whose bind fails is given back with
:meth:`PortAllocator.release` like any other (it then waits out the quarantine too).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class PortsExhausted(Exception):
    """No port pair is free outside quarantine."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PortPair:
    rtp: int
    rtcp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRange:
    low: int
    high: int

    def __post_init__(self) -> None:
        if not (1 <= self.low <= self.high <= 65535):
            raise ValueError(f"port range {self.low}-{self.high} is not within 1-65535")
        if self.pairs() < 1:
            raise ValueError(f"port range {self.low}-{self.high} holds no even/odd pair")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        low, sep, high = text.partition("-")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"{text!r} is not LOW-HIGH")
        return cls(low=int(low), high=int(high))

    def first_even(self) -> int:
        return self.low + (self.low % 2)

    def pairs(self) -> int:
        return max(0, (self.high - self.first_even() + 1) // 2)

    def overlaps(self, other: PortRange) -> bool:
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


class PortAllocator:
    """Hands out RTP/RTCP pairs round-robin, honouring a quarantine on release."""

    def __init__(self, port_range: PortRange, *, quarantine_s: float = 30.0) -> None:
        self.range = port_range
        self.quarantine_s = quarantine_s
        first = port_range.first_even()
        self._free: deque[int] = deque(first + 2 * i for i in range(port_range.pairs()))
        self._quarantine: deque[tuple[float, int]] = deque()
        self._in_use: set[int] = set()
        self.exhausted_count = 0

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    def _expire(self, now: float) -> None:
        while self._quarantine and self._quarantine[0][0] <= now:
            self._free.append(self._quarantine.popleft()[1])

    def allocate(self, now: float) -> PortPair:
        self._expire(now)
        if not self._free:
            self.exhausted_count += 1
            raise PortsExhausted(f"no free media port pair in {self.range}")
        rtp = self._free.popleft()
        self._in_use.add(rtp)
        return PortPair(rtp=rtp, rtcp=rtp + 1)

    def reserve(self, port: int) -> bool:
        """Never hand out the pair holding ``port`` (e.g. the probe reflector's). True if it was free."""
        rtp = port - (port - self.range.first_even()) % 2
        try:
            self._free.remove(rtp)
        except ValueError:
            return False
        return True

    def release(self, pair: PortPair, now: float) -> None:
        if pair.rtp not in self._in_use:
            return  # releasing twice is harmless
        self._in_use.discard(pair.rtp)
        self._quarantine.append((now + self.quarantine_s, pair.rtp))
