"""Quality exports of a real call: per-interval and final quality-log records, metrics, CDR figures."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.daemon import start_daemon
from tests.peers import Agent, sip_uri, tone_wav

OPEN = "4718203956"
def _leg(far: str) -> list[str]:
    return ([f"{d}_{f}" for d in (f"{far}2vc", f"vc2{far}")
             for f in ("rtp_packets", "rtp_bytes", "rtcp_packets", "rtcp_bytes", "packets_lost", "jitter")]
            + [f"rtt_btwn_vc_and_{far}", f"mos_btwn_vc_and_{far}"])


SPEC_FIELDS = ("voice_connector_id event_timestamp call_id from_sip_user from_country to_sip_user to_country "
               "endpoint_id aws_region".split() + _leg("cust") + _leg("rem"))


def test_quality_log_metrics_and_cdr(tmp_path: Path) -> None:
    data = tmp_path / "var"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--id", OPEN,
                    "--data-dir", str(data)], check=True, capture_output=True, timeout=60)
    gw = start_daemon(data, env={"VTCGW_QUALITY_INTERVAL_S": "2"})
    try:
        a = Agent({"uri": sip_uri(OPEN, gw.ports["sip_tls"]), "transport": "tls", "hangup_after": 7,
                   "play_wav": str(tone_wav(tmp_path / "t.wav", 440)), "max_duration": 20}, name="a")
        a.wait_for("ended", timeout=25)
        assert a.stop() == 0
        req = urllib.request.Request(gw.api + "/metrics", headers=gw.headers)
        metrics = urllib.request.urlopen(req, timeout=10).read().decode()
    finally:
        gw.stop()
    records = [json.loads(line) for line in (data / "quality.jsonl").read_text().splitlines()]
    assert len(records) >= 3  # every 2 s during ~7 s, plus the final partial interval
    for rec in records:
        assert list(rec) == SPEC_FIELDS
    last = records[-1]
    assert last["cust2vc_rtp_packets"] > 250 and last["vc2cust_rtp_packets"] > 250  # ~50 pps each way
    assert last["cust2vc_packets_lost"] == 0 and last["cust2vc_jitter"] < 20_000  # µs, loopback
    assert 4.0 <= last["mos_btwn_vc_and_cust"] <= 4.4
    assert last["rtt_btwn_vc_and_cust"] is not None and 0 < last["rtt_btwn_vc_and_cust"] < 50_000
    assert OPEN not in json.dumps(records)  # meeting IDs are masked in logs
    counts = [r["cust2vc_rtp_packets"] for r in records]
    assert counts == sorted(counts)  # cumulative over the call
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values["CustomerToVcRtpPackets_total"] >= last["cust2vc_rtp_packets"] * 0.5
    assert 4.0 <= values["MOSBetweenVcAndCustomer"] <= 4.4
    # the mix tick is observable: ~50 ticks a second for the call's conference
    assert values["ConferenceTickSeconds_count"] > 100
    assert values['ConferenceTickSeconds_bucket{le="0.01"}'] >= 0.9 * values["ConferenceTickSeconds_count"]
    cdr = json.loads(next(p for p in (data / "cdr").rglob("*") if p.is_file()).read_text())
    assert cdr["Quality"]["mos_btwn_vc_and_cust"] == last["mos_btwn_vc_and_cust"]
