"""pjsua2 (pjproject 2.15.1, a real SIP UA) calls the gateway over TLS, TCP and UDP.

Each call goes through the real SipService and the real MediaPlane on loopback.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.calls import DigitSource
from gateway.rtp.types import Direction, MediaKind
from tests.sip.peers import make_cert, run_agent, running_gateway, settings_for_tests

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(tmp_path_factory.mktemp("tls"))


def uri(gw, transport: str, user: str = "1234567890") -> str:
    port = gw.ports[f"sip_{transport}"]
    return f"sip:{user}@127.0.0.1:{port};transport={transport}"


@pytest.mark.parametrize("transport", ["tls", "tcp", "udp"])
async def test_call_dtmf_hold_unhold_bye(transport: str, cert: tuple[str, str]) -> None:
    settings = settings_for_tests(tls_port=0, cert_path=cert[0], key_path=cert[1])
    async with running_gateway(settings) as gw:
        spec = {"uri": uri(gw, transport), "transport": transport, "hangup_after": 3.2,
                "dtmf": [{"at": 0.4, "digits": "12", "method": "info"},
                         {"at": 0.9, "digits": "3#", "method": "rfc4733"}],
                "hold": [{"at": 1.8, "action": "hold"}, {"at": 2.4, "action": "unhold"}],
                "max_duration": 20}
        rc, events = await run_agent(spec)
        call_id, reason = await gw.wait("ended")
        assert rc == 0, events
        states = [e["state"] for e in events if e["event"] == "state"]
        assert "CONFIRMED" in states
        ended = [e for e in events if e["event"] == "ended"][0]
        assert ended["code"] == 200 and ended["by"] == "local"
        assert reason == "remote-bye"
        admitted = gw.app.admitted[0]
        assert admitted.target.meeting_id == "1234567890" and admitted.transport.value == transport
        assert len(gw.app.connected) == 1
        info = [d for _, d, s in gw.app.digits if s is DigitSource.SIP_INFO]
        rtp = [d for _, d, s in gw.app.digits if s is DigitSource.RFC4733]
        assert info == ["1", "2"]
        assert rtp == ["3", "#"]
        audio = [leg for leg in gw.media.legs if leg.kind is MediaKind.AUDIO][0]
        dirs = [c.direction for c in gw.media.configs[id(audio)]]
        assert Direction.SENDRECV in dirs and (Direction.RECVONLY in dirs or Direction.INACTIVE in dirs)
        assert dirs[-1] is Direction.SENDRECV  # unheld
        assert gw.metrics.counts["InboundCallsAnswered"] == 1
        assert gw.metrics.gauges["InboundCallsActive"] == 0


async def test_gateway_hangs_up_with_bye(cert: tuple[str, str]) -> None:
    async with running_gateway(settings_for_tests()) as gw:
        agent = asyncio.create_task(run_agent({"uri": uri(gw, "tcp", "meeting"), "transport": "tcp",
                                               "max_duration": 15}))
        call, control = await gw.wait("connected")
        assert call.target.menu and not call.target.unknown
        control.hangup("meeting-ended")
        rc, events = await agent
        ended = [e for e in events if e["event"] == "ended"][0]
        assert rc == 0 and ended["by"] == "remote" and ended["code"] == 200
        assert (call.call_id, "meeting-ended") in gw.app.ended


async def test_session_timer_negotiated_with_pjsua2(cert: tuple[str, str]) -> None:
    async with running_gateway(settings_for_tests(min_se_s=90, session_expires_s=1800)) as gw:
        rc, events = await run_agent({"uri": uri(gw, "udp"), "transport": "udp", "timer": "always",
                                      "session_expires": 90, "min_se": 90, "hangup_after": 1.0})
        assert rc == 0, events
        assert [e for e in events if e["event"] == "ended"][0]["code"] == 200
        assert gw.app.connected and gw.app.ended[0][1] == "remote-bye"


async def test_agent_answer_role_records_and_reports(tmp_path) -> None:
    """The agent as callee (what the probes reuse): answers, hears RFC 4733 DTMF, records a WAV."""
    import socket

    from tests.conftest import free_port

    port = free_port(socket.SOCK_DGRAM)
    rec = tmp_path / "heard.wav"
    bound = asyncio.Event()
    callee = asyncio.create_task(run_agent({"role": "answer", "transport": "udp", "local_port": port,
                                            "record_wav": str(rec), "max_duration": 15}, ready=bound))
    await asyncio.wait_for(bound.wait(), 15)  # the callee has bound its port
    rc, events = await run_agent({"uri": f"sip:x@127.0.0.1:{port}", "transport": "udp", "hangup_after": 1.5,
                                  "dtmf": [{"at": 0.3, "digits": "5", "method": "rfc4733"}]})
    rc2, events2 = await callee
    assert rc == 0 and rc2 == 0, (events, events2)
    assert [e["digit"] for e in events2 if e["event"] == "dtmf_received"] == ["5"]
    assert [e for e in events2 if e["event"] == "ended"][0]["by"] == "remote"
    stats = [e for e in events if e["event"] == "stats"][0]
    assert stats["tx_packets"] > 0 and stats["rx_packets"] > 0
    assert rec.stat().st_size > 44  # more than a WAV header
