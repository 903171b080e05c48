"""Sans-I/O cores against each other with a fake clock: H.245 session, H.225.0 call, Fast Start."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.load.h323_endpoint import EndpointCore, EpState, Mode
from gateway.h323 import asn1, q931
from gateway.h323 import call as c
from gateway.h323 import h245 as h
from gateway.h323 import messages as m
from gateway.h323.errors import Cause
from gateway.h323.faststart import decode_proposals, select
from gateway.h323.q931 import MessageType
from gateway.h323.tpkt import TpktReader, frame
from gateway.rtp.types import MediaKind

G722 = m.MediaCapability(format=m.MediaFormat.G722)
PCMU = m.MediaCapability(format=m.MediaFormat.PCMU)
H264 = m.MediaCapability(format=m.MediaFormat.H264, max_bitrate_100bps=14000, h264_level=71)
LOCAL = {
    MediaKind.AUDIO: h.LocalMedia(rtp=("10.0.0.1", 5100), rtcp=("10.0.0.1", 5101)),
    MediaKind.VIDEO: h.LocalMedia(rtp=("10.0.0.1", 5102), rtcp=("10.0.0.1", 5103)),
}
PEER = {MediaKind.AUDIO: h.LocalMedia(rtp=("10.0.0.2", 7000), rtcp=("10.0.0.2", 7001))}


def _pump(a: h.H245Session, b: h.H245Session, now: float) -> tuple[list[h.Event], list[h.Event]]:
    ea: list[h.Event] = []
    eb: list[h.Event] = []
    for _ in range(20):
        pa, pb = a.pdus_to_send(), b.pdus_to_send()
        if not pa and not pb:
            break
        for p in pa:
            eb += b.receive_pdu(p, now)
        for p in pb:
            ea += a.receive_pdu(p, now)
    return ea, eb


def test_h245_sessions_negotiate_master_and_channels() -> None:
    gw = h.H245Session(capabilities=(G722, PCMU, H264), local_media=LOCAL, rng=random.Random(1))
    ep = h.H245Session(
        capabilities=(PCMU,), local_media=PEER, terminal_type=50, rng=random.Random(2)
    )
    gw.start(0.0)
    ep.start(0.0)
    eg, ee = _pump(gw, ep, 0.1)
    assert gw.master is True and ep.master is False
    sending = [e for e in eg if isinstance(e, h.ChannelSending)]
    assert [(e.kind, e.capability.format, e.remote_rtp) for e in sending] == [
        (MediaKind.AUDIO, m.MediaFormat.PCMU, ("10.0.0.2", 7000))
    ]  # no video: the peer has none
    receiving = [e for e in ee if isinstance(e, h.ChannelReceiving)]
    assert receiving and receiving[0].payload_type == 0
    assert any(isinstance(e, h.ChannelSending) and e.remote_rtp == ("10.0.0.1", 5100) for e in ee)
    # every procedure finished: only the keepalive period is left
    assert (
        gw.get_timer() == 0.0 + gw.timers.keepalive_s
        and ep.get_timer() == 0.0 + ep.timers.keepalive_s
    )


def test_h245_identical_terminal_types_resolve_by_number() -> None:
    a = h.H245Session(
        capabilities=(PCMU,), local_media=PEER, terminal_type=50, rng=random.Random(3)
    )
    b = h.H245Session(
        capabilities=(PCMU,), local_media=PEER, terminal_type=50, rng=random.Random(4)
    )
    a.start(0.0)
    b.start(0.0)
    _pump(a, b, 0.0)
    assert {a.master, b.master} == {True, False}


def test_h245_t101_and_t106_expire_into_session_failed() -> None:
    gw = h.H245Session(
        capabilities=(PCMU,),
        local_media=LOCAL,
        timers=h.H245Timers(t101_s=5, t106_s=7, keepalive_s=None),
    )
    gw.start(100.0)
    gw.pdus_to_send()
    assert gw.get_timer() == 105.0
    assert gw.handle_timer(104.9) == []
    ev = gw.handle_timer(105.0)
    assert isinstance(ev[0], h.SessionFailed) and ev[0].cause == Cause.RECOVERY_ON_TIMER_EXPIRY
    released = [asn1.decode_h245(p) for p in gw.pdus_to_send()]
    assert released == [m.TerminalCapabilitySetRelease()]
    ev = gw.handle_timer(107.0)
    assert "T106" in ev[0].reason  # type: ignore[union-attr]
    assert gw.get_timer() is None


def test_h245_round_trip_delay_and_t105() -> None:
    a = h.H245Session(capabilities=(PCMU,), local_media=PEER, timers=h.H245Timers(t105_s=3))
    b = h.H245Session(capabilities=(PCMU,), local_media=PEER)
    a.round_trip(10.0)
    for p in a.pdus_to_send():
        b.receive_pdu(p, 10.0)
    ev = [e for p in b.pdus_to_send() for e in a.receive_pdu(p, 10.025)]
    assert isinstance(ev[0], h.RoundTripMeasured) and ev[0].rtt_ms == pytest.approx(25.0)
    a.round_trip(20.0)
    assert isinstance(a.handle_timer(23.0)[0], h.SessionFailed)


def test_h245_keepalive_sends_round_trip_requests() -> None:
    gw = h.H245Session(
        capabilities=(PCMU,),
        local_media=LOCAL,
        timers=h.H245Timers(keepalive_s=10, t101_s=100, t106_s=100, t105_s=4),
    )
    gw.start(0.0)
    gw.pdus_to_send()
    assert gw.get_timer() == 10.0
    assert gw.handle_timer(10.0) == []
    assert [type(asn1.decode_h245(p)) for p in gw.pdus_to_send()] == [m.RoundTripDelayRequest]
    failed = gw.handle_timer(14.0)  # nobody answered: T105
    assert isinstance(failed[0], h.SessionFailed) and "T105" in failed[0].reason


def test_h245_user_input_keyframe_flow_end_session() -> None:
    gw = h.H245Session(capabilities=(PCMU,), local_media=LOCAL)
    ev = gw.receive_pdu(asn1.encode_h245(m.UserInput(text="*9x7")), 0)
    assert [e.digit for e in ev] == ["*", "9", "7"]  # type: ignore[union-attr]
    assert gw.receive_pdu(asn1.encode_h245(m.VideoFastUpdate(channel=2)), 0) == [
        h.KeyframeRequested(channel=2)
    ]
    assert gw.receive_pdu(
        asn1.encode_h245(m.FlowControl(channel=2, max_bitrate_100bps=100)), 0
    ) == [h.FlowControlReceived(channel=2, max_bitrate_100bps=100)]
    assert gw.receive_pdu(asn1.encode_h245(m.EndSession()), 0) == [h.SessionEnded()]
    assert [asn1.decode_h245(p) for p in gw.pdus_to_send()] == [m.EndSession()]


def test_h245_rejects_what_it_cannot_receive_and_closes() -> None:
    gw = h.H245Session(capabilities=(PCMU,), local_media=LOCAL)
    olc = m.OpenLogicalChannel(number=4, forward=m.ChannelParams(capability=G722, session_id=1))
    ev = gw.receive_pdu(asn1.encode_h245(olc), 0)
    assert isinstance(ev[0], h.ChannelRejected)
    assert [asn1.decode_h245(p) for p in gw.pdus_to_send()] == [
        m.OpenLogicalChannelReject(number=4, cause="dataTypeNotSupported")
    ]
    ok = m.OpenLogicalChannel(number=5, forward=m.ChannelParams(capability=PCMU, session_id=1))
    assert isinstance(gw.receive_pdu(asn1.encode_h245(ok), 0)[0], h.ChannelReceiving)
    gw.pdus_to_send()
    assert gw.receive_pdu(asn1.encode_h245(m.CloseLogicalChannel(number=5)), 0) == [
        h.ChannelClosed(number=5, kind=MediaKind.AUDIO, ours=False)
    ]
    assert [asn1.decode_h245(p) for p in gw.pdus_to_send()] == [m.CloseLogicalChannelAck(number=5)]


# --------------------------------------------------------------------------- H.225.0 call


def _ep(mode: Mode = Mode.FAST_START) -> EndpointCore:
    return EndpointCore(
        dial="1234567890",
        mode=mode,
        audio=(("10.0.0.2", 7000), ("10.0.0.2", 7001)),
        video=(("10.0.0.2", 7002), ("10.0.0.2", 7003)),
    )


def _messages(data: bytes) -> list[q931.Message]:
    return [q931.decode(p) for p in TpktReader().feed(data)]


def test_call_answers_fast_start_and_releases() -> None:
    ep = _ep()
    ep.setup()
    gw = c.H225Call(now=0.0)
    events = gw.receive_data(ep.data_to_send(), 1.0)
    setup = events[0]
    assert isinstance(setup, c.SetupReceived) and setup.call_id == ep.guid.hex()
    assert c.dial_string(setup.info.destination_aliases, setup.called_number) == "1234567890"
    answer = select(decode_proposals(setup.info.fast_start or ()), (G722, PCMU, H264), LOCAL)
    assert answer is not None
    assert [(x.kind, x.send.format, x.receive.format) for x in answer.media] == [  # type: ignore[union-attr]
        (MediaKind.AUDIO, m.MediaFormat.G722, m.MediaFormat.G722),
        (MediaKind.VIDEO, m.MediaFormat.H264, m.MediaFormat.H264),
    ]
    assert gw.get_timer() == 1.0 + gw.timers.answer_s
    gw.proceed(1.0)
    gw.connect(1.0, fast_start=answer.answers)
    assert gw.state is c.CallState.ACTIVE and gw.get_timer() is None
    ep.receive_data(gw.data_to_send())
    assert ep.state is EpState.CONNECTED
    assert ep.media["audio"].send_to == ("10.0.0.1", 5100) and ep.media["video"].send_to == (
        "10.0.0.1",
        5102,
    )
    ep.hangup(16)
    ev = gw.receive_data(ep.data_to_send(), 2.0)
    assert ev == [c.CallReleased(cause=16, reason="released by peer", by_peer=True)] and gw.closed


def test_call_answer_timer_releases_with_102() -> None:
    ep = _ep(Mode.TUNNEL)
    ep.setup()
    gw = c.H225Call(now=0.0, timers=c.CallTimers(answer_s=4))
    gw.receive_data(ep.data_to_send(), 0.0)
    assert gw.handle_timer(3.9) == []
    ev = gw.handle_timer(4.0)
    assert isinstance(ev[0], c.CallReleased) and ev[0].cause == Cause.RECOVERY_ON_TIMER_EXPIRY
    (rc,) = _messages(gw.data_to_send())
    assert (
        rc.message_type is MessageType.RELEASE_COMPLETE and rc.cause == 102 and rc.from_destination
    )


def test_call_no_setup_closes_quietly() -> None:
    gw = c.H225Call(now=0.0, timers=c.CallTimers(setup_wait_s=2))
    ev = gw.handle_timer(2.0)
    assert isinstance(ev[0], c.CallReleased) and gw.closed and gw.data_to_send() == b""


def test_call_status_enquiry_foreign_reference_and_t322() -> None:
    ep = _ep(Mode.TUNNEL)
    ep.setup()
    gw = c.H225Call(now=0.0)
    gw.receive_data(ep.data_to_send(), 0.0)
    gw.proceed(0.0)
    gw.connect(0.0)
    gw.data_to_send()
    enquiry = q931.encode(
        q931.Message(message_type=MessageType.STATUS_ENQUIRY, call_reference=ep.call_reference)
    )
    foreign = q931.encode(
        q931.Message(
            message_type=MessageType.INFORMATION, call_reference=ep.call_reference ^ 1, keypad="1"
        )
    )
    assert gw.receive_data(frame(enquiry) + frame(foreign), 1.0) == []
    status, rc = _messages(gw.data_to_send())
    assert (status.message_type, status.cause, status.call_state) == (MessageType.STATUS, 30, 10)
    assert (rc.message_type, rc.cause, rc.call_reference) == (
        MessageType.RELEASE_COMPLETE,
        81,
        ep.call_reference ^ 1,
    )
    assert gw.state is c.CallState.ACTIVE
    gw.status_enquiry(5.0)
    assert gw.get_timer() == 5.0 + gw.timers.t322_s
    ev = gw.handle_timer(9.0)
    assert isinstance(ev[0], c.CallReleased) and ev[0].cause == 102


def test_call_keypad_and_tunnelled_h245_events() -> None:
    ep = _ep(Mode.TUNNEL)
    ep.h245_start()
    ep.setup()  # the TCS and MSD ride in the Setup
    gw = c.H225Call(now=0.0)
    ev = gw.receive_data(ep.data_to_send(), 0.0)
    assert (
        isinstance(ev[0], c.SetupReceived)
        and isinstance(ev[1], c.TunnelledH245)
        and len(ev[1].pdus) == 2
    )
    gw.proceed(0.0)
    gw.connect(0.0)
    ep.receive_data(gw.data_to_send())
    ep.send_keypad("42#")
    assert gw.receive_data(ep.data_to_send(), 1.0) == [c.DigitsReceived(digits="42#")]


def test_empty_tpkt_is_a_keepalive() -> None:
    ep = _ep(Mode.TUNNEL)
    ep.setup()
    gw = c.H225Call(now=0.0)
    events = gw.receive_data(frame(b"") + ep.data_to_send() + frame(b""), 0.0)
    assert [type(e) for e in events] == [c.SetupReceived] and not gw.closed
    session = h.H245Session(capabilities=(PCMU,), local_media=LOCAL)
    assert session.receive_data(frame(b""), 0.0) == []


def test_dial_string_forms() -> None:
    a = m.Alias
    assert (
        c.dial_string((a(kind=m.AliasKind.H323_ID, value="192.0.2.1##1234567890"),), None)
        == "1234567890"
    )
    assert (
        c.dial_string((a(kind=m.AliasKind.URL, value="h323:meeting@gw.example"),), None)
        == "meeting"
    )
    assert (
        c.dial_string(
            (
                a(kind=m.AliasKind.H323_ID, value="x"),
                a(kind=m.AliasKind.DIALED_DIGITS, value="1234567890123"),
            ),
            None,
        )
        == "1234567890123"
    )
    assert c.dial_string((), "5551234") == "5551234"
    assert c.dial_string((), None) == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6), st.booleans())
def test_call_core_never_crashes_on_garbage(chunks: list[bytes], framed: bool) -> None:
    """Whatever arrives, the core answers with events and bytes, never an exception."""
    ep = _ep(Mode.TUNNEL)
    ep.setup()
    gw = c.H225Call(now=0.0)
    gw.receive_data(ep.data_to_send(), 0.0)
    gw.proceed(0.0)
    gw.connect(0.0)
    gw.data_to_send()
    for chunk in chunks:
        data = (
            frame(b"\x08\x02" + ep.call_reference.to_bytes(2, "big") + chunk) if framed else chunk
        )
        for ev in gw.receive_data(data, 1.0):
            if isinstance(ev, c.CallReleased):
                assert 1 <= ev.cause <= 127
        gw.data_to_send()
    if gw.closed and gw.release_cause is not None:
        assert gw.release_cause in {int(x) for x in Cause}


def test_h245_rejects_capabilities_without_common_audio() -> None:
    gw = h.H245Session(capabilities=(PCMU,), local_media=LOCAL)
    tcs = m.TerminalCapabilitySet(sequence_number=3, capabilities=(G722, H264))
    ev = gw.receive_pdu(asn1.encode_h245(tcs), 0)
    assert isinstance(ev[0], h.SessionFailed) and ev[0].cause == Cause.INCOMPATIBLE_DESTINATION
    assert [asn1.decode_h245(p) for p in gw.pdus_to_send()] == [
        m.TerminalCapabilitySetReject(sequence_number=3)
    ]


def test_h245_empty_capability_set_pauses_and_a_new_one_reopens() -> None:
    gw = h.H245Session(capabilities=(PCMU,), local_media=LOCAL, rng=random.Random(5))
    ep = h.H245Session(
        capabilities=(PCMU,), local_media=PEER, terminal_type=50, rng=random.Random(6)
    )
    gw.start(0.0)
    ep.start(0.0)
    _pump(gw, ep, 0.0)
    ep.send(m.TerminalCapabilitySet(sequence_number=2, empty=True))
    eg, _ = _pump(gw, ep, 1.0)
    assert h.ChannelClosed(number=1, kind=MediaKind.AUDIO, ours=True) in eg
    ep.send(m.TerminalCapabilitySet(sequence_number=3, capabilities=(PCMU,)))
    eg, _ = _pump(gw, ep, 2.0)
    assert any(
        isinstance(e, h.ChannelSending) and e.capability.format is m.MediaFormat.PCMU for e in eg
    )


def test_settings_refuse_what_h225_cannot_carry() -> None:
    from gateway.h323.service import H323Settings

    with pytest.raises(ValueError, match="IPv4"):
        H323Settings(advertise_host="gw.example.net")
    with pytest.raises(ValueError, match="audio"):
        H323Settings(capabilities=(H264,))
    assert H323Settings(advertise_host="192.0.2.7").media_kinds == (
        MediaKind.AUDIO,
        MediaKind.VIDEO,
    )


def test_h245_rejected_kind_waits_for_new_capabilities() -> None:
    gw = h.H245Session(capabilities=(PCMU, H264), local_media=LOCAL, rng=random.Random(7))
    gw.start(0.0)
    gw.pdus_to_send()
    peer_tcs = m.TerminalCapabilitySet(sequence_number=1, capabilities=(PCMU, H264))
    gw.receive_pdu(asn1.encode_h245(peer_tcs), 0.0)
    gw.receive_pdu(
        asn1.encode_h245(
            m.MasterSlaveDetermination(terminal_type=50, status_determination_number=1)
        ),
        0.0,
    )
    gw.receive_pdu(asn1.encode_h245(m.MasterSlaveDeterminationAck(master=True)), 0.0)
    gw.receive_pdu(asn1.encode_h245(m.TerminalCapabilitySetAck(sequence_number=1)), 0.0)
    olcs = [
        x for x in map(asn1.decode_h245, gw.pdus_to_send()) if isinstance(x, m.OpenLogicalChannel)
    ]
    video = next(o for o in olcs if o.forward and o.forward.capability.format is m.MediaFormat.H264)
    ev = gw.receive_pdu(asn1.encode_h245(m.OpenLogicalChannelReject(number=video.number)), 1.0)
    assert isinstance(ev[0], h.ChannelRejected) and ev[0].kind is MediaKind.VIDEO
    gw.receive_pdu(asn1.encode_h245(m.TerminalCapabilitySetAck(sequence_number=1)), 1.0)
    assert not any(isinstance(asn1.decode_h245(p), m.OpenLogicalChannel) for p in gw.pdus_to_send())
    gw.receive_pdu(
        asn1.encode_h245(m.TerminalCapabilitySet(sequence_number=2, capabilities=(PCMU, H264))), 2.0
    )
    again = [
        x for x in map(asn1.decode_h245, gw.pdus_to_send()) if isinstance(x, m.OpenLogicalChannel)
    ]
    assert [o.forward.capability.format for o in again] == [m.MediaFormat.H264]  # type: ignore[union-attr]
    assert again[0].number != video.number
