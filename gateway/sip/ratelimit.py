"""Per-source token buckets for new requests (sans-I/O, time passed in).

Each source IP may start ``rate`` new out-of-dialog requests per second with a burst
of ``burst``; above that the core answers 503 with Retry-After and counts a throttle.
Idle buckets are forgotten so a spray of sources cannot grow memory without bound.
"""

from __future__ import annotations


class RateLimiter:
    __slots__ = ("rate", "burst", "_buckets", "_max_sources")

    def __init__(self, rate: float, *, burst: float | None = None, max_sources: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_sources = max_sources

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_sources and source not in self._buckets:
            self._forget_idle(now)
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _forget_idle(self, now: float) -> None:
        full = self.burst / self.rate if self.rate > 0 else 0.0
        for src in [s for s, (_, last) in self._buckets.items() if now - last >= full]:
            del self._buckets[src]
        if len(self._buckets) >= self._max_sources:
            self._buckets.clear()
