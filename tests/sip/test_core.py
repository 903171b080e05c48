"""The user-agent core end to end, without sockets: fake clock, fake media legs, recording app."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls import Admission, DigitSource
from gateway.rtp.types import Direction, MediaKind
from gateway.sip.message import Request, Response
from gateway.sip.settings import SipSettings
from gateway.sip.transaction import T1
from tests.sip.helpers import (
    AUDIO_SDP,
    TCP,
    TLS,
    UDP,
    FakeMedia,
    RecordingApp,
    in_dialog,
    invite,
    make_core,
    sent,
)
from tests.sip.test_sdp import CISCO, POLY


def answered(core, clock, data=None, origin=UDP):
    core.receive_datagram(data or invite(), origin, clock.now)
    out = sent(core)
    final = [m for m in out if isinstance(m, Response) and m.status >= 200]
    assert final, out
    return final[-1]


def connect(core, clock, origin=UDP):
    ok = answered(core, clock, origin=origin)
    assert ok.status == 200
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKack1"), origin, clock.now)
    return ok


def test_invite_answer_ack_bye() -> None:
    core, app, media, clock, m = make_core()
    ok = connect(core, clock)
    assert app.admitted[0].target.meeting_id == "1234567890"
    assert len(app.connected) == 1 and media.legs[0].configs[-1].codecs[0].name == "PCMU"
    core.receive_datagram(in_dialog("BYE", ok.to.tag), UDP, clock.now)
    bye_ok = sent(core)[0]
    assert bye_ok.status == 200
    assert app.ended == [("c1", "remote-bye")] and media.legs[0].closed
    assert m.counts["InboundCallsAnswered"] == 1 and m.gauges["InboundCallsActive"] == 0


def test_2xx_retransmitted_until_ack_then_bye_on_ack_timeout() -> None:
    core, app, media, clock, m = make_core()
    answered(core, clock)
    resent = 0
    while (t := core.get_timer()) is not None and t <= clock.now + 64 * T1:
        core.handle_timer(t)
        for msg in sent(core):
            if isinstance(msg, Response) and msg.status == 200:
                resent += 1
            elif isinstance(msg, Request):
                assert msg.method == "BYE"
                break
        if app.ended:
            break
    assert resent >= 6
    assert app.ended == [("c1", "ack-timeout")]


def test_no_retransmission_on_tcp() -> None:
    core, app, media, clock, m = make_core()
    answered(core, clock, invite(transport="TCP"), origin=TCP)
    core.handle_timer(clock.now + 2.0)
    assert [x for x in sent(core) if isinstance(x, Response)] == []


def test_cancel_while_ringing_gives_487() -> None:
    core, app, media, clock, m = make_core(SipSettings(answer_delay_s=2.0, rate_limit_per_source=None))
    core.receive_datagram(invite(extra="Supported: 100rel\r\n"), UDP, clock.now)
    ringing = sent(core)
    assert ringing[0].status == 180 and ringing[0].header("RSeq") == "1"
    cancel = invite(sdp=None).replace(b"INVITE sip", b"CANCEL sip").replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    core.receive_datagram(cancel, UDP, clock.now + 0.5)
    out = sent(core)
    assert sorted((r.status, r.cseq.method) for r in out) == [(200, "CANCEL"), (487, "INVITE")]
    assert app.ended == [("c1", "cancelled")] and media.legs[0].closed
    core.handle_timer(clock.now + 3.0)
    assert not any(isinstance(x, Response) and x.status == 200 for x in sent(core))


def test_answer_after_ring_delay_and_prack() -> None:
    core, app, media, clock, m = make_core(SipSettings(answer_delay_s=1.0, rate_limit_per_source=None))
    core.receive_datagram(invite(extra="Require: 100rel\r\n"), UDP, clock.now)
    tag = sent(core)[0].to.tag
    core.receive_datagram(in_dialog("PRACK", tag, extra="RAck: 1 1 INVITE\r\n"), UDP, clock.now + 0.1)
    assert sent(core)[0].status == 200
    core.handle_timer(clock.now + 1.0)
    assert any(r.status == 200 and r.cseq.method == "INVITE" for r in sent(core))


def test_reinvite_same_sdp_keeps_version_new_sdp_bumps_it() -> None:
    core, app, media, clock, m = make_core()
    ok = connect(core, clock)
    body = AUDIO_SDP.encode()
    core.receive_datagram(in_dialog("INVITE", ok.to.tag, body=body, ctype="application/sdp", cseq=2), UDP, clock.now)
    re1 = sent(core)[0]
    assert re1.body == ok.body  # idempotent: same SDP, same version (Poly, INTEROP report 11)
    held = AUDIO_SDP.replace("a=sendrecv", "a=sendonly").encode()
    core.receive_datagram(in_dialog("INVITE", ok.to.tag, body=held, ctype="application/sdp", cseq=3,
                                    branch="z9hG4bKh"), UDP, clock.now)
    re2 = sent(core)[0]
    assert b"a=recvonly" in re2.body and re2.body != ok.body
    v1 = int(ok.body.split(b"\r\n")[1].split()[2])
    v2 = int(re2.body.split(b"\r\n")[1].split()[2])
    assert v2 == v1 + 1
    assert media.legs[0].configs[-1].direction is Direction.RECVONLY


def test_info_dtmf_both_types_and_fpu() -> None:
    core, app, media, clock, m = make_core()
    sdp = POLY
    ok = answered(core, clock, invite(sdp=sdp))
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa"), UDP, clock.now)
    core.receive_datagram(in_dialog("INFO", ok.to.tag, cseq=2, body=b"Signal=5\r\nDuration=160\r\n",
                                    ctype="application/dtmf-relay"), UDP, clock.now)
    core.receive_datagram(in_dialog("INFO", ok.to.tag, cseq=3, body=b"#", ctype="application/dtmf",
                                    branch="z9hG4bKi3"), UDP, clock.now)
    core.receive_datagram(in_dialog("INFO", ok.to.tag, cseq=4, body=b"<media_control><vc_primitive><to_encoder>"
                                    b"<picture_fast_update/></to_encoder></vc_primitive></media_control>",
                                    ctype="application/media_control+xml", branch="z9hG4bKi4"), UDP, clock.now)
    core.receive_datagram(in_dialog("INFO", ok.to.tag, cseq=5, body=b"Signal=Q", ctype="application/dtmf-relay",
                                    branch="z9hG4bKi5"), UDP, clock.now)
    assert [r.status for r in sent(core)] == [200, 200, 200, 400]
    assert [(d, s) for _, d, s in app.digits] == [("5", DigitSource.SIP_INFO), ("#", DigitSource.SIP_INFO)]
    video = [leg for leg in media.legs if leg.kind is MediaKind.VIDEO][0]
    assert video.keyframes == 1
    # the app asks for a keyframe: Poly has FIR, so it goes to the leg, not INFO
    control = app.connected[0][1]
    control.request_keyframe()
    assert video.keyframes == 2 and sent(core) == []


def test_keyframe_by_info_when_device_lacks_rtcp_feedback() -> None:
    core, app, media, clock, m = make_core()
    sdp = POLY.replace("a=rtcp-fb:* ccm fir\n", "").replace("a=rtcp-fb:* ccm tmmbr\n", "")
    ok = answered(core, clock, invite(sdp=sdp))
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa"), UDP, clock.now)
    app.connected[0][1].request_keyframe()
    info = sent(core)[0]
    assert isinstance(info, Request) and info.method == "INFO" and b"picture_fast_update" in info.body


def test_rfc4733_digits_from_the_leg_reach_the_app() -> None:
    core, app, media, clock, m = make_core()
    connect(core, clock)
    media.legs[0].on_dtmf("7", False)
    assert app.digits == [("c1", "7", DigitSource.RFC4733)]


def test_control_hangup_sends_bye() -> None:
    core, app, media, clock, m = make_core()
    connect(core, clock)
    app.connected[0][1].hangup("meeting-ended")
    bye = sent(core)[0]
    assert isinstance(bye, Request) and bye.method == "BYE" and "meeting-ended" in bye.header("Reason")
    assert app.ended == [("c1", "meeting-ended")]


def test_options_register_unknown_maxforwards_merged() -> None:
    core, app, media, clock, m = make_core()
    opt = invite(sdp=None).replace(b"INVITE sip", b"OPTIONS sip").replace(b"1 INVITE", b"1 OPTIONS")
    reg = opt.replace(b"OPTIONS sip", b"REGISTER sip").replace(b"1 OPTIONS", b"1 REGISTER").replace(b"aaa", b"r")
    foo = opt.replace(b"OPTIONS sip", b"FOO sip").replace(b"1 OPTIONS", b"1 FOO").replace(b"aaa", b"f")
    mf0 = invite(call_id="mf").replace(b"Max-Forwards: 70", b"Max-Forwards: 0").replace(b"aaa", b"m")
    for data in (opt, reg, foo, mf0):
        core.receive_datagram(data, UDP, clock.now)
    out = sent(core)
    assert [r.status for r in out] == [200, 405, 501, 483]
    assert "INVITE" in out[0].header("Allow") and "application/sdp" in out[0].header("Accept")
    assert out[1].header("Allow")
    core.receive_datagram(invite(call_id="x", branch="z9hG4bK1"), UDP, clock.now)
    core.receive_datagram(invite(call_id="x", branch="z9hG4bK2"), UDP, clock.now)
    assert [r.status for r in sent(core)] == [200, 482]


def test_admission_refusals_and_port_exhaustion() -> None:
    for admission, retry in ((Admission.DRAINING, True), (Admission.THROTTLED, True), (Admission.NO_MEDIA_PORTS, False)):
        core, app, media, clock, m = make_core(app=RecordingApp(admission))
        resp = answered(core, clock)
        assert resp.status == 503 and bool(resp.header("Retry-After")) is retry
        assert m.counts["InboundCallFailures"] == 1
    core, app, media, clock, m = make_core(media=FakeMedia(pairs=0))
    resp = answered(core, clock)
    assert resp.status == 503 and not resp.header("Retry-After") and app.ended == [("c1", "no-media-ports")]


def test_stop_accepting_and_rate_limit() -> None:
    core, app, media, clock, m = make_core()
    core.accepting = False
    assert answered(core, clock).status == 503
    core, app, media, clock, m = make_core(SipSettings(rate_limit_per_source=1.0, rate_limit_burst=2.0))
    statuses = [answered(core, clock, invite(call_id=f"r{i}", branch=f"z9hG4bKr{i}")).status for i in range(4)]
    assert statuses == [200, 200, 503, 503] and m.counts["Throttles"] == 2


def test_in_dialog_unknown_dialog_481_and_out_of_order_cseq_500() -> None:
    core, app, media, clock, m = make_core()
    ok = connect(core, clock)
    core.receive_datagram(in_dialog("BYE", "nope"), UDP, clock.now)
    core.receive_datagram(in_dialog("INFO", ok.to.tag, cseq=1, branch="z9hG4bKold"), UDP, clock.now)
    assert [r.status for r in sent(core)] == [481, 500]


def test_delayed_offer_answer_in_ack() -> None:
    core, app, media, clock, m = make_core()
    ok = answered(core, clock, invite(sdp=None))
    assert ok.status == 200 and b"m=audio" in ok.body and b"m=video" in ok.body
    answer = AUDIO_SDP.replace("m=audio 49170 RTP/AVP 0 8 101", "m=audio 49170 RTP/AVP 8 101") + "m=video 0 RTP/AVP 96\r\n"
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, body=answer.encode(), ctype="application/sdp",
                                    branch="z9hG4bKack"), UDP, clock.now)
    audio = media.legs[0]
    assert audio.configs and audio.configs[-1].codecs[0].name == "PCMA"
    assert audio.configs[-1].remote_rtp == ("192.0.2.10", 49170)
    assert len(app.connected) == 1


def test_session_timer_too_small_422_then_accepted() -> None:
    core, app, media, clock, m = make_core(SipSettings(min_se_s=90, rate_limit_per_source=None))
    resp = answered(core, clock, invite(extra="Session-Expires: 30\r\n"))
    assert resp.status == 422 and resp.header("Min-SE") == "90"
    resp = answered(core, clock, invite(call_id="c2", branch="z9hG4bKz", extra="Session-Expires: 90\r\nMin-SE: 90\r\n"))
    assert resp.status == 200 and resp.header("Session-Expires") == "90;refresher=uac"
    assert resp.header("Require") == "timer"


def test_we_refresh_by_update_and_handle_422() -> None:
    core, app, media, clock, m = make_core(SipSettings(min_se_s=4, session_expires_s=4, rate_limit_per_source=None))
    data = invite(extra="Session-Expires: 4;refresher=uas\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n")
    ok = answered(core, clock, data)
    assert ok.header("Session-Expires") == "4;refresher=uas"
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa"), UDP, clock.now)
    core.handle_timer(clock.now + 2.0)  # half the interval
    upd = sent(core)[0]
    assert isinstance(upd, Request) and upd.method == "UPDATE" and upd.header("Session-Expires") == "4;refresher=uac"
    # answer the UPDATE 422 with Min-SE 6 -> a new UPDATE with 6
    core.receive_datagram(_resp_for(upd, 422, extra=(("Min-SE", "6"),)), UDP, clock.now + 2.0)
    upd2 = sent(core)[0]
    assert upd2.method == "UPDATE" and upd2.header("Session-Expires").startswith("6;")
    core.receive_datagram(_resp_for(upd2, 200, extra=(("Session-Expires", "6;refresher=uac"),)), UDP, clock.now + 2.0)
    core.handle_timer(clock.now + 2.0 + 3.0)
    upd3 = sent(core)[0]
    assert upd3.method == "UPDATE"  # refreshed again at half of 6 s
    assert not app.ended


def test_peer_refresher_silent_means_bye_at_expiry() -> None:
    core, app, media, clock, m = make_core(SipSettings(min_se_s=90, rate_limit_per_source=None))
    ok = answered(core, clock, invite(extra="Session-Expires: 90;refresher=uac\r\n"))
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa"), UDP, clock.now)
    core.handle_timer(clock.now + 59.0)
    assert sent(core) == [] and not app.ended
    core.handle_timer(clock.now + 60.0)  # 90 - min(32, 90/3)
    bye = sent(core)[0]
    assert bye.method == "BYE" and app.ended == [("c1", "session-timer-expired")]


def test_refresh_by_reinvite_when_update_not_allowed() -> None:
    core, app, media, clock, m = make_core(SipSettings(min_se_s=4, session_expires_s=4, rate_limit_per_source=None))
    ok = answered(core, clock, invite(extra="Session-Expires: 4;refresher=uas\r\nAllow: INVITE, ACK, BYE\r\n"))
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa"), UDP, clock.now)
    core.handle_timer(clock.now + 2.0)
    reinv = sent(core)[0]
    assert reinv.method == "INVITE" and reinv.body == ok.body
    core.receive_datagram(_resp_for(reinv, 200, extra=(("Session-Expires", "4;refresher=uac"),), body=AUDIO_SDP.encode()),
                          UDP, clock.now + 2.0)
    ack = sent(core)[0]
    assert ack.method == "ACK" and ack.cseq.number == reinv.cseq.number


def test_configured_domains_are_enforced_only_when_set() -> None:
    core, app, media, clock, m = make_core(SipSettings(domains=frozenset({"meet.example.org"}),
                                                       rate_limit_per_source=None))
    assert answered(core, clock).status == 404  # gw.example.com is not ours
    ok = answered(core, clock, invite(call_id="d2", branch="z9hG4bKd2").replace(b"@gw.example.com", b"@meet.example.org"))
    assert ok.status == 200
    bare = invite(call_id="d3", branch="z9hG4bKd3").replace(b"sip:1234567890@gw.example.com SIP", b"sip:127.0.0.1 SIP")
    assert answered(core, clock, bare).status == 200 and app.admitted[-1].target.menu  # ID@IP / bare host
    core, app, media, clock, m = make_core()
    assert answered(core, clock).status == 200  # no domains configured: any host


def test_request_uri_forms() -> None:
    from gateway.sip.uas import dial_user

    assert dial_user("1234567890", "meet.example.org") == "1234567890"
    assert dial_user("1234567890;phone-context=x", "192.0.2.1") == "1234567890"
    assert dial_user("", "1234567890") == "1234567890"  # bare ID
    assert dial_user("", "1234567890.4321") == "1234567890.4321"  # bare ID.passcode
    assert dial_user("", "192.0.2.1") == ""  # bare IP: the menu
    core, app, media, clock, m = make_core(SipSettings(domains=frozenset({"meet.example.org"}),
                                                       rate_limit_per_source=None))
    bare = invite().replace(b"sip:1234567890@gw.example.com SIP", b"sip:1234567890 SIP")
    assert answered(core, clock, bare).status == 200
    assert app.admitted[-1].target.meeting_id == "1234567890"


def test_tls_contact_and_sips() -> None:
    core, app, media, clock, m = make_core()
    ok = answered(core, clock, invite(scheme="sips", transport="TLS"), origin=TLS)
    assert ok.status == 200 and ok.header("Contact").startswith("<sips:")


def _resp_for(req: Request, status: int, *, extra=(), body: bytes = b"") -> bytes:
    hdrs = [(k, v) for k, v in req.headers if k in ("Via", "From", "To", "Call-ID", "CSeq")]
    if body:
        hdrs.append(("Content-Type", "application/sdp"))
    return bytes(Response(status=status, headers=tuple(hdrs) + tuple(extra), body=body))


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 10**6), byte=st.integers(0, 255), which=st.sampled_from(["invite", "bye", "info", "cisco"]))
def test_mutated_messages_never_crash_the_core(pos: int, byte: int, which: str) -> None:
    core, app, media, clock, m = make_core()
    ok = connect(core, clock)
    base = {"invite": invite(call_id="m2", branch="z9hG4bKm2"),
            "bye": in_dialog("BYE", ok.to.tag),
            "info": in_dialog("INFO", ok.to.tag, body=b"Signal=1", ctype="application/dtmf-relay"),
            "cisco": invite(call_id="m3", branch="z9hG4bKm3", sdp=CISCO, scheme="sips")}[which]
    raw = bytearray(base)
    raw[pos % len(raw)] = byte
    core.receive_datagram(bytes(raw), UDP, clock.now)
    core.handle_timer(clock.now + 100)
    core.data_to_send()


def test_poly_reinvite_before_ack_is_answered_idempotently() -> None:
    core, app, media, clock, m = make_core()
    ok = answered(core, clock, invite(sdp=POLY))
    # ~60 ms after our 200, before its ACK, the device re-offers the very same SDP
    core.receive_datagram(in_dialog("INVITE", ok.to.tag, body=POLY.encode(), ctype="application/sdp", cseq=2),
                          UDP, clock.now + 0.06)
    re_ok = sent(core)[0]
    assert re_ok.status == 200 and re_ok.body == ok.body
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKa1"), UDP, clock.now + 0.07)
    core.receive_datagram(in_dialog("ACK", ok.to.tag, cseq=2, branch="z9hG4bKa2"), UDP, clock.now + 0.08)
    assert len(app.connected) == 1 and not app.ended
    core.handle_timer(clock.now + 40)  # no ACK timeout, no stray retransmission BYE
    assert not any(isinstance(x, Request) and x.method == "BYE" for x in sent(core))
    assert not app.ended
