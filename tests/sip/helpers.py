"""Test doubles for the SIP core: a recording CallApplication and in-memory media legs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.calls import Admission, DigitSource, IncomingCall
from gateway.rtp.ports import PortsExhausted
from gateway.rtp.types import LegConfig, MediaKind
from gateway.sip.message import Origin, Request, Response
from gateway.sip.metrics import CountingMetrics
from gateway.sip.parser import parse_message
from gateway.sip.settings import SipSettings


class RecordingApp:
    """Records every call-layer event; admission answer configurable."""

    def __init__(self, admission: Admission = Admission.ACCEPT) -> None:
        self.admission = admission
        self.admitted: list[IncomingCall] = []
        self.connected: list[tuple[IncomingCall, Any]] = []
        self.digits: list[tuple[str, str, DigitSource]] = []
        self.ended: list[tuple[str, str]] = []
        self.on_connected: Any = None
        self.on_ended: Any = None
        self.on_digit: Any = None

    def admit(self, call: IncomingCall) -> Admission:
        self.admitted.append(call)
        return self.admission

    def call_connected(self, call: IncomingCall, control: Any) -> None:
        self.connected.append((call, control))
        if self.on_connected:
            self.on_connected(call, control)

    def digit(self, call_id: str, digit: str, source: DigitSource, *, suspect: bool = False) -> None:
        self.digits.append((call_id, digit, source))
        if self.on_digit:
            self.on_digit(call_id, digit, source)

    def call_ended(self, call_id: str, reason: str) -> None:
        self.ended.append((call_id, reason))
        if self.on_ended:
            self.on_ended(call_id, reason)


@dataclass
class FakeLeg:
    kind: MediaKind
    local_rtp_port: int
    configs: list[LegConfig] = field(default_factory=list)
    closed: bool = False
    keyframes: int = 0
    on_dtmf: Any = None
    on_timeout: Any = None
    on_keyframe_request_fallback: Any = None
    owner: Any = None

    @property
    def local_rtcp_port(self) -> int:
        return self.local_rtp_port + 1

    def configure(self, cfg: LegConfig) -> None:
        self.configs.append(cfg)

    def request_keyframe(self) -> None:
        self.keyframes += 1
        if not (self.configs and self.configs[-1].rtcp_fb & {"ccm fir", "nack pli"}):
            if self.on_keyframe_request_fallback:
                self.on_keyframe_request_fallback()

    def close(self) -> None:
        if not self.closed and self.owner is not None:
            self.owner.free += 1
        self.closed = True


class FakeMedia:
    def __init__(self, pairs: int = 1000) -> None:
        self.legs: list[FakeLeg] = []
        self.free = pairs
        self.next_port = 20000

    def open_leg(self, call_id: str, kind: MediaKind) -> FakeLeg:
        if self.free <= 0:
            raise PortsExhausted("none")
        self.free -= 1
        leg = FakeLeg(kind=kind, local_rtp_port=self.next_port, owner=self)
        self.next_port += 2
        self.legs.append(leg)
        return leg


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


UDP = Origin(transport="udp", addr=("192.0.2.10", 5060), local=("127.0.0.1", 5060))
TCP = Origin(transport="tcp", addr=("192.0.2.10", 40000), conn_id=7, local=("127.0.0.1", 5060))
TLS = Origin(transport="tls", addr=("192.0.2.10", 40001), conn_id=8, local=("127.0.0.1", 5061))

AUDIO_SDP = (
    "v=0\r\no=dev 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\n"
)


def invite(user: str = "1234567890", *, call_id: str = "c1", branch: str = "z9hG4bKaaa", sdp: str | None = AUDIO_SDP,
           transport: str = "UDP", extra: str = "", cseq: int = 1, scheme: str = "sip") -> bytes:
    body = (sdp or "").encode()
    ctype = "Content-Type: application/sdp\r\n" if sdp else ""
    return (f"INVITE {scheme}:{user}@gw.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:room@dev.example.com>;tag=ft1\r\n"
            f"To: <{scheme}:{user}@gw.example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:room@192.0.2.10:5060>\r\nSupported: timer\r\n{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def in_dialog(method: str, to_tag: str, *, call_id: str = "c1", cseq: int = 2, branch: str = "z9hG4bKbbb",
              body: bytes = b"", ctype: str = "", extra: str = "", user: str = "1234567890") -> bytes:
    ct = f"Content-Type: {ctype}\r\n" if ctype else ""
    return (f"{method} sip:{user}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:room@dev.example.com>;tag=ft1\r\n"
            f"To: <sip:{user}@gw.example.com>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"{extra}{ct}Content-Length: {len(body)}\r\n\r\n").encode() + body


def sent(core: Any) -> list[Request | Response]:
    return [parse_message(data) for _, data in core.data_to_send()]


def make_core(settings: SipSettings | None = None, app: RecordingApp | None = None,
              media: FakeMedia | None = None) -> tuple[Any, RecordingApp, FakeMedia, FakeClock, CountingMetrics]:
    from gateway.sip.core import SipCore

    app = app or RecordingApp()
    media = media or FakeMedia()
    clock = FakeClock()
    metrics = CountingMetrics()
    core = SipCore(settings or SipSettings(rate_limit_per_source=None, advertise_host="127.0.0.1"), app,
                   media.open_leg, clock=clock, metrics=metrics)
    return core, app, media, clock, metrics
