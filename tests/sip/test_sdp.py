"""SDP offer/answer against the device shapes in INTEROP.md (Cisco, Poly) and RFC 3264 rules."""

from __future__ import annotations

import pytest

from gateway.rtp.types import Direction, MediaKind
from gateway.sip.errors import SipParseError
from gateway.sip.offer_answer import (
    LocalMedia,
    OfferRejected,
    apply_answer,
    build_answer,
    build_offer,
    negotiate,
    new_srtp_key,
)
from gateway.sip.sdp import Sdp

CISCO = """v=0
o=tandberg 7 2 IN IP4 192.0.2.20
s=-
c=IN IP4 192.0.2.20
b=AS:6000
t=0 0
m=audio 2326 RTP/SAVP 108 9 104 105 0 8 18 101 111
b=TIAS:64000
a=rtpmap:108 MP4A-LATM/90000
a=rtpmap:104 G7221/16000
a=fmtp:104 bitrate=32000
a=rtpmap:105 G7221/16000
a=fmtp:105 bitrate=24000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtpmap:111 x-ulpfecuc/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48|1:4
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj
a=sendrecv
m=video 2328 RTP/SAVP 97 126 34 31
b=TIAS:6000000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e016;max-mbps=245000;max-fs=8160
a=rtpmap:126 H264/90000
a=fmtp:126 profile-level-id=42e016;packetization-mode=1;max-fs=3601;max-rcmd-nalu-size=32000
a=rtpmap:34 H263/90000
a=rtpmap:31 H261/90000
a=content:main
a=label:11
a=rtcp-fb:* ccm fir
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:* nack pli
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48
a=sendrecv
m=video 2330 RTP/SAVP 97 126
a=rtpmap:97 H264/90000
a=rtpmap:126 H264/90000
a=fmtp:126 profile-level-id=42e016;packetization-mode=1
a=content:slides
a=label:12
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
a=sendrecv
m=application 5070 UDP/BFCP *
a=floorctrl:c-s
a=confid:1
a=floorid:2 mstrm:12
a=userid:2
m=application 2332 RTP/AVP 125
a=rtpmap:125 H224/4800
a=sendrecv
"""

POLY = """v=0
o=GroupSeries 1706543823 1 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
b=AS:1920
t=0 0
m=audio 49152 RTP/AVP 119 115 102 9 0 8 15 18
a=rtpmap:119 telephone-event/8000
a=fmtp:119 0-15
a=rtpmap:115 SIRENLPR/48000/2
a=rtpmap:102 G7221/16000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:15 G728/8000
a=rtpmap:18 G729/8000
a=sendrecv
m=video 49154 RTP/AVP 109 110 111 96 34 31
b=TIAS:1920000
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=64001f;packetization-mode=1;max-br=2000;sar=13
a=rtpmap:110 H264/90000
a=fmtp:110 profile-level-id=42801f;packetization-mode=1
a=rtpmap:111 H264/90000
a=fmtp:111 profile-level-id=42801f
a=rtpmap:96 H263-1998/90000
a=rtpmap:34 H263/90000
a=rtpmap:31 H261/90000
a=rtcp-fb:* ccm fir
a=rtcp-fb:* ccm tmmbr
a=sendrecv
m=application 0 UDP/BFCP *
a=inactive
m=application 49156 TCP/BFCP *
a=floorctrl:c-s
a=setup:actpass
a=connection:new
"""


def ports(plans) -> dict[int, LocalMedia]:
    return {p.index: LocalMedia(rtp_port=30000 + 2 * p.index,
                                srtp_tx=new_srtp_key(p.srtp_rx.suite) if p.srtp_rx else None)
            for p in plans if p.kind is not None}


def test_cisco_offer_over_tls() -> None:
    offer = Sdp.parse(CISCO)
    plans = negotiate(offer, srtp_ok=True, require_srtp=True)
    kinds = [p.kind for p in plans]
    assert kinds == [MediaKind.AUDIO, MediaKind.VIDEO, None, None, None]  # slides, BFCP, H224 declined
    audio, video = plans[0], plans[1]
    assert [c.name for c in audio.codecs] == ["G722", "PCMU", "PCMA"]  # offerer's order, G7221/x-ulpfecuc out
    assert audio.telephone_event_pt == 101
    assert audio.srtp_rx is not None and audio.srtp_rx.suite == "AES_CM_128_HMAC_SHA1_80"  # MKI tolerated
    assert [c.payload_type for c in video.codecs] == [97, 126]
    assert "packetization-mode=0" in video.codecs[0].fmtp  # absent means 0
    assert "packetization-mode=1" in video.codecs[1].fmtp
    assert all("max-fs=" in c.fmtp and "max-mbps=" in c.fmtp for c in video.codecs)
    assert {"ccm fir", "nack pli"} <= video.rtcp_fb
    assert video.remote_rtp == ("192.0.2.20", 2328) and video.remote_rtcp == ("192.0.2.20", 2329)
    answer = build_answer(offer, plans, ports(plans), host="198.51.100.1", session_id="5", version=1)
    text = str(answer)
    again = Sdp.parse(text)
    assert [m.port for m in again.media][2:] == [0, 0, 0] and len(again.media) == 5
    assert again.media[0].proto == "RTP/SAVP" and again.media[0].attr("crypto").startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
    assert again.media[1].attr("content") == "main" and again.media[1].attr("label") == "11"
    assert again.media[2].media == "video" and again.media[3].proto == "UDP/BFCP"


