"""Black-box: the test endpoint calls H323Service over real TCP/UDP on loopback."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from benchmarks.load.h323_endpoint import PCMU, EpState, H323Caller, Mode
from gateway.calls import Admission, DigitSource
from gateway.h323 import messages as m
from gateway.h323.service import H323Service
from gateway.rtp.codecs import AudioCodec
from gateway.rtp.types import Codec
from tests.h323.apps import RecordingApp

pytestmark = pytest.mark.timeout(30)


async def _connected(
    svc: H323Service,
    app: RecordingApp,
    mode: Mode,
    dial: str = "1234567890",
    video: bool = False,
    **kw: object,
) -> H323Caller:
    caller = H323Caller(dial, mode, video=video, **kw)  # type: ignore[arg-type]
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    await caller.wait_for(
        lambda: caller.core.state is EpState.CONNECTED and caller.core.guid.hex() in app.connected
    )
    await caller.wait_for(lambda: caller.core.media["audio"].send_to is not None)
    return caller


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def spin() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(spin(), timeout)


async def test_fast_start_call_digits_and_caller_hangup(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.FAST_START, video=True)
    try:
        core = caller.core
        assert core.connect_fast_start
        call = app.admitted[0]
        assert call.target.meeting_id == "1234567890" and call.from_uri == "Test Room"
        legs = {leg.kind.value: leg for leg in app.connected[call.call_id].legs}
        assert core.media["audio"].send_to == ("127.0.0.1", legs["audio"].local_rtp_port)
        assert (
            core.media["audio"].send_format is m.MediaFormat.G722
        )  # our preference among its offer
        assert core.media["video"].send_format is m.MediaFormat.H264
        assert legs["audio"].config.remote_rtp == core.audio[0]
        # tunnelled H.245 still runs next to Fast Start: UII and keypad both reach the app
        await caller.wait_for(
            lambda: any(isinstance(x, m.TerminalCapabilitySetAck) for x in core.h245_msgs)
        )
        caller.send_uii("5")
        caller.send_keypad("7#")
        await _wait(lambda: len(app.digits) == 3)
        assert [(d, s) for _, d, s in app.digits] == [
            ("5", DigitSource.H245_UII),
            ("7", DigitSource.Q931_KEYPAD),
            ("#", DigitSource.Q931_KEYPAD),
        ]
        caller.hangup()
        await _wait(lambda: call.call_id in app.ended)
        await caller.wait_for(lambda: caller.signalling_closed)
        assert all(leg.closed for leg in legs.values())
    finally:
        await caller.close()


@pytest.mark.parametrize("early", [False, True], ids=["h245-after-connect", "h245-in-setup"])
async def test_tunnelled_h245_channels_and_gateway_hangup(gateway, early: bool) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.TUNNEL, video=True, early_h245=early)
    try:
        core = caller.core
        assert not core.connect_fast_start
        await caller.wait_for(lambda: core.media["video"].send_to is not None)
        call = app.admitted[0]
        legs = {leg.kind.value: leg for leg in app.connected[call.call_id].legs}
        await _wait(
            lambda: legs["audio"].config is not None and legs["audio"].config.remote_rtp is not None
        )
        assert legs["audio"].config.remote_rtp == core.audio[0]
        assert legs["audio"].config.codecs[0].name == "G722"
        caller.send_uii("#", signal=True)
        await _wait(lambda: app.digits)
        assert app.digits[0][1:] == ("#", DigitSource.H245_UII)
        app.connected[call.call_id].request_keyframe()
        await caller.wait_for(lambda: any(isinstance(x, m.VideoFastUpdate) for x in core.h245_msgs))
        app.connected[call.call_id].hangup("test over")
        await caller.wait_for(lambda: core.state is EpState.RELEASED)
        assert core.release_cause == 16
        assert any(isinstance(x, m.EndSession) for x in core.h245_msgs)
        assert call.call_id in app.ended
    finally:
        await caller.close()


@pytest.mark.parametrize("mode", [Mode.SEPARATE, Mode.SEPARATE_OFFER])
async def test_separate_h245(gateway, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, mode)
    try:
        core = caller.core
        if mode is Mode.SEPARATE:
            h245_port = core.gateway_h245[1]
            assert svc.settings.h245_range.low <= h245_port <= svc.settings.h245_range.high
        caller.send_uii("9")
        await _wait(lambda: app.digits)
        assert app.digits[0][1:] == ("9", DigitSource.H245_UII)
        caller.hangup()
        await _wait(lambda: app.ended)
    finally:
        await caller.close()


def _rms(payloads: list[bytes]) -> float:
    codec = AudioCodec(Codec(payload_type=0, name="PCMU", clock_rate=8000))
    pcm = np.concatenate([codec.decode(p) for p in payloads]).astype(np.float64)
    return float(np.sqrt(np.mean(pcm**2)))


async def test_two_endpoints_hear_each_other(gateway) -> None:  # type: ignore[no-untyped-def]
    """Fast Start caller and tunnelled-H.245 caller in one meeting: each hears the other's tone."""
    svc, app, plane = gateway
    app.join = True
    a = await _connected(svc, app, Mode.FAST_START, audio_formats=(PCMU,))
    b = await _connected(svc, app, Mode.TUNNEL, audio_formats=(PCMU,))
    await b.wait_for(lambda: b.core.media["audio"].send_format is m.MediaFormat.PCMU)
    codec = AudioCodec(Codec(payload_type=0, name="PCMU", clock_rate=8000))
    t = np.arange(160) / 8000.0
    try:
        for i in range(250):  # up to 5 s of 20 ms packets both ways
            a.send_rtp(
                "audio",
                codec.encode((8000 * np.sin(2 * np.pi * 440 * (t + i * 0.02))).astype(np.int16)),
                0,
            )
            b.send_rtp(
                "audio",
                codec.encode((8000 * np.sin(2 * np.pi * 700 * (t + i * 0.02))).astype(np.int16)),
                0,
            )
            await asyncio.sleep(0.02)
            heard_a = [d[12:] for d, _ in a.rtp_in["audio"][-10:]]
            heard_b = [d[12:] for d, _ in b.rtp_in["audio"][-10:]]
            if (
                len(heard_a) == 10
                and len(heard_b) == 10
                and _rms(heard_a) > 1000
                and _rms(heard_b) > 1000
            ):
                break
        assert _rms([d[12:] for d, _ in b.rtp_in["audio"][-10:]]) > 1000, "B does not hear A"
        assert _rms([d[12:] for d, _ in a.rtp_in["audio"][-10:]]) > 1000, "A does not hear B"
    finally:
        a.hangup()
        b.hangup()
        await a.close()
        await b.close()


