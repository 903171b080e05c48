"""The per-minute quality log record: SPEC.md's exact field names and units."""

from __future__ import annotations

import json

import pytest

from gateway.quality.engine import QualityEngine
from gateway.quality.export import (
    HEADER_FIELDS,
    DirectionCounters,
    LegQuality,
    QualityLogWriter,
    quality_record,
)
from tests.quality.helpers import T0, rows

pytestmark = pytest.mark.usefixtures("engine_impl")  # native and NumPy loops alike

SPEC_FIELDS = [
    "voice_connector_id", "event_timestamp", "call_id", "from_sip_user", "from_country",
    "to_sip_user", "to_country", "endpoint_id", "aws_region",
    "cust2vc_rtp_packets", "cust2vc_rtp_bytes", "cust2vc_rtcp_packets", "cust2vc_rtcp_bytes",
    "cust2vc_packets_lost", "cust2vc_jitter", "vc2cust_rtp_packets", "vc2cust_rtp_bytes",
    "vc2cust_rtcp_packets", "vc2cust_rtcp_bytes", "vc2cust_packets_lost", "vc2cust_jitter",
    "rtt_btwn_vc_and_cust", "mos_btwn_vc_and_cust",
    "rem2vc_rtp_packets", "rem2vc_rtp_bytes", "rem2vc_rtcp_packets", "rem2vc_rtcp_bytes",
    "rem2vc_packets_lost", "rem2vc_jitter", "vc2rem_rtp_packets", "vc2rem_rtp_bytes",
    "vc2rem_rtcp_packets", "vc2rem_rtcp_bytes", "vc2rem_packets_lost", "vc2rem_jitter",
    "rtt_btwn_vc_and_rem", "mos_btwn_vc_and_rem",
]  # fmt: skip


def _record(tmp_arrivals=None):
    eng = QualityEngine()
    arr = [T0 + i * 20_000_000 + (2_000_000 if i == 5 else 0) for i in range(50)]
    eng.update(rows([i for i in range(50) if i != 20], arrival_ns=[a for i, a in enumerate(arr) if i != 20]))
    eng.note_rtt(1, 48_000)
    s = eng.summary(1)
    cust = LegQuality(
        inbound=DirectionCounters.from_summary(s, rtcp_packets=2, rtcp_bytes=104),
        outbound=DirectionCounters(rtp_packets=50, rtp_bytes=8600, rtcp_packets=2, rtcp_bytes=104),
        rtt_us=int(s.rtt_us), mos=s.mos.value,
    )  # fmt: skip
    rem = LegQuality(inbound=DirectionCounters(), outbound=DirectionCounters())
    rec = quality_record(
        event_timestamp_ms=1_700_000_060_000, voice_connector_id="node-1", call_id="c1",
        from_sip_user="room", from_country="DE", to_sip_user="meeting", to_country="US",
        endpoint_id="ep", aws_region="site-a", cust=cust, rem=rem,
    )  # fmt: skip
    return s, rec


def test_field_names_are_exactly_the_spec():
    _, rec = _record()
    assert list(rec) == SPEC_FIELDS
    assert tuple(SPEC_FIELDS[:9]) == HEADER_FIELDS


def test_units_microseconds_and_cumulative_loss():
    s, rec = _record()
    assert rec["cust2vc_packets_lost"] == 1
    assert rec["cust2vc_jitter"] == round(s.jitter_us) > 0
    assert rec["rtt_btwn_vc_and_cust"] == 48_000
    assert 1.0 <= rec["mos_btwn_vc_and_cust"] <= 4.4
    assert rec["rtt_btwn_vc_and_rem"] is None and rec["mos_btwn_vc_and_rem"] is None
    assert rec["event_timestamp"] == 1_700_000_060_000


def test_writer_appends_json_lines(tmp_path):
    _, rec = _record()
    w = QualityLogWriter(tmp_path / "logs" / "quality.jsonl")
    w.append(rec)
    w.append(rec)
    lines = (tmp_path / "logs" / "quality.jsonl").read_text().splitlines()
    assert [json.loads(ln) for ln in lines] == [rec, rec]
