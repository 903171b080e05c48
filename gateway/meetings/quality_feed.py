"""Per-call quality out of the gateway: the per-minute log, Prometheus figures, the CDR's final figures.

Every minute of a call (counted from its answer) and once more when it ends, each
call's audio leg is read (`RtpLeg.stats()`, which the media plane computes from its
packet logs with the quality engine) and:

- one JSON line in the SPEC.md quality-log schema is appended to ``quality_log``;
- the per-direction Prometheus counters advance by what moved since the last read,
  and the Jitter/RTT/MOS gauges show the latest reading.

Naming: "cust" is the device leg. In a conference the "rem" side is our own mixer,
not a remote network leg, so the ``rem2vc_*``/``vc2rem_*`` fields are null rather than
invented. Meeting IDs are masked as in every other log.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway import logs
from gateway.quality.export import DirectionCounters, LegQuality, QualityLogWriter, quality_record

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.metrics import Metrics

log = logs.get_logger("vtcgw.quality")
DIRECTIONS = (("cust2vc", "CustomerToVc"), ("vc2cust", "VcToCustomer"))
COUNTED = (("rtp_packets", "RtpPackets"), ("rtp_bytes", "RtpBytes"), ("rtcp_packets", "RtcpPackets"),
           ("rtcp_bytes", "RtcpBytes"), ("packets_lost", "PacketsLost"))
REM_FIELDS = tuple(f"{d}_{f}" for d in ("rem2vc", "vc2rem") for f, _ in COUNTED) + \
    ("rem2vc_jitter", "vc2rem_jitter", "rtt_btwn_vc_and_rem", "mos_btwn_vc_and_rem")


def _counters(d: Any) -> DirectionCounters:
    return DirectionCounters(rtp_packets=d.rtp_packets, rtp_bytes=d.rtp_bytes, rtcp_packets=d.rtcp_packets,
                             rtcp_bytes=d.rtcp_bytes, packets_lost=d.packets_lost or 0,
                             jitter_us=d.jitter_us or 0)


def _user(uri: str) -> str:
    body = uri.split(":", 1)[-1]
    return body.split("@", 1)[0] if "@" in body else ""


class QualityFeed:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.writer = QualityLogWriter(config.path("quality_log"))
        self._last: dict[str, dict[str, int]] = {}  # call_id -> counter values already exported

    def record(self, *, call_id: str, from_uri: str, to_uri: str, stats: Any) -> dict[str, Any]:
        """Export one reading of a call's audio leg; returns the quality-log record written."""
        mos = getattr(stats, "mos", None)
        cust = LegQuality(inbound=_counters(stats.cust2vc), outbound=_counters(stats.vc2cust),
                          rtt_us=stats.rtt_us, mos=None if mos is None else float(mos))
        rec = quality_record(
            event_timestamp_ms=int(time.time() * 1000), voice_connector_id=self.config.node_id,
            call_id=call_id, from_sip_user=_user(from_uri), from_country="",
            to_sip_user=logs.mask_meeting_id(logs.mask_dial_string(_user(to_uri))) or "", to_country="",
            endpoint_id=self.config.node_id, aws_region=self.config.region,
            cust=cust, rem=LegQuality(inbound=DirectionCounters(), outbound=DirectionCounters()))
        rec.update(dict.fromkeys(REM_FIELDS))  # the far side is our mixer: nothing measured there
        for prefix, _ in DIRECTIONS:  # jitter unknown stays null, not 0
            if getattr(stats, prefix).jitter_us is None:
                rec[f"{prefix}_jitter"] = None
        self._export_metrics(call_id, rec, mos)
        try:
            self.writer.append(rec)
        except OSError as exc:
            log.error("quality log not written", call_id=call_id, error=str(exc))
        return rec

    def _export_metrics(self, call_id: str, rec: dict[str, Any], mos: Any) -> None:
        last = self._last.setdefault(call_id, {})
        for prefix, metric_dir in DIRECTIONS:
            for field, figure in COUNTED:
                key = f"{metric_dir}{figure}"
                value = rec[f"{prefix}_{field}"]
                if value > last.get(key, 0):
                    self.metrics.inc(key, value - last.get(key, 0))
                    last[key] = value
            if rec[f"{prefix}_jitter"] is not None:
                self.metrics.set(f"{metric_dir}Jitter", rec[f"{prefix}_jitter"])
        if rec["rtt_btwn_vc_and_cust"] is not None:
            self.metrics.set("RTTBetweenVcAndCustomer", rec["rtt_btwn_vc_and_cust"])
        if mos is not None:
            self.metrics.set("MOSBetweenVcAndCustomer", float(mos))

    def forget(self, call_id: str) -> None:
        self._last.pop(call_id, None)