async def test_draining_and_refusals(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    svc.stop_accepting()
    caller = H323Caller("1234567890", Mode.TUNNEL)
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    try:
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 42
    finally:
        await caller.close()
    svc.draining = False
    app.admission = Admission.NO_MEDIA_PORTS
    caller = H323Caller("1234567890", Mode.TUNNEL)
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    try:
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 47
    finally:
        await caller.close()


@pytest.mark.parametrize(
    "payload,cause",
    [
        (b"\x7b\x2c\x05\x31", 95),  # Information whose keypad IE overruns the message
        (b"\x62\x7e\x00\x04\x05\xff\xff\xff", 100),  # Facility whose UUIE is not valid PER
    ],
)
async def test_garbage_mid_call_releases_with_cause(gateway, payload: bytes, cause: int) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.TUNNEL)
    try:
        cr = caller.core.call_reference
        caller.core.send_raw(b"\x08\x02" + cr.to_bytes(2, "big") + payload)
        caller._flush()
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == cause
        await caller.wait_for(lambda: caller.signalling_closed)
        await _wait(lambda: app.ended)
    finally:
        await caller.close()


async def test_unknown_message_type_gets_status_97(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.TUNNEL)
    try:
        cr = caller.core.call_reference
        caller.core.send_raw(b"\x08\x02" + cr.to_bytes(2, "big") + b"\x4f")
        caller._flush()
        await caller.wait_for(lambda: caller.core.status_causes)
        assert caller.core.status_causes == [97]
        assert caller.core.state is EpState.CONNECTED  # the call carries on (Q.931 5.8.4)
    finally:
        caller.hangup()
        await caller.close()


async def test_bad_tpkt_before_setup_closes(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.test_port)  # type: ignore[attr-defined]
    try:
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing to release
        assert not app.admitted
    finally:
        writer.close()


async def test_application_bug_ends_only_that_call(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway

    def broken(call):  # type: ignore[no-untyped-def]
        raise RuntimeError("meetings layer bug")

    app.admit = broken  # type: ignore[method-assign]
    caller = H323Caller("1234567890", Mode.TUNNEL)
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    try:
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 41
    finally:
        await caller.close()
    del app.admit  # back to the recording admit: the service still takes calls
    ok = await _connected(svc, app, Mode.TUNNEL)
    ok.hangup()
    await ok.close()


async def test_malformed_fast_start_is_cause_100_before_admission(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = H323Caller("1234567890", Mode.FAST_START, raw_fast_start=(b"\xff\xff\xff\xff",))
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    try:
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 100
        assert not app.admitted  # refused before the application was asked
    finally:
        await caller.close()


async def test_garbage_on_separate_h245_releases_the_call(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.SEPARATE)
    try:
        await caller.wait_for(lambda: caller.h245_up)
        caller.send_raw_h245(b"\x03\x00\x00\x08\xff\xff\xff\xff")  # a TPKT of junk PER
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 111
        await _wait(lambda: app.ended)
    finally:
        await caller.close()


async def test_no_h245_connection_times_out(gateway) -> None:  # type: ignore[no-untyped-def]
    svc, app, plane = gateway
    svc.settings = dataclasses.replace(svc.settings, h245_wait_s=0.3)
    caller = H323Caller("1234567890", Mode.SEPARATE, dial_h245=False)
    await caller.call(svc.test_port)  # type: ignore[attr-defined]
    try:
        await caller.wait_for(lambda: caller.core.state is EpState.RELEASED)
        assert caller.core.release_cause == 102
    finally:
        await caller.close()


async def test_fast_start_audio_then_video_by_h245(gateway) -> None:  # type: ignore[no-untyped-def]
    """Common room-system habit: Fast Start for audio only, video opened later over H.245."""
    svc, app, plane = gateway
    caller = await _connected(svc, app, Mode.FAST_START, video=True, fast_start_video=False)
    try:
        core = caller.core
        assert core.connect_fast_start and core.media["audio"].send_format is m.MediaFormat.G722
        await caller.wait_for(lambda: core.media["video"].send_to is not None)
        call = app.admitted[0]
        video = next(leg for leg in app.connected[call.call_id].legs if leg.kind.value == "video")
        await _wait(lambda: video.config is not None and video.config.remote_rtp is not None)
        assert video.config.remote_rtp == core.video[0] and video.config.codecs[0].name == "H264"
        assert core.media["video"].send_to == ("127.0.0.1", video.local_rtp_port)
        # the gateway opened exactly one sending channel (video) over H.245: audio was Fast Start
        olcs = [x for x in core.h245_msgs if isinstance(x, m.OpenLogicalChannel)]
        assert [o.forward.capability.format for o in olcs] == [m.MediaFormat.H264]
    finally:
        caller.hangup()
        await caller.close()
