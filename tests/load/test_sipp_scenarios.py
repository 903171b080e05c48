"""The SIPp scenarios of benchmarks/sipp/ against the real daemon (UDP and TCP): basic calls
with G.711 from SIPp's pcap and BYE; a voice-menu call keying meeting ID 4718203956 and '#'
by SIP INFO, which must land in that meeting; the same keyed by RFC 2833 events from SIPp's
dtmf pcaps, whose packets must reach the gateway (see the scenario for why it stays in the menu)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_binary, sipp_ports
from tests.daemon import start_daemon

pytestmark = pytest.mark.timeout(120)
SCENARIOS = ROOT / "benchmarks" / "sipp"
MEETING = "4718203956"


def sipp(target: str, scenario: str, service: str, transport: str, calls: int, hold_ms: int,
         cwd: Path, *extra: str) -> tuple[int, str]:
    sip, media, control = sipp_ports()
    cmd = [require_binary("sipp"), target, "-sf", str(SCENARIOS / scenario), "-s", service,
           "-i", "127.0.0.1", "-p", str(sip), "-mp", str(media), "-cp", str(control), "-r", "10", "-m", str(calls), "-d", str(hold_ms),
           "-t", transport, "-aa", "-nostdin", "-timeout", "60s", "-timeout_error", *extra]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=90)
    m = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out.stdout)
    return (int(m.group(1)) if m else -1), out.stdout[-2500:] + out.stderr[-1000:]


@pytest.fixture
def gateway(tmp_path: Path):  # noqa: ANN201
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data),
                    "--id", MEETING, "--title", "sipp"], cwd=ROOT, check=True, capture_output=True)
    d = start_daemon(data, "--sip-udp-port", "0", "--sip-tcp-port", "0",
                     env={"VTCGW_QUALITY_INTERVAL_S": "1"})
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_basic_call_with_g711_and_bye(gateway, transport: str, tmp_path: Path) -> None:  # noqa: ANN001
    port = gateway.ports["sip_udp" if transport == "u1" else "sip_tcp"]
    ok, out = sipp(f"127.0.0.1:{port}", "uac_g711_bye.xml", MEETING, transport, 3, 2500, tmp_path)
    assert ok == 3, out
    gateway.stop()
    records = [json.loads(x) for x in (gateway.data_dir / "quality.jsonl").read_text().splitlines()]
    assert records and max(r["cust2vc_rtp_packets"] for r in records) > 0  # SIPp's pcap audio arrived


def ended_in(gateway) -> list[str | None]:  # noqa: ANN001
    return [json.loads(x)["meeting_id"] for x in gateway.log().splitlines() if '"call ended"' in x]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_meeting_id_keyed_by_sip_info(gateway, transport: str, tmp_path: Path) -> None:  # noqa: ANN001
    ids = tmp_path / "ids.csv"
    ids.write_text("SEQUENTIAL\n" + ";".join(MEETING) + "\n")
    port = gateway.ports["sip_udp" if transport == "u1" else "sip_tcp"]
    ok, out = sipp(f"127.0.0.1:{port}", "uac_info_meeting.xml", "meeting", transport, 2, 1000, tmp_path,
                   "-inf", str(ids))
    assert ok == 2, out
    gateway.stop()
    assert ended_in(gateway) == ["******" + MEETING[-4:]] * 2, gateway.log()[-3000:]


def test_rfc2833_digits_reach_the_gateway(gateway, tmp_path: Path) -> None:  # noqa: ANN001
    ok, out = sipp(f"127.0.0.1:{gateway.ports['sip_udp']}", "uac_rfc2833_meeting.xml", "meeting", "u1",
                   1, 500, tmp_path)
    assert ok == 1, out
    gateway.stop()
    records = [json.loads(x) for x in (gateway.data_dir / "quality.jsonl").read_text().splitlines()]
    assert max(r["cust2vc_rtp_packets"] for r in records) >= 11 * 10  # 11 digits of 10 packets
    assert ended_in(gateway) == [None]  # suspect digits (sequence gaps) are refused: still in the menu
