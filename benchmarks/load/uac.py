"""The load generator's SIP user agent client: many dialogs, no sockets, time passed in.

One `Uac` holds every call of a load run, keyed by Call-ID. It writes requests,
reads responses and in-dialog requests, runs the client transaction timers, and
reports what happened as events; the asyncio adapter (`sip_transport`) only moves
bytes and calls `handle_timer` when `get_timer` says so.

What it does (RFC 3261 section in brackets):

* INVITE with an SDP offer: PCMU/8000 and telephone-event/8000 on the caller's RTP
  port [13.2.1, RFC 3264, RFC 4733]; ``100`` is absorbed, other 1xx become
  `Progress`; a 2xx is ACKed with a new branch and every retransmitted 2xx gets
  the same ACK again [13.2.2.4]; a 3xx-6xx is ACKed on the INVITE's branch
  [17.1.1.3] and the call ends as `Rejected`.
* Over UDP the INVITE is retransmitted at T1, 2*T1, 4*T1 ... (Timer A); with no
  final answer after 64*T1 (Timer B, on every transport) the call is `Rejected`
  with status 408 [17.1.1.2]. Non-INVITE requests (INFO, BYE) are retransmitted
  over UDP at T1 doubling up to T2 (Timer E), and time out after 64*T1 (Timer F)
  [17.1.2.2].
* INFO with ``application/dtmf-relay`` carries one keypad digit; digits queue per
  call and go one transaction at a time so they arrive in order.
* BYE ends the call; its 2xx (or 408 timeout) gives `ByeCompleted`. A BYE from
  the gateway is answered 200 and gives `RemoteBye`; other in-dialog requests
  (OPTIONS, INFO, NOTIFY, UPDATE) are answered 200, requests for unknown calls 481.

Every call keeps a `CallRecord` of its timestamps (first response, final status,
BYE and its answer) for the RFC 6076 figures in `rfc6076`. Responses arrive
parsed (`gateway.sip.parser.parse_message`); this module never imports asyncio.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import os
from dataclasses import dataclass, field

from gateway.sip.headers import NameAddr, SipUri
from gateway.sip.message import Message, Request, Response, response_to
from gateway.sip.sdp import Sdp

T1_S = 0.5
T2_S = 4.0
USER_AGENT = "vtcgw-load"


class SipTransport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def reliable(self) -> bool:
        return self is not SipTransport.UDP

    @property
    def via(self) -> str:
        return self.value.upper()


class CallState(enum.Enum):
    CALLING = "calling"  # INVITE sent, nothing but 100 back
    PROCEEDING = "proceeding"  # a 1xx other than 100 arrived
    CONFIRMED = "confirmed"  # 2xx received, ACK sent
    TERMINATING = "terminating"  # BYE sent
    ENDED = "ended"  # BYE answered, or the gateway hung up
    REJECTED = "rejected"  # 3xx-6xx or Timer B


@dataclass(frozen=True, slots=True, kw_only=True)
class UacConfig:
    transport: SipTransport
    target: tuple[str, int]  # the gateway's SIP address
    domain: str = ""  # request-URI host; default the target host
    t1_s: float = T1_S
    t2_s: float = T2_S
    from_user: str = "load"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest:
    """One call to place: who to dial and where our RTP and SIP live."""

    call_id: str
    to_user: str  # the dial string's user part: a meeting ID, "ID.passcode" or "meeting"
    rtp: tuple[str, int]  # our m= line address (RtpLoadEngine.assign_socket())
    contact: tuple[str, int]  # our SIP address as the gateway sees it (the connection's local end)


# --- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    call_id: str
    status: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    call_id: str
    status: int
    remote_rtp: tuple[str, int] | None  # the answer's audio address (None: no usable audio)
    payload_types: tuple[int, ...]
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    call_id: str
    status: int  # 408 when Timer B fired
    reason: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoAnswered:
    call_id: str
    digit: str
    status: int  # 408 on Timer F
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ByeCompleted:
    call_id: str
    status: int  # 408 on Timer F
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteBye:
    call_id: str
    at: float


Event = Progress | Answered | Rejected | InfoAnswered | ByeCompleted | RemoteBye


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes to send for one call (the adapter knows which connection the call uses)."""

    call_id: str
    data: bytes


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """Timestamps of one call, for RFC 6076 (all on the caller's clock, seconds)."""

    invite_at: float
    first_response_at: float | None = None  # first non-100 provisional or final (SRD end)
    final_status: int | None = None
    final_at: float | None = None
    bye_at: float | None = None
    bye_done_at: float | None = None
    bye_status: int | None = None
    remote_bye_at: float | None = None
    invite_sends: int = 1  # 1 + retransmissions


class TimerKind(enum.Enum):
    INVITE_RETRANSMIT = "A"
    INVITE_TIMEOUT = "B"
    REQUEST_RETRANSMIT = "E"
    REQUEST_TIMEOUT = "F"


