"""The metrics hook the SIP service reports through (SPEC.md "Monitoring").

Names: InboundCallAttempts, InboundCallFailures, InboundCallsAnswered, Throttles,
Sip1xxCodes .. Sip6xxCodes (responses in and out) as counters; InboundCallsActive as
a gauge. Anything with ``inc(name, value)`` and ``gauge(name, value)`` will do, or a
plain callable ``(name, value) -> None`` (wrapped by :func:`as_metrics`, gauges then
arrive as their absolute value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

COUNTERS = ("InboundCallAttempts", "InboundCallFailures", "InboundCallsAnswered", "Throttles",
            *(f"Sip{n}xxCodes" for n in range(1, 7)))
GAUGES = ("InboundCallsActive",)


class Metrics(Protocol):
    def inc(self, name: str, value: float = 1.0) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...


class NullMetrics:
    def inc(self, name: str, value: float = 1.0) -> None:
        pass

    def gauge(self, name: str, value: float) -> None:
        pass


class CountingMetrics:
    """In-memory metrics: ``counts[name]`` and ``gauges[name]`` (tests, benchmarks)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.gauges: dict[str, float] = {}

    def inc(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value

    def gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value


class _CallableMetrics:
    def __init__(self, fn: Callable[[str, float], None]) -> None:
        self._fn = fn

    def inc(self, name: str, value: float = 1.0) -> None:
        self._fn(name, value)

    def gauge(self, name: str, value: float) -> None:
        self._fn(name, value)


def as_metrics(hook: Metrics | Callable[[str, float], None] | None) -> Metrics:
    if hook is None:
        return NullMetrics()
    if hasattr(hook, "inc") and hasattr(hook, "gauge"):
        return hook  # type: ignore[return-value]
    return _CallableMetrics(hook)  # type: ignore[arg-type]
