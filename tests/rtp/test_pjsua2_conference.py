"""Three real SIP phones (pjsua2 agents) in one conference through SipService + MediaPlane.

Each plays its own tone; each must hear the other two tones and not its own (mix-minus).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.rtp.plane import MediaPlane
from gateway.sip.service import SipService
from tests.h323.apps import RecordingApp, port_ranges
from tests.peers import levels, tone_wav
from tests.sip.peers import run_agent, settings_for_tests

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]
TONES = {"a": 400.0, "b": 700.0, "c": 1100.0}


async def test_three_pjsua2_phones_hear_the_others_not_themselves(tmp_path: Path) -> None:
    h323_range, sip_range = port_ranges()
    plane = MediaPlane(
        sip_range=sip_range,
        h323_range=h323_range,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
    )
    await plane.start()
    app = RecordingApp(plane=plane, join=True)
    sip = SipService(settings_for_tests(), app, plane)
    try:
        port = (await sip.start())["sip_udp"]
        heard = {n: tmp_path / f"{n}-heard.wav" for n in TONES}
        agents = [
            asyncio.create_task(
                run_agent(
                    {
                        "uri": f"sip:1234567890@127.0.0.1:{port};transport=udp",
                        "transport": "udp",
                        "play_wav": str(tone_wav(tmp_path / f"{n}.wav", hz, seconds=12)),
                        "record_wav": str(heard[n]),
                        "codecs": ["PCMU/8000"],
                        "hangup_after": 6.0,
                        "max_duration": 40,
                    },
                    timeout=90,
                )
            )
            for n, hz in TONES.items()
        ]
        results = await asyncio.gather(*agents)
        for rc, events in results:
            assert rc == 0, events
        assert len(app.connected) == 3
        for n, hz in TONES.items():
            # from 2.5 s on all three are in the meeting (agents start within ~1 s of each other)
            lv = levels(heard[n], list(TONES.values()), start=2.5, end=5.5)
            others = [lv[f] for m, f in TONES.items() if m != n]
            assert min(others) > 300, (n, lv)
            assert lv[hz] * 5 < min(others), (n, lv)
    finally:
        await sip.close()
        await plane.close()
