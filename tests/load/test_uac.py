"""The load UAC core with a fake clock: retransmissions, final responses, ACKs, INFO, BYE."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.load import rfc6076
from benchmarks.load.uac import (
    Answered,
    ByeCompleted,
    CallRequest,
    CallState,
    InfoAnswered,
    Progress,
    Rejected,
    RemoteBye,
    SipTransport,
    Uac,
    UacConfig,
)
from gateway.sip.message import Request, Response, response_to
from gateway.sip.parser import parse_message

ANSWER_SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              b"m=audio 20002 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def uac(transport: SipTransport = SipTransport.UDP) -> Uac:
    return Uac(UacConfig(transport=transport, target=("127.0.0.1", 5060)))


def call(u: Uac, cid: str = "c1", now: float = 0.0) -> Request:
    u.invite(CallRequest(call_id=cid, to_user="4718203956", rtp=("127.0.0.1", 40000),
                         contact=("127.0.0.1", 5099)), now)
    out = u.data_to_send()
    assert [o.call_id for o in out] == [cid]
    req = parse_message(out[0].data)
    assert isinstance(req, Request)
    return req


def sent(u: Uac) -> list[Request | Response]:
    return [parse_message(o.data) for o in u.data_to_send()]


def answer(req: Request, status: int, body: bytes = b"") -> Response:
    extra = (("Contact", "<sip:gw@127.0.0.1:5060>"),) if status < 300 else ()
    return response_to(req, status, to_tag="gwtag", extra=extra, body=body,
                       content_type="application/sdp" if body else "")


def established(u: Uac, cid: str = "c1") -> Request:
    inv = call(u, cid)
    u.receive_message(answer(inv, 200, ANSWER_SDP), 0.01)
    u.data_to_send()
    return inv


def test_invite_offers_pcmu_and_telephone_event() -> None:
    inv = call(uac())
    body = inv.body.decode()
    assert inv.method == "INVITE" and inv.uri.startswith("sip:4718203956@127.0.0.1")
    assert "m=audio 40000 RTP/AVP 0 101" in body and "telephone-event/8000" in body
    assert inv.top_via.branch.startswith("z9hG4bK")


def test_udp_invite_retransmits_on_timer_a_until_answered() -> None:
    u = uac()
    inv = call(u)
    times = []
    now = 0.0
    while (t := u.get_timer()) is not None and t < 4.0:
        now = t
        u.handle_timer(now)
        if out := sent(u):
            assert bytes(out[0]) == bytes(inv)
            times.append(round(now, 3))
    assert times == [0.5, 1.5, 3.5]  # T1, then doubling (RFC 3261 17.1.1.2)
    events = u.receive_message(answer(inv, 200, ANSWER_SDP), 4.0)
    assert isinstance(events[0], Answered) and events[0].remote_rtp == ("127.0.0.1", 20002)
    assert events[0].payload_types == (0, 101)
    ack = sent(u)[0]
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == "sip:gw@127.0.0.1:5060"
    assert ack.top_via.branch != inv.top_via.branch  # 2xx ACK is a new transaction
    assert u.get_timer() is None  # nothing left to retransmit
    assert u.records["c1"].invite_sends == 4


def test_provisional_stops_retransmission_and_sets_srd() -> None:
    u = uac()
    inv = call(u)
    assert u.receive_message(answer(inv, 100), 0.05) == []
    assert u.records["c1"].first_response_at is None  # 100 does not end SRD
    ev = u.receive_message(answer(inv, 180), 0.1)
    assert ev == [Progress(call_id="c1", status=180, at=0.1)]
    u.handle_timer(0.5)
    assert sent(u) == []
    u.receive_message(answer(inv, 200, ANSWER_SDP), 0.3)
    figs = rfc6076.figures(u.records.values())
    assert figs["srd_ms"]["p50"] == 100.0 and figs["ser"] == 1.0


def test_timer_b_gives_408_and_isa() -> None:
    u = uac(SipTransport.TLS)
    call(u)
    assert u.get_timer() == 32.0  # reliable: no Timer A, only Timer B = 64*T1
    ev = u.handle_timer(32.0)
    assert ev == [Rejected(call_id="c1", status=408, reason="Timer B", at=32.0)]
    assert sent(u) == [] and u.state("c1") is CallState.REJECTED
    figs = rfc6076.figures(u.records.values())
    assert figs["isa"] == 1.0 and figs["ser"] == 0.0


def test_failure_is_acked_on_invite_branch_and_retransmission_acked_again() -> None:
    u = uac()
    inv = call(u)
    ev = u.receive_message(answer(inv, 486), 0.2)
    assert ev == [Rejected(call_id="c1", status=486, reason="Busy Here", at=0.2)]
    ack = sent(u)[0]
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == inv.top_via.branch and ack.to.tag == "gwtag"
    assert u.receive_message(answer(inv, 486), 0.7) == []
    assert len(sent(u)) == 1
    figs = rfc6076.figures(u.records.values())
    assert figs["ser"] == 0.0 and figs["seer"] == 1.0 and figs["isa"] == 0.0
    assert figs["srd_failed_ms"]["n"] == 1


def test_retransmitted_2xx_gets_the_same_ack() -> None:
    u = uac()
    inv = call(u)
    u.receive_message(answer(inv, 200, ANSWER_SDP), 0.01)
    first = sent(u)
    assert u.receive_message(answer(inv, 200, ANSWER_SDP), 0.51) == []
    assert [bytes(m) for m in sent(u)] == [bytes(m) for m in first]


def test_bye_and_sdd() -> None:
    u = uac()
    established(u)
    u.bye("c1", 5.0)
    bye = sent(u)[0]
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.cseq.number == 2
    assert bye.to.tag == "gwtag"
    ev = u.receive_message(response_to(bye, 200), 5.02)
    assert ev == [ByeCompleted(call_id="c1", status=200, at=5.02)]
    figs = rfc6076.figures(u.records.values())
    assert abs(figs["sdd_ms"]["p50"] - 20.0) < 1e-6 and figs["bye_ok"] == 1


def test_bye_retransmits_up_to_t2_then_times_out() -> None:
    u = uac()
    established(u)
    u.bye("c1", 10.0)
    sent(u)
    gaps, last, ev = [], 10.0, []
    while (t := u.get_timer()) is not None:
        ev = u.handle_timer(t)
        if sent(u):
            gaps.append(round(t - last, 3))
            last = t
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # Timer E doubles up to T2
    assert ev == [ByeCompleted(call_id="c1", status=408, at=42.0)]  # Timer F = 64*T1


def test_digits_go_one_info_at_a_time_in_order() -> None:
    u = uac(SipTransport.TCP)
    established(u)
    u.send_digits("c1", "12#", 0.5)
    got = []
    for _ in range(3):
        (info,) = sent(u)
        assert isinstance(info, Request) and info.method == "INFO"
        assert info.header("Content-Type") == "application/dtmf-relay"
        got.append(info.body.decode().split("\r\n")[0])
        ev = u.receive_message(response_to(info, 200), 1.0)
        assert isinstance(ev[0], InfoAnswered) and ev[0].status == 200
    assert got == ["Signal=1", "Signal=2", "Signal=#"]
    assert sent(u) == []


def test_gateway_bye_is_answered_and_unknown_calls_get_481() -> None:
    u = uac()
    established(u)
    bye = Request(method="BYE", uri="sip:load@127.0.0.1:5099", headers=(
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgw1"),
        ("From", "<sip:4718203956@127.0.0.1>;tag=gwtag"), ("To", "<sip:load@127.0.0.1>;tag=x"),
        ("Call-ID", "c1"), ("CSeq", "1 BYE")))
    assert u.receive_message(bye, 3.0) == [RemoteBye(call_id="c1", at=3.0)]
    assert [m.status for m in sent(u) if isinstance(m, Response)] == [200]
    stray = bye.with_headers(tuple((k, "nope" if k == "Call-ID" else v) for k, v in bye.headers))
    assert u.receive_message(stray, 3.1) == []
    assert [m.status for m in sent(u) if isinstance(m, Response)] == [481]
    assert u.unmatched == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([100, 180, 183, 200, 200, 404, 486, 503]), min_size=1, max_size=8))
def test_any_response_sequence_gives_one_outcome(statuses: list[int]) -> None:
    u = uac()
    inv = call(u)
    outcomes = []
    for i, s in enumerate(statuses):
        if u.state("c1") in (CallState.CONFIRMED, CallState.REJECTED) and s < 200:
            continue
        evs = u.receive_message(answer(inv, s, ANSWER_SDP if s == 200 else b""), 0.1 * (i + 1))
        outcomes += [e for e in evs if isinstance(e, Answered | Rejected)]
        u.data_to_send()
    first_final = next((s for s in statuses if s >= 200), None)
    if first_final is None:
        assert outcomes == []
    else:
        assert len(outcomes) == 1 and outcomes[0].status == first_final
