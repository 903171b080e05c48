"""The per-call, per-minute media quality log record (SPEC.md field names).

Pure builders: `leg_fields` turns one leg's two directions into the SPEC's
`<in>_*` / `<out>_*` fields, `quality_record` assembles the full JSON object.
Jitter and RTT are in microseconds (integers), MOS is the clamped 1.0-4.4
figure, packet loss is the cumulative count over the call (as the old service's
CloudWatch metrics). `QualityLogWriter` appends one JSON line per record to a
path the caller chooses; the caller also supplies the wall clock.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.quality.engine import StreamSummary

HEADER_FIELDS = (
    "voice_connector_id",
    "event_timestamp",
    "call_id",
    "from_sip_user",
    "from_country",
    "to_sip_user",
    "to_country",
    "endpoint_id",
    "aws_region",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectionCounters:
    """What one direction of a leg carried (counted by the media plane)."""

    rtp_packets: int = 0
    rtp_bytes: int = 0
    rtcp_packets: int = 0
    rtcp_bytes: int = 0
    packets_lost: int = 0
    jitter_us: int = 0

    @classmethod
    def from_summary(
        cls, s: StreamSummary, *, rtcp_packets: int = 0, rtcp_bytes: int = 0
    ) -> DirectionCounters:
        """A received stream's figures (lost clamped at 0: duplicates make it negative)."""
        return cls(
            rtp_packets=s.packets,
            rtp_bytes=s.bytes,
            rtcp_packets=rtcp_packets,
            rtcp_bytes=rtcp_bytes,
            packets_lost=max(s.lost, 0),
            jitter_us=round(s.jitter_us),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LegQuality:
    """Both directions of one leg: `inbound` = towards the gateway (cust2vc / rem2vc)."""

    inbound: DirectionCounters
    outbound: DirectionCounters
    rtt_us: int | None = None
    mos: float | None = None


def leg_fields(leg: LegQuality, *, far: str) -> dict[str, Any]:
    """SPEC field names for one leg; far is "cust" (device leg) or "rem" (far end)."""
    if far not in ("cust", "rem"):
        raise ValueError("far must be 'cust' or 'rem'")
    out: dict[str, Any] = {}
    for prefix, d in ((f"{far}2vc", leg.inbound), (f"vc2{far}", leg.outbound)):
        out[f"{prefix}_rtp_packets"] = d.rtp_packets
        out[f"{prefix}_rtp_bytes"] = d.rtp_bytes
        out[f"{prefix}_rtcp_packets"] = d.rtcp_packets
        out[f"{prefix}_rtcp_bytes"] = d.rtcp_bytes
        out[f"{prefix}_packets_lost"] = d.packets_lost
        out[f"{prefix}_jitter"] = d.jitter_us
    out[f"rtt_btwn_vc_and_{far}"] = leg.rtt_us
    out[f"mos_btwn_vc_and_{far}"] = None if leg.mos is None else round(leg.mos, 2)
    return out


def quality_record(
    *,
    event_timestamp_ms: int,
    voice_connector_id: str,
    call_id: str,
    from_sip_user: str,
    from_country: str,
    to_sip_user: str,
    to_country: str,
    endpoint_id: str,
    aws_region: str,
    cust: LegQuality,
    rem: LegQuality,
) -> dict[str, Any]:
    """One quality-log object, header fields first, as SPEC.md lists them."""
    rec: dict[str, Any] = {
        "voice_connector_id": voice_connector_id,
        "event_timestamp": int(event_timestamp_ms),
        "call_id": call_id,
        "from_sip_user": from_sip_user,
        "from_country": from_country,
        "to_sip_user": to_sip_user,
        "to_country": to_country,
        "endpoint_id": endpoint_id,
        "aws_region": aws_region,
    }
    rec.update(leg_fields(cust, far="cust"))
    rec.update(leg_fields(rem, far="rem"))
    return rec


class QualityLogWriter:
    """Appends quality records as JSON lines to `path` (created with its folder).

    One write per record on an O_APPEND descriptor, so lines never interleave. The
    descriptor stays open between records (a call's reading every few seconds, thousands of
    calls); a stat of the path per record notices a rotated or deleted log and reopens it.
    """

    __slots__ = ("_path", "_fd", "_ino")

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._fd = -1
        self._ino: tuple[int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n"
        os.write(self._current(), line.encode())

    def _current(self) -> int:
        try:
            st = os.stat(self._path)
            if self._fd >= 0 and (st.st_dev, st.st_ino) == self._ino:
                return self._fd
        except FileNotFoundError:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        self.close()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self._fd)
        self._ino = (st.st_dev, st.st_ino)
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