@dataclass(slots=True, kw_only=True)
class _Transaction:
    """A client transaction of one call: INVITE, INFO or BYE."""

    method: str
    cseq: int
    branch: str
    data: bytes
    interval_s: float
    digit: str = ""
    done: bool = False


@dataclass(slots=True, kw_only=True)
class _Call:
    req: CallRequest
    local_tag: str
    record: CallRecord
    state: CallState = CallState.CALLING
    remote_tag: str = ""
    remote_target: str = ""
    cseq: int = 1
    invite: _Transaction | None = None
    ack: bytes = b""
    pending: _Transaction | None = None  # the INFO or BYE in flight
    digits: list[str] = field(default_factory=list)
    bye_wanted: bool = False


def _token() -> str:
    return os.urandom(6).hex()


class Uac:
    """Every load call's INVITE/INFO/BYE client transactions and dialog state."""

    def __init__(self, config: UacConfig) -> None:
        self.config = config
        self.domain = config.domain or config.target[0]
        self._calls: dict[str, _Call] = {}
        self._out: list[Outgoing] = []
        self._timers: list[tuple[float, int, str, TimerKind, int]] = []
        self._seq = itertools.count()
        self.records: dict[str, CallRecord] = {}
        self.unmatched = 0  # responses or requests that fit no call

    # --- sending ---------------------------------------------------------------------------
    def data_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def state(self, call_id: str) -> CallState:
        return self._calls[call_id].state

    def _via(self, call: _Call, branch: str) -> str:
        host, port = call.req.contact
        return f"SIP/2.0/{self.config.transport.via} {host}:{port};branch=z9hG4bK{branch};rport"

    def _request(self, call: _Call, method: str, uri: str, cseq: int, branch: str,
                 *, to_tag: str, body: bytes = b"", content_type: str = "") -> bytes:
        host, port = call.req.contact
        t = self.config.transport
        to = f"<sip:{call.req.to_user}@{self.domain}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {self._via(call, branch)}",
            "Max-Forwards: 70",
            f"From: <sip:{self.config.from_user}@{host}>;tag={call.local_tag}",
            f"To: {to}",
            f"Call-ID: {call.req.call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if method in ("INVITE", "ACK", "INFO"):
            lines.append(f"Contact: <sip:{self.config.from_user}@{host}:{port};transport={t.value}>")
        if method == "INVITE":
            lines.append(f"User-Agent: {USER_AGENT}")
            lines.append("Allow: INVITE, ACK, BYE, CANCEL, INFO, OPTIONS")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _offer(self, req: CallRequest) -> bytes:
        host, port = req.rtp
        sess = _token()[:8]
        return (
            f"v=0\r\no=- {int(sess, 16)} 1 IN IP4 {host}\r\ns=vtcgw-load\r\nc=IN IP4 {host}\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        ).encode()

    def _arm(self, at: float, call_id: str, kind: TimerKind, cseq: int) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), call_id, kind, cseq))

    def invite(self, req: CallRequest, now: float) -> None:
        """Start a call: send its INVITE (the SRD clock starts now)."""
        if req.call_id in self._calls:
            raise ValueError(f"call {req.call_id!r} already exists")
        call = _Call(req=req, local_tag=_token(), record=CallRecord(invite_at=now))
        self._calls[req.call_id] = call
        self.records[req.call_id] = call.record
        uri = f"sip:{req.to_user}@{self.domain}:{self.config.target[1]}"
        if self.config.transport is not SipTransport.UDP:
            uri += f";transport={self.config.transport.value}"
        call.remote_target = uri
        branch = _token()
        data = self._request(call, "INVITE", uri, 1, branch, to_tag="", body=self._offer(req),
                             content_type="application/sdp")
        call.invite = _Transaction(method="INVITE", cseq=1, branch=branch, data=data,
                                   interval_s=self.config.t1_s)
        self._out.append(Outgoing(call_id=req.call_id, data=data))
        if not self.config.transport.reliable:
            self._arm(now + self.config.t1_s, req.call_id, TimerKind.INVITE_RETRANSMIT, 1)
        self._arm(now + 64 * self.config.t1_s, req.call_id, TimerKind.INVITE_TIMEOUT, 1)

    def send_digits(self, call_id: str, digits: str, now: float) -> None:
        """Queue keypad digits as SIP INFO (application/dtmf-relay), one transaction each."""
        call = self._calls[call_id]
        call.digits.extend(d for d in digits if d in "0123456789*#ABCD")
        self._next_request(call, now)

    def bye(self, call_id: str, now: float) -> None:
        """Hang up a confirmed call (after any queued digits); no-op if it already ended."""
        call = self._calls[call_id]
        if call.state in (CallState.CONFIRMED,):
            call.bye_wanted = True
            call.digits.clear()
            self._next_request(call, now)

    def _next_request(self, call: _Call, now: float) -> None:
        if call.state is not CallState.CONFIRMED or call.pending is not None:
            return
        call.cseq += 1
        branch = _token()
        if call.bye_wanted:
            method, digit = "BYE", ""
            data = self._request(call, "BYE", call.remote_target, call.cseq, branch,
                                 to_tag=call.remote_tag)
            call.state = CallState.TERMINATING
            call.record.bye_at = now
        elif call.digits:
            method, digit = "INFO", call.digits.pop(0)
            body = f"Signal={digit}\r\nDuration=160\r\n".encode()
            data = self._request(call, "INFO", call.remote_target, call.cseq, branch,
                                 to_tag=call.remote_tag, body=body,
                                 content_type="application/dtmf-relay")
        else:
            call.cseq -= 1
            return
        call.pending = _Transaction(method=method, cseq=call.cseq, branch=branch, data=data,
                                    interval_s=self.config.t1_s, digit=digit)
        self._out.append(Outgoing(call_id=call.req.call_id, data=data))
        if not self.config.transport.reliable:
            self._arm(now + self.config.t1_s, call.req.call_id, TimerKind.REQUEST_RETRANSMIT, call.cseq)
        self._arm(now + 64 * self.config.t1_s, call.req.call_id, TimerKind.REQUEST_TIMEOUT, call.cseq)

    # --- receiving -------------------------------------------------------------------------
    def receive_message(self, msg: Message, now: float) -> list[Event]:
        """A parsed message from the gateway; returns what it meant."""
        if isinstance(msg, Response):
            return self._response(msg, now)
        return self._incoming_request(msg, now)

    def _response(self, resp: Response, now: float) -> list[Event]:
        call = self._calls.get(resp.call_id)
        cseq = resp.cseq
        if call is None:
            self.unmatched += 1
            return []
        if cseq.method == "INVITE" and call.invite is not None and cseq.number == call.invite.cseq:
            return self._invite_response(call, resp, now)
        tx = call.pending
        if tx is None or tx.cseq != cseq.number or tx.method != cseq.method:
            return []  # a late retransmission of something already answered
        if resp.status < 200:
            return []
        call.pending = None
        cid = call.req.call_id
        if tx.method == "BYE":
            return self._bye_done(call, resp.status, now)
        events: list[Event] = [InfoAnswered(call_id=cid, digit=tx.digit, status=resp.status, at=now)]
        self._next_request(call, now)
        return events

    def _bye_done(self, call: _Call, status: int, now: float) -> list[Event]:
        call.state = CallState.ENDED
        call.record.bye_done_at = now
        call.record.bye_status = status
        return [ByeCompleted(call_id=call.req.call_id, status=status, at=now)]

    def _invite_response(self, call: _Call, resp: Response, now: float) -> list[Event]:
        cid = call.req.call_id
        rec = call.record
        status = resp.status
        if status == 100:
            return []
        if rec.first_response_at is None:
            rec.first_response_at = now
        if status < 200:
            if call.state is CallState.CALLING:
                call.state = CallState.PROCEEDING
            return [Progress(call_id=cid, status=status, at=now)] if call.state is CallState.PROCEEDING else []
        to_tag = NameAddr.parse(resp.header("To")).tag
        settled = call.state not in (CallState.CALLING, CallState.PROCEEDING)
        if settled and not (call.ack and 200 <= status < 300) and call.state is not CallState.REJECTED:
            return []  # a stray final after the call's outcome (e.g. a 4xx after the 2xx)
        if settled and call.state is CallState.REJECTED and 200 <= status < 300:
            return []
        if 200 <= status < 300:
            if call.ack:  # a retransmitted 2xx: ACK again (section 13.2.2.4)
                self._out.append(Outgoing(call_id=cid, data=call.ack))
                return []
            call.remote_tag = to_tag
            contact = resp.header("Contact")
            if contact:
                call.remote_target = str(SipUri.parse(NameAddr.parse(contact).uri))
            assert call.invite is not None
            call.invite.done = True
            call.ack = self._request(call, "ACK", call.remote_target, call.invite.cseq, _token(),
                                     to_tag=to_tag)
            self._out.append(Outgoing(call_id=cid, data=call.ack))
            call.state = CallState.CONFIRMED
            rec.final_status, rec.final_at = status, now
            remote, pts = _answer_audio(resp)
            events: list[Event] = [Answered(call_id=cid, status=status, remote_rtp=remote,
                                            payload_types=pts, at=now)]
            self._next_request(call, now)
            return events
        # 3xx-6xx: ACK on the INVITE's branch (section 17.1.1.3), also for retransmissions
        assert call.invite is not None
        ack = self._request(call, "ACK", self._invite_uri(call), call.invite.cseq,
                            call.invite.branch, to_tag=to_tag)
        self._out.append(Outgoing(call_id=cid, data=ack))
        if call.state in (CallState.REJECTED,):
            return []
        call.invite.done = True
        call.state = CallState.REJECTED
        rec.final_status, rec.final_at = status, now
        return [Rejected(call_id=cid, status=status, reason=resp.reason, at=now)]

    def _invite_uri(self, call: _Call) -> str:
        assert call.invite is not None
        return call.invite.data.split(b" ", 2)[1].decode()

    def _incoming_request(self, req: Request, now: float) -> list[Event]:
        call = self._calls.get(req.call_id)
        if req.method == "ACK":
            return []
        if call is None:
            self.unmatched += 1
            self._out.append(Outgoing(call_id=req.call_id, data=bytes(response_to(req, 481))))
            return []
        cid = call.req.call_id
        ok = bytes(response_to(req, 200, to_tag=call.local_tag))
        if req.method == "BYE":
            self._out.append(Outgoing(call_id=cid, data=ok))
            if call.state in (CallState.CONFIRMED, CallState.TERMINATING):
                call.state = CallState.ENDED
                call.record.remote_bye_at = now
                call.pending = None
                return [RemoteBye(call_id=cid, at=now)]
            return []
        if req.method in ("OPTIONS", "INFO", "NOTIFY", "UPDATE"):
            self._out.append(Outgoing(call_id=cid, data=ok))
            return []
        if req.method == "INVITE":  # a re-INVITE: answer with our offer again
            body = self._offer(call.req)
            host, port = call.req.contact
            extra = (("Contact", f"<sip:{self.config.from_user}@{host}:{port};transport="
                                 f"{self.config.transport.value}>"),)
            self._out.append(Outgoing(call_id=cid, data=bytes(response_to(
                req, 200, to_tag=call.local_tag, extra=extra, body=body,
                content_type="application/sdp"))))
            return []
        self._out.append(Outgoing(call_id=cid, data=bytes(response_to(req, 501))))
        return []

    # --- timers ----------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When `handle_timer` must next run (None: nothing pending)."""
        while self._timers and not self._live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _live(self, entry: tuple[float, int, str, TimerKind, int]) -> bool:
        _, _, cid, kind, cseq = entry
        call = self._calls.get(cid)
        if call is None:
            return False
        if kind in (TimerKind.INVITE_RETRANSMIT, TimerKind.INVITE_TIMEOUT):
            return call.invite is not None and not call.invite.done
        return call.pending is not None and call.pending.cseq == cseq

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if not self._live(entry):
                continue
            _, _, cid, kind, cseq = entry
            call = self._calls[cid]
            if kind is TimerKind.INVITE_RETRANSMIT:
                assert call.invite is not None
                if call.state is CallState.CALLING:  # a provisional stops Timer A (17.1.1.2)
                    call.invite.interval_s *= 2
                    call.record.invite_sends += 1
                    self._out.append(Outgoing(call_id=cid, data=call.invite.data))
                    self._arm(now + call.invite.interval_s, cid, kind, cseq)
            elif kind is TimerKind.INVITE_TIMEOUT:
                assert call.invite is not None
                call.invite.done = True
                call.state = CallState.REJECTED
                call.record.final_status, call.record.final_at = 408, now
                events.append(Rejected(call_id=cid, status=408, reason="Timer B", at=now))
            elif kind is TimerKind.REQUEST_RETRANSMIT:
                tx = call.pending
                assert tx is not None
                tx.interval_s = min(2 * tx.interval_s, self.config.t2_s)
                self._out.append(Outgoing(call_id=cid, data=tx.data))
                self._arm(now + tx.interval_s, cid, kind, cseq)
            else:  # Timer F
                tx = call.pending
                assert tx is not None
                call.pending = None
                if tx.method == "BYE":
                    events += self._bye_done(call, 408, now)
                else:
                    events.append(InfoAnswered(call_id=cid, digit=tx.digit, status=408, at=now))
                    self._next_request(call, now)
        return events

    def forget(self, call_id: str) -> None:
        """Drop a finished call's dialog (its record stays for the figures)."""
        self._calls.pop(call_id, None)

    def __len__(self) -> int:
        return len(self._calls)


def _answer_audio(resp: Response) -> tuple[tuple[str, int] | None, tuple[int, ...]]:
    """The audio address and payload types of a 2xx's SDP answer."""
    if not resp.body:
        return None, ()
    try:
        sdp = Sdp.parse(resp.body)
    except Exception:  # noqa: BLE001 - a bad answer is a failed call, not a crash
        return None, ()
    for m in sdp.media:
        if m.media == "audio" and m.port:
            addr = m.conn or sdp.conn or ""
            return (addr, m.port), tuple(int(f) for f in m.fmts if f.isdigit())
    return None, ()