def test_cisco_srtp_refused_without_tls() -> None:
    with pytest.raises(OfferRejected):
        negotiate(Sdp.parse(CISCO), srtp_ok=False, require_srtp=False)


def test_poly_offer_plain_rtp() -> None:
    offer = Sdp.parse(POLY)
    plans = negotiate(offer, srtp_ok=False, require_srtp=False)
    assert [p.kind for p in plans] == [MediaKind.AUDIO, MediaKind.VIDEO, None, None]
    audio, video = plans[0], plans[1]
    assert audio.telephone_event_pt == 119  # listed first, still found
    assert [c.name for c in audio.codecs] == ["G722", "PCMU", "PCMA"]
    assert [c.payload_type for c in video.codecs] == [109, 110, 111]
    assert "profile-level-id=64001f" in video.codecs[0].fmtp
    assert "packetization-mode=0" in video.codecs[2].fmtp
    assert video.rtcp_fb == frozenset({"ccm fir", "ccm tmmbr"})  # no PLI from this device
    answer = Sdp.parse(str(build_answer(offer, plans, ports(plans), host="198.51.100.1", session_id="5", version=1)))
    assert answer.media[2].port == 0 and answer.media[3].port == 0
    assert answer.media[1].attr_all("rtcp-fb") == ["* ccm fir"]


def test_poly_plain_rtp_declined_when_srtp_required_on_tls() -> None:
    with pytest.raises(OfferRejected):
        negotiate(Sdp.parse(POLY), srtp_ok=True, require_srtp=True)


@pytest.mark.parametrize(("attr", "conn", "direction", "remote"), [
    ("a=sendonly", "192.0.2.30", Direction.RECVONLY, True),
    ("a=inactive", "192.0.2.30", Direction.INACTIVE, True),
    ("a=recvonly", "192.0.2.30", Direction.SENDONLY, True),
    ("a=sendrecv", "0.0.0.0", Direction.INACTIVE, False),  # RFC 2543 hold
])
def test_hold_forms(attr: str, conn: str, direction: Direction, remote: bool) -> None:
    text = POLY.replace("a=sendrecv", attr).replace("c=IN IP4 192.0.2.30", f"c=IN IP4 {conn}")
    plans = negotiate(Sdp.parse(text), srtp_ok=False, require_srtp=False)
    assert plans[0].direction is direction
    assert (plans[0].remote_rtp is not None) is remote


def test_srtp_32_suite_and_answer_key() -> None:
    text = CISCO.replace("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48|1:4\n", "")
    plans = negotiate(Sdp.parse(text), srtp_ok=True, require_srtp=False)
    assert plans[0].srtp_rx is not None and plans[0].srtp_rx.suite == "AES_CM_128_HMAC_SHA1_32"
    assert plans[0].srtp_tag == "2"
    cfg = plans[0].leg_config(new_srtp_key("AES_CM_128_HMAC_SHA1_32"))
    assert cfg.srtp_tx is not None and cfg.srtp_tx.key_b64 != cfg.srtp_rx.key_b64


def test_same_offer_same_answer_text() -> None:
    offer = Sdp.parse(POLY)
    plans = negotiate(offer, srtp_ok=False, require_srtp=False)
    local = ports(plans)
    a1 = build_answer(offer, plans, local, host="h", session_id="1", version=3)
    a2 = build_answer(Sdp.parse(POLY), negotiate(Sdp.parse(POLY), srtp_ok=False, require_srtp=False), local,
                      host="h", session_id="1", version=3)
    assert str(a1) == str(a2)


def test_delayed_offer_round_trip() -> None:
    offer, plans = build_offer({MediaKind.AUDIO: LocalMedia(rtp_port=4000), MediaKind.VIDEO: LocalMedia(rtp_port=4002)},
                               host="198.51.100.1", session_id="9", version=1, secure=False)
    parsed = Sdp.parse(str(offer))
    assert [m.media for m in parsed.media] == ["audio", "video"]
    assert any("packetization-mode=0" in f for f in parsed.media[1].attr_all("fmtp"))
    device_answer = Sdp.parse("v=0\r\no=d 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
                              "m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
                              "m=video 0 RTP/AVP 96\r\n")
    settled = apply_answer(plans, device_answer)
    assert len(settled) == 1 and settled[0].codecs[0].name == "PCMA" and settled[0].telephone_event_pt == 101
    assert settled[0].remote_rtp == ("192.0.2.9", 7000)


@pytest.mark.parametrize("bad", ["", "v=1\r\n", "v=0\r\no=x\r\n", "v=0\r\no=a 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n",
                                 "v=0\r\no=a 1 1 IN IP4 h\r\nc=IN IP9 h\r\n", "garbage"])
def test_malformed_sdp_raises_parse_error(bad: str) -> None:
    with pytest.raises(SipParseError):
        Sdp.parse(bad)


def test_no_usable_media_is_rejected() -> None:
    text = "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5 RTP/AVP 18\r\nm=video 7 RTP/AVP 34\r\n"
    with pytest.raises(OfferRejected):
        negotiate(Sdp.parse(text), srtp_ok=False, require_srtp=False)
