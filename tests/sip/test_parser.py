"""Parser, serializer and stream framing (RFC 3261 sections 7, 18.3, 25; RFC 5626 3.5.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.errors import SipParseError
from gateway.sip.headers import NameAddr, SipUri, Via, split_list
from gateway.sip.message import Request, Response, response_to
from gateway.sip.parser import MAX_MESSAGE, Keepalive, StreamFramer, parse_message
from tests.sip.helpers import invite


def test_compact_forms_and_multi_value_headers() -> None:
    raw = (b"INVITE sip:1234567890@gw SIP/2.0\r\n"
           b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1, SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\r\n"
           b"f: \"Room, A\" <sip:a@b>;tag=1\r\nt: sip:c@d\r\ni: abc\r\nCSeq: 1 INVITE\r\n"
           b"k: timer, 100rel\r\nx: 90;refresher=uac\r\nm: <sip:a@192.0.2.1>\r\nl: 0\r\n\r\n")
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    assert [v.host for v in msg.vias] == ["192.0.2.1", "proxy.example.com"]
    assert msg.from_.display == '"Room, A"' and msg.from_.tag == "1"
    assert msg.tokens("Supported") == {"timer", "100rel"}
    assert msg.header("Session-Expires") == "90;refresher=uac"
    assert msg.call_id == "abc"


def test_line_folding_joins_continuations() -> None:
    raw = invite(extra="Subject: I know you're there,\r\n   pick up the phone\r\n")
    msg = parse_message(raw)
    assert msg.header("Subject") == "I know you're there, pick up the phone"


def test_udp_body_longer_than_content_length_is_truncated() -> None:
    raw = invite(sdp=None).replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 3\r\n\r\nabcdef")
    assert parse_message(raw).body == b"abc"


@pytest.mark.parametrize(("mutate", "status", "words"), [
    (lambda r: r.replace(b"Content-Length: 0", b"Content-Length: 9"), 400, "Content-Length"),
    (lambda r: r.replace(b"CSeq: 1 INVITE", b"CSeq: 1 OPTIONS"), 400, "CSeq method"),
    (lambda r: r.replace(b"Call-ID: c1\r\n", b""), 400, "Missing Call-ID"),
    (lambda r: r.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505, "Version"),
    (lambda r: r.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), 400, "Max-Forwards"),
    (lambda r: r.replace(b"Call-ID: c1\r\n", b"Call-ID: c1\r\nCall-ID: c2\r\n"), 400, "Multiple Call-ID"),
    (lambda r: r.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999999999999 INVITE"), 400, "CSeq"),
    (lambda r: r.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n"), 400, "colon"),
])
def test_defects_raise_with_status_and_reason(mutate, status: int, words: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(mutate(invite(sdp=None)))
    assert info.value.status == status
    assert words in info.value.reason


def test_datagram_cap_and_header_count_cap() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"x" * (MAX_MESSAGE + 1))
    assert info.value.status == 513
    many = invite(sdp=None).replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 200 + b"Max-Forwards: 70\r\n")
    with pytest.raises(SipParseError) as info:
        parse_message(many)
    assert info.value.status == 513


def test_stream_framing_split_anywhere_and_pipelined() -> None:
    one = invite(call_id="a")
    two = invite(call_id="b", branch="z9hG4bKzzz")
    data = one + b"\r\n\r\n" + two
    for cut in (1, 17, len(one) - 1, len(one) + 2, len(data) - 3):
        fr = StreamFramer()
        items = fr.feed(data[:cut]) + fr.feed(data[cut:])
        msgs = [i.message for i in items if i.message is not None]
        assert [m.call_id for m in msgs] == ["a", "b"]
        assert sum(1 for i in items if i.keepalive is Keepalive.PING) == 1


def test_stream_without_content_length_is_fatal() -> None:
    raw = invite(sdp=None).replace(b"Content-Length: 0\r\n", b"")
    fr = StreamFramer()
    items = fr.feed(raw)
    assert fr.broken and items[0].error is not None and items[0].error.fatal
    assert "Content-Length" in items[0].error.reason
    assert fr.feed(b"more") == []


def test_stream_flood_without_end_of_headers_is_cut() -> None:
    fr = StreamFramer()
    items = fr.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * (MAX_MESSAGE + 10))
    assert fr.broken and items[0].error is not None and items[0].error.status == 513


def test_response_to_copies_dialog_headers_and_adds_tag() -> None:
    req = parse_message(invite(extra="Record-Route: <sip:p1;lr>\r\n"))
    assert isinstance(req, Request)
    resp = response_to(req, 200, to_tag="abc")
    again = parse_message(bytes(resp))
    assert isinstance(again, Response)
    assert again.to.tag == "abc" and again.call_id == req.call_id and again.header("Record-Route")
    assert response_to(req, 100, to_tag="abc").to.tag == ""


def test_uri_and_via_forms() -> None:
    u = SipUri.parse("sips:1234567890.4321@[2001:db8::1]:5061;transport=tls")
    assert (u.scheme, u.user, u.host, u.port) == ("sips", "1234567890.4321", "[2001:db8::1]", 5061)
    assert SipUri.parse("sip:%31%32@h").user == "12"
    v = Via.parse("SIP / 2.0 / UDP host.example.com ; branch=z9hG4bKx")
    assert v.transport == "UDP" and v.branch == "z9hG4bKx"
    assert NameAddr.parse("sip:a@b;tag=9").tag == "9"
    assert split_list('"a,b" <sip:x>, <sip:y,z>') == ['"a,b" <sip:x>', "<sip:y,z>"]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=",\"<>\\"),
                 min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(user=_token, host=_token, callid=_token, cseq=st.integers(0, 2**31 - 1),
       extra=st.lists(st.tuples(st.sampled_from(["X-Foo", "Subject", "User-Agent", "Priority"]), _value),
                      max_size=5),
       body=st.binary(max_size=200))
def test_round_trip(user: str, host: str, callid: str, cseq: int, extra, body: bytes) -> None:
    hdrs = (("Via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{callid}"), ("From", f"<sip:{user}@{host}>;tag=1"),
            ("To", f"<sip:{user}@{host}>"), ("Call-ID", callid), ("CSeq", f"{cseq} INFO"), *extra)
    req = Request(method="INFO", uri=f"sip:{user}@{host}", headers=hdrs, body=body)
    once = parse_message(bytes(req))
    assert bytes(once) == bytes(parse_message(bytes(once)))
    assert once.body == body and once.call_id == callid and once.cseq.number == cseq
    fr = StreamFramer()
    assert [i.message for i in fr.feed(bytes(req))][0] == once


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_crashes(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status < 600
    fr = StreamFramer()
    for item in fr.feed(data):
        assert item.message is not None or item.error is not None or item.keepalive is not None


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, 400), byte=st.integers(0, 255))
def test_mutated_invite_never_crashes(pos: int, byte: int) -> None:
    raw = bytearray(invite())
    raw[pos % len(raw)] = byte
    try:
        parse_message(bytes(raw))
    except SipParseError:
        pass
