"""Prometheus metrics under the old service's names (SPEC.md "Monitoring").

Counters keep the old names; the Prometheus client adds the conventional
``_total`` suffix on exposition (``InboundCallAttempts_total``). Media figures
are per direction, named as the old service's CloudWatch metrics were:
``<Dir><Figure>`` with Dir one of CustomerToVc, VcToCustomer, RemoteToVc,
VcToRemote, plus RTT/MOS "Between" pairs. They are generated from two small
tables rather than written out one by one.

Each daemon owns one :class:`Metrics` (its own registry), so tests can run
several daemons in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CALL_COUNTERS = (
    "InboundCallAttempts", "InboundCallFailures", "InboundCallsAnswered",
    "OutboundCallAttempts", "OutboundCallFailures", "OutboundCallsAnswered",
    "Throttles", "MediaPortsExhausted", "StrayRtpPacketsDropped",
)
CALL_GAUGES = ("InboundCallsActive", "OutboundCallsActive", "MeetingsActive")
SIP_CLASSES = tuple(f"Sip{n}xxCodes" for n in range(1, 7))

MEDIA_DIRECTIONS = ("CustomerToVc", "VcToCustomer", "RemoteToVc", "VcToRemote")
MEDIA_FIGURES = {  # figure -> (kind, help)
    "RtpPackets": ("counter", "RTP packets"),
    "RtpBytes": ("counter", "RTP bytes"),
    "RtcpPackets": ("counter", "RTCP packets"),
    "RtcpBytes": ("counter", "RTCP bytes"),
    "PacketsLost": ("counter", "RTP packets lost (RFC 3550 cumulative)"),
    "Jitter": ("gauge", "interarrival jitter, microseconds, average over active legs"),
}
LEG_PAIRS = ("VcAndCustomer", "VcAndRemote")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.counters: dict[str, Counter] = {
            name: Counter(name, name, registry=r) for name in (*CALL_COUNTERS, *SIP_CLASSES)
        }
        self.gauges: dict[str, Gauge] = {name: Gauge(name, name, registry=r) for name in CALL_GAUGES}
        for direction in MEDIA_DIRECTIONS:
            for figure, (kind, doc) in MEDIA_FIGURES.items():
                name = f"{direction}{figure}"
                if kind == "counter":
                    self.counters[name] = Counter(name, f"{doc}, {direction}", registry=r)
                else:
                    self.gauges[name] = Gauge(name, f"{doc}, {direction}", registry=r)
        for pair in LEG_PAIRS:
            self.gauges[f"RTTBetween{pair}"] = Gauge(
                f"RTTBetween{pair}", f"RTCP round-trip time, microseconds, {pair}", registry=r)
            self.gauges[f"MOSBetween{pair}"] = Gauge(
                f"MOSBetween{pair}", f"E-model MOS estimate 1.0-4.4, {pair}", registry=r)
        self.setup_delay = Histogram(
            "SessionRequestDelaySeconds", "RFC 6076 session request delay (INVITE to first final)",
            registry=r, buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))

        # 1 ms steps up to the 10 ms budget, so a p99 can be stated rather than bounded
        tick_buckets = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009,
                        0.01, 0.015, 0.02, 0.05, 0.1)
        self.tick_seconds = Histogram("ConferenceTickSeconds", "time one conference mix tick took",
                                      registry=r, buckets=tick_buckets)
        self.tick_lateness = Histogram("ConferenceTickLatenessSeconds",
                                       "how late a mix tick started against its 20 ms slot",
                                       registry=r, buckets=tick_buckets)

    def observe_tick(self, duration_s: float, lateness_s: float) -> None:
        self.tick_seconds.observe(duration_s)
        self.tick_lateness.observe(lateness_s)

    def inc(self, name: str, amount: float = 1) -> None:
        self.counters[name].inc(amount)

    def set(self, name: str, value: float) -> None:
        self.gauges[name].set(value)

    def add(self, name: str, amount: float) -> None:
        self.gauges[name].inc(amount)

    def sip_status(self, status: int) -> None:
        cls = status // 100
        if 1 <= cls <= 6:
            self.counters[f"Sip{cls}xxCodes"].inc()

    def gauge(self, name: str, value: float) -> None:
        self.set(name, value)

    def adapter_view(self) -> AdapterMetrics:
        return AdapterMetrics(self)

    def value(self, name: str) -> float:
        """Current value of a counter or gauge (tests and the API read it)."""
        metric = self.counters.get(name) or self.gauges[name]
        for m in metric.collect():
            for s in m.samples:
                if s.name in (name, f"{name}_total"):
                    return s.value
        return 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# Call-level figures (attempts, answered, active) are counted once, by the meetings
# application, whatever the protocol; signalling adapters count protocol-level ones
# (failures, SIP status classes, their own rate-limit throttles).
APPLICATION_OWNED = frozenset({"InboundCallAttempts", "InboundCallsAnswered", "InboundCallsActive"})


class AdapterMetrics:
    """What a signalling adapter sees: the same registry minus the application's figures."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def inc(self, name: str, amount: float = 1) -> None:
        if name not in APPLICATION_OWNED:
            self._m.inc(name, amount)

    def add(self, name: str, amount: float) -> None:
        if name not in APPLICATION_OWNED:
            self._m.add(name, amount)

    def gauge(self, name: str, value: float) -> None:
        if name not in APPLICATION_OWNED:
            self._m.set(name, value)
