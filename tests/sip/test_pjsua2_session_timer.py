"""RFC 4028 with a real UA: pjsua2 asks for the shortest interval it allows (90 s) and the call
stays up past three refresh periods, with the refreshes seen on the wire (SIP message log)."""

from __future__ import annotations

import re

import pytest

from gateway.rtp.plane import MediaPlane
from gateway.rtp.ports import PortRange
from gateway.sip.service import SipService
from tests.sip.helpers import RecordingApp
from tests.sip.peers import run_agent, settings_for_tests

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]
INTERVAL = 90  # pjsip refuses anything shorter; the refresher refreshes at half of it


async def test_call_survives_three_session_refresh_periods() -> None:
    plane = MediaPlane(PortRange(low=31000, high=31999), PortRange(low=32002, high=32100), "127.0.0.1",
                       "127.0.0.1", quarantine_s=1.0, media_timeout_s=600)
    await plane.start()
    app = RecordingApp()
    log: list[dict] = []
    sip = SipService(settings_for_tests(min_se_s=INTERVAL, session_expires_s=INTERVAL), app, plane,
                     message_log=log.append)
    try:
        port = (await sip.start())["sip_udp"]
        hold = 3 * INTERVAL / 2 + 10  # past three refresh periods (refresh every INTERVAL/2)
        rc, events = await run_agent({"uri": f"sip:1234567890@127.0.0.1:{port};transport=udp",
                                      "transport": "udp", "timer": "always", "session_expires": INTERVAL,
                                      "min_se": INTERVAL, "hangup_after": hold, "max_duration": hold + 20},
                                     timeout=hold + 40)
    finally:
        await sip.close()
        await plane.close()
    assert rc == 0, events
    ended = next(e for e in events if e["event"] == "ended")
    assert ended["by"] == "local" and ended["code"] == 200  # our BYE after the hold, not an expiry
    assert app.ended and app.ended[0][1] == "remote-bye"
    refreshes = [m for m in log if re.match(r"(UPDATE|INVITE) ", m["sip_message"])
                 and "Session-Expires" in m["sip_message"]]
    # the initial INVITE plus at least three refreshes, by whichever side is the refresher
    assert len(refreshes) >= 4, [m["sip_message"].split("\r\n", 1)[0] for m in log]
