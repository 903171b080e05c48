"""`vtcgw-load calls --protocol h323` against the real daemon: Fast Start calls into one
meeting with G.711 both ways, and a moderator keying the meeting ID and passcode by H.245
UserInputIndication from the voice menu."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.daemon import start_daemon

pytestmark = pytest.mark.timeout(90)
MEETING = "5820391746"


def _create(data: Path, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data),
                    "--id", MEETING, "--title", "h323 load", *extra], cwd=ROOT, check=True, capture_output=True)


def _load(port: int, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.cli", "calls", "--protocol", "h323",
         "--target", f"127.0.0.1:{port}", "--meeting", MEETING, "--json", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    return json.loads(out.stdout)


def test_four_fast_start_calls_into_one_meeting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _create(data)
    daemon = start_daemon(data, env={"VTCGW_QUALITY_INTERVAL_S": "1"})
    try:
        report = _load(daemon.ports["h323"], "--calls", "4", "--rate", "20", "--hold", "2.5",
                       "--meeting-size", "4", "--quality-log", str(data / "quality.jsonl"))
    finally:
        daemon.stop()
    sip = report["sip"]  # RFC 6076 figures over the H.323 events
    assert report["protocol"] == "h323"
    assert sip["attempts"] == 4 and sip["answered"] == 4 and sip["ser"] == 1.0 and sip["isa"] == 0.0
    assert sip["srd_ms"]["n"] == 4 and sip["bye_ok"] == 4 and sip["sdd_ms"]["n"] == 4
    rx = report["rtp_received"]
    assert rx["calls"] == 4 and rx["packets_sent"] > 4 * 50
    assert rx["packets_received"] > 0.8 * rx["packets_sent"]  # the meeting's mix comes back
    q = report["gateway_quality"]
    assert q["calls_with_mos"] == 4 and q["p50"] > 3.5


def test_voice_menu_meeting_id_and_passcode_by_user_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _create(data, "--moderated", "--moderator-passcode", "1357")
    daemon = start_daemon(data)
    try:
        report = _load(daemon.ports["h323"], "--calls", "2", "--rate", "10", "--hold", "4",
                       "--meeting-size", "2", "--dial", "keypad", "--passcode", "1357")
    finally:
        daemon.stop()
    assert report["sip"]["answered"] == 2 and report["digit_path"] == "h245-uii"
    ended = [json.loads(x) for x in daemon.log().splitlines() if '"call ended"' in x]
    assert sorted(e["meeting_id"] for e in ended) == ["******" + MEETING[-4:]] * 2, daemon.log()[-3000:]
    assert "1357" not in daemon.log()  # the passcode is never logged
