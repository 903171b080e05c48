"""One meeting, two protocols: a pjsua2 SIP caller and the test H.323 endpoint hear each other.

The SIP side is the real SipService with a real pjsua2 agent (probes/pjsip_agent.py); the
H.323 side is H323Service with our test endpoint over Fast Start. Both services share one
MediaPlane and one CallApplication that joins every call to the conference of its meeting ID.
Each caller sends its own tone (SIP 440 Hz, H.323 700 Hz); each must hear the other's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from benchmarks.load.h323_endpoint import PCMU, EpState, H323Caller, Mode
from gateway.h323.service import H323Service, H323Settings
from gateway.rtp.codecs import AudioCodec
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import Codec
from gateway.sip.service import SipService
from tests.h323.apps import RecordingApp, port_ranges
from tests.peers import levels, tone_level, tone_wav
from tests.sip.peers import run_agent, settings_for_tests

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]
SIP_HZ, H323_HZ = 440.0, 700.0


async def test_sip_and_h323_callers_hear_each_other(tmp_path: Path) -> None:
    h323_range, sip_range = port_ranges()
    plane = MediaPlane(
        sip_range=sip_range,
        h323_range=h323_range,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
    )
    await plane.start()
    app = RecordingApp(plane=plane, join=True)
    h323 = H323Service(
        H323Settings(
            bind_host="127.0.0.1",
            advertise_host="127.0.0.1",
            port=0,
            h245_range=h323_range,
            video=False,
        ),
        app,
        plane,
    )
    sip = SipService(settings_for_tests(), app, plane)
    caller = H323Caller("1234567890", Mode.FAST_START, audio_formats=(PCMU,))
    try:
        h323_port = (await h323.start())["h323"]
        sip_port = (await sip.start())["sip_udp"]
        await caller.call(h323_port)
        await caller.wait_for(lambda: caller.core.state is EpState.CONNECTED)
        await caller.wait_for(lambda: caller.core.media["audio"].send_to is not None)

        heard = tmp_path / "sip-heard.wav"
        spec = {
            "uri": f"sip:1234567890@127.0.0.1:{sip_port};transport=udp",
            "transport": "udp",
            "play_wav": str(tone_wav(tmp_path / "sip.wav", SIP_HZ, seconds=10)),
            "record_wav": str(heard),
            "codecs": ["PCMU/8000"],
            "hangup_after": 4.0,
            "max_duration": 30,
        }
        agent = asyncio.create_task(run_agent(spec, timeout=60))
        codec = AudioCodec(Codec(payload_type=0, name="PCMU", clock_rate=8000))
        t = np.arange(160) / 8000.0
        i = 0
        while not agent.done():  # 20 ms packets of the H.323 tone for as long as the SIP call runs
            pcm = (8000 * np.sin(2 * np.pi * H323_HZ * (t + i * 0.02))).astype(np.int16)
            caller.send_rtp("audio", codec.encode(pcm), 0)
            i += 1
            await asyncio.sleep(0.02)
        rc, events = agent.result()
        assert rc == 0, events
        assert len(app.connected) == 2  # one H.323 and one SIP call in meeting 1234567890

        # the SIP caller heard the H.323 tone (and not just its own tone echoed back)
        sip_levels = levels(heard, [SIP_HZ, H323_HZ], start=1.0)
        assert sip_levels[H323_HZ] > 500 and sip_levels[H323_HZ] > 5 * sip_levels[SIP_HZ], (
            sip_levels
        )
        # the H.323 endpoint heard the SIP tone: decode what reached its RTP port
        pcm_in = np.concatenate([codec.decode(d[12:]) for d, _ in caller.rtp_in["audio"]]).astype(
            np.float64
        )
        assert len(pcm_in) > 8000 * 2, "under 2 s of audio reached the H.323 endpoint"
        h_sip = tone_level(pcm_in[-8000 * 2 :], 8000, SIP_HZ)
        h_own = tone_level(pcm_in[-8000 * 2 :], 8000, H323_HZ)
        assert h_sip > 500 and h_sip > 5 * h_own, (h_sip, h_own)
    finally:
        caller.hangup()
        await caller.close()
        await sip.close()
        await h323.close()
        await plane.close()
