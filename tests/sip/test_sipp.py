"""SIPp (3.6.1) scenarios against the gateway: load-shaped uac calls, CANCEL, delayed offer,
retransmissions under loss, and RFC 4028 session timers. SIPp's exit status 0 means every
call ended with the responses the scenario expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, sipp_ports
from tests.sip.peers import run_sipp, running_gateway, settings_for_tests

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]
SCENARIOS = ROOT / "tests" / "sipp"


def sipp_args(target: str, *extra: str, transport: str = "u1") -> list[str]:
    sip, media, control = sipp_ports()
    return [target, "-i", "127.0.0.1", "-p", str(sip), "-mp", str(media), "-cp", str(control), "-t", transport, "-timeout", "40s", "-timeout_error",
            "-s", "1234567890", *extra]


def successful(out: str) -> int:
    m = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return int(m.group(1)) if m else -1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_uac_calls(transport: str, tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests()) as gw:
        target = f"127.0.0.1:{gw.ports['sip_' + transport]}"
        rc, out = await run_sipp(sipp_args(target, "-sn", "uac", "-r", "20", "-m", "40",
                                           transport="u1" if transport == "udp" else "t1"), cwd=tmp_path)
        assert rc == 0, out[-2000:]
        assert successful(out) == 40
        assert gw.metrics.counts["InboundCallsAnswered"] == 40
        assert len(gw.app.ended) == 40 and {r for _, r in gw.app.ended} == {"remote-bye"}


async def test_cancel_before_answer(tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests(answer_delay_s=1.0)) as gw:
        target = f"127.0.0.1:{gw.ports['sip_udp']}"
        rc, out = await run_sipp(sipp_args(target, "-sf", str(SCENARIOS / "cancel.xml"), "-r", "10", "-m", "10"),
                                 cwd=tmp_path)
        assert rc == 0, out[-2000:]
        assert successful(out) == 10
        assert {r for _, r in gw.app.ended} == {"cancelled"} and not gw.app.connected
        assert gw.metrics.counts["InboundCallsAnswered"] == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_delayed_offer(transport: str, tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests()) as gw:
        target = f"127.0.0.1:{gw.ports['sip_' + transport]}"
        rc, out = await run_sipp(sipp_args(target, "-sf", str(SCENARIOS / "delayed_offer.xml"), "-r", "10", "-m", "5",
                                           transport="u1" if transport == "udp" else "t1"), cwd=tmp_path)
        assert rc == 0, out[-2000:]
        assert len(gw.app.connected) == 5
        audio_cfgs = [cfgs for leg, cfgs in zip(gw.media.legs, gw.media.configs.values(), strict=True)
                      if leg.kind.value == "audio"]
        assert all(c and c[-1].codecs[0].name == "PCMU" and c[-1].remote_rtp for c in audio_cfgs)


async def test_retransmissions_under_loss(tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests()) as gw:
        target = f"127.0.0.1:{gw.ports['sip_udp']}"
        rc, out = await run_sipp(sipp_args(target, "-sn", "uac", "-r", "10", "-m", "30", "-lost", "10",
                                           "-d", "200"), cwd=tmp_path, timeout=90)
        assert rc == 0, out[-3000:]
        assert successful(out) == 30
        lost = sum(int(line.split()[-1]) for line in out.splitlines()
                   if ("---------->" in line or "<----------" in line) and line.split()[-1].isdigit()
                   and len(line.split()) >= 6)
        assert lost > 0  # SIPp really dropped messages; both sides recovered by retransmission
        admitted = {c.call_id for c in gw.app.admitted}
        ended = {c for c, _ in gw.app.ended}
        assert len(admitted) == 30
        # SIPp's built-in uac does not check the CSeq method of the 200 it awaits after BYE: when
        # its ACK and BYE were both "lost", our 2xx retransmission satisfies it and it declares
        # success. Such a call must still be waiting for its ACK here (it ends with BYE at
        # 64*T1, RFC 3261 13.3.1.4), never stuck in any other state.
        for call_id in admitted - ended:
            call = gw.service.core.calls.calls[call_id]
            assert call.state.value == "answered" and call.pending_2xx is not None


async def test_session_timer_gateway_refreshes_by_update(tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests(min_se_s=2, session_expires_s=2)) as gw:
        target = f"127.0.0.1:{gw.ports['sip_udp']}"
        rc, out = await run_sipp(sipp_args(target, "-sf", str(SCENARIOS / "session_timer_gw_refresh.xml"),
                                           "-m", "1"), cwd=tmp_path)
        assert rc == 0, out[-2000:]  # seven UPDATE refreshes answered, call stayed up past 3 periods
        assert gw.app.ended[0][1] == "remote-bye"


async def test_session_timer_peer_refreshes_then_gateway_byes_at_expiry(tmp_path: Path) -> None:
    async with running_gateway(settings_for_tests(min_se_s=2, session_expires_s=2)) as gw:
        target = f"127.0.0.1:{gw.ports['sip_udp']}"
        rc, out = await run_sipp(sipp_args(target, "-sf", str(SCENARIOS / "session_timer_expiry.xml"), "-m", "1"),
                                 cwd=tmp_path)
        assert rc == 0, out[-2000:]
        assert gw.app.ended[0][1] == "session-timer-expired"
