"""`vtcgw-load calls` against the real daemon: five TLS calls into one meeting with G.711
both ways; every call is established, RTP flows both ways, and the gateway logs quality."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.daemon import start_daemon

pytestmark = pytest.mark.timeout(90)
MEETING = "4718203956"


def test_five_tls_calls_into_one_meeting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data),
                    "--id", MEETING, "--title", "load"], cwd=ROOT, check=True, capture_output=True)
    daemon = start_daemon(data, env={"VTCGW_QUALITY_INTERVAL_S": "1"})
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.load.cli", "calls", "--target",
             f"127.0.0.1:{daemon.ports['sip_tls']}", "--transport", "tls", "--calls", "5",
             "--rate", "20", "--hold", "2.5", "--meeting", MEETING, "--meeting-size", "5",
             "--quality-log", str(data / "quality.jsonl"), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        daemon.stop()
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    report = json.loads(out.stdout)
    sip = report["sip"]
    assert sip["attempts"] == 5 and sip["answered"] == 5 and sip["ser"] == 1.0 and sip["isa"] == 0.0
    assert sip["bye_ok"] == 5 and sip["srd_ms"]["n"] == 5 and sip["sdd_ms"]["n"] == 5
    assert report["connections"]["opened"] == 5  # one TLS connection per call by default
    rx = report["rtp_received"]
    assert rx["calls"] == 5 and rx["packets_sent"] > 5 * 50
    assert rx["packets_received"] > 0.8 * rx["packets_sent"]  # the mix comes back on every leg
    q = report["gateway_quality"]
    assert q["records"] >= 5 and q["calls_with_mos"] == 5 and q["p50"] > 3.5


def test_keyed_meeting_id_and_passcode_by_rfc4733_over_tcp(tmp_path: Path) -> None:
    """Two calls dial the voice menu and key the meeting ID and '#' as RFC 4733 events on
    their RTP; the first also keys the moderator passcode. Both land in the meeting."""
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data),
                    "--id", MEETING, "--title", "load", "--moderated", "--moderator-passcode", "2468"],
                   cwd=ROOT, check=True, capture_output=True)
    daemon = start_daemon(data, "--sip-tcp-port", "0")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.load.cli", "calls", "--target",
             f"127.0.0.1:{daemon.ports['sip_tcp']}", "--transport", "tcp", "--calls", "2",
             "--rate", "10", "--hold", "4", "--meeting", MEETING, "--meeting-size", "2",
             "--dial", "keypad", "--dtmf", "rfc4733", "--passcode", "2468", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        daemon.stop()
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    report = json.loads(out.stdout)
    assert report["sip"]["answered"] == 2 and report["digit_path"] == "rfc4733"
    ended = [json.loads(x) for x in daemon.log().splitlines() if '"call ended"' in x]
    assert sorted(e["meeting_id"] for e in ended) == ["******" + MEETING[-4:]] * 2, daemon.log()[-3000:]
    assert "2468" not in daemon.log()  # the passcode is never logged
