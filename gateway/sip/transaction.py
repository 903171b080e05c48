"""SIP transactions (RFC 3261 section 17, RFC 6026 Accepted state), sans-I/O.

Each transaction is a small state machine driven by a table keyed by
``(kind, state, input)``; the RFC section is beside each row. Time is passed in:
``handle_timer(now)`` fires what is due and ``get_timer()`` says when to call
again. What to send lands in ``outbox`` (bytes for the transaction's origin);
what the transaction user must hear lands in ``events``.

Timers (section 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2; table 4 in appendix A):
A/E/G start at T1 and double (E and G capped at T2) on unreliable transports only;
B/F/H/L are 64*T1; D is 32 s on UDP and 0 on streams; I/K are T4 on UDP and 0 on
streams; J is 64*T1 on UDP and 0 on streams.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.sip.message import Request, Response

T1 = 0.5
T2 = 4.0
T4 = 5.0


class TxKind(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    INVITE_SERVER = "ist"
    NON_INVITE_SERVER = "nist"
    INVITE_CLIENT = "ict"
    NON_INVITE_CLIENT = "nict"


class TxState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TxInput(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    REQUEST = "request"  # a retransmission of the request (server side)
    ACK = "ack"  # ACK for a non-2xx final (server INVITE)
    SEND_1XX = "send-1xx"
    SEND_2XX = "send-2xx"
    SEND_FINAL = "send-3456xx"
    RECV_1XX = "recv-1xx"
    RECV_2XX = "recv-2xx"
    RECV_FINAL = "recv-3456xx"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"


class Act(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    SEND = "send"  # send the response given with the input and keep it as the last
    RESEND = "resend"  # resend the last response
    RESEND_REQUEST = "resend-request"
    SEND_ACK = "send-ack"  # client INVITE: ACK a non-2xx final (section 17.1.1.3)
    TO_TU = "to-tu"  # pass the response up
    TIMEOUT = "timeout"  # tell the TU the transaction timed out
    BACKOFF = "backoff"  # the fired retransmit timer doubles (A) or doubles up to T2 (E, G)
    STOP_RETRANSMIT = "stop-retransmit"
    START_A = "start-A"
    START_B = "start-B"
    START_D = "start-D"
    START_E = "start-E"
    START_F = "start-F"
    START_G = "start-G"
    START_H = "start-H"
    START_I = "start-I"
    START_J = "start-J"
    START_K = "start-K"
    START_L = "start-L"


K, S, I_, A = TxKind, TxState, TxInput, Act
Row = tuple[tuple[Act, ...], TxState, str]

TABLE: dict[tuple[TxKind, TxState, TxInput], Row] = {
    # server INVITE, section 17.2.1 and RFC 6026 section 7.1
    (K.INVITE_SERVER, S.PROCEEDING, I_.REQUEST): ((A.RESEND,), S.PROCEEDING, "17.2.1"),
    (K.INVITE_SERVER, S.PROCEEDING, I_.SEND_1XX): ((A.SEND,), S.PROCEEDING, "17.2.1"),
    (K.INVITE_SERVER, S.PROCEEDING, I_.SEND_2XX): ((A.SEND, A.START_L), S.ACCEPTED, "RFC6026 7.1"),
    (K.INVITE_SERVER, S.PROCEEDING, I_.SEND_FINAL): ((A.SEND, A.START_G, A.START_H), S.COMPLETED, "17.2.1"),
    (K.INVITE_SERVER, S.ACCEPTED, I_.REQUEST): ((), S.ACCEPTED, "RFC6026 7.1"),
    (K.INVITE_SERVER, S.ACCEPTED, I_.SEND_2XX): ((A.SEND,), S.ACCEPTED, "RFC6026 7.1"),
    (K.INVITE_SERVER, S.ACCEPTED, I_.TIMER_L): ((), S.TERMINATED, "RFC6026 7.1"),
    (K.INVITE_SERVER, S.COMPLETED, I_.REQUEST): ((A.RESEND,), S.COMPLETED, "17.2.1"),
    (K.INVITE_SERVER, S.COMPLETED, I_.TIMER_G): ((A.RESEND, A.BACKOFF), S.COMPLETED, "17.2.1"),
    (K.INVITE_SERVER, S.COMPLETED, I_.TIMER_H): ((A.TIMEOUT,), S.TERMINATED, "17.2.1"),
    (K.INVITE_SERVER, S.COMPLETED, I_.ACK): ((A.STOP_RETRANSMIT, A.START_I), S.CONFIRMED, "17.2.1"),
    (K.INVITE_SERVER, S.CONFIRMED, I_.ACK): ((), S.CONFIRMED, "17.2.1"),
    (K.INVITE_SERVER, S.CONFIRMED, I_.REQUEST): ((), S.CONFIRMED, "17.2.1"),
    (K.INVITE_SERVER, S.CONFIRMED, I_.TIMER_I): ((), S.TERMINATED, "17.2.1"),
    # server non-INVITE, section 17.2.2
    (K.NON_INVITE_SERVER, S.TRYING, I_.REQUEST): ((), S.TRYING, "17.2.2"),
    (K.NON_INVITE_SERVER, S.TRYING, I_.SEND_1XX): ((A.SEND,), S.PROCEEDING, "17.2.2"),
    (K.NON_INVITE_SERVER, S.TRYING, I_.SEND_2XX): ((A.SEND, A.START_J), S.COMPLETED, "17.2.2"),
    (K.NON_INVITE_SERVER, S.TRYING, I_.SEND_FINAL): ((A.SEND, A.START_J), S.COMPLETED, "17.2.2"),
    (K.NON_INVITE_SERVER, S.PROCEEDING, I_.REQUEST): ((A.RESEND,), S.PROCEEDING, "17.2.2"),
    (K.NON_INVITE_SERVER, S.PROCEEDING, I_.SEND_1XX): ((A.SEND,), S.PROCEEDING, "17.2.2"),
    (K.NON_INVITE_SERVER, S.PROCEEDING, I_.SEND_2XX): ((A.SEND, A.START_J), S.COMPLETED, "17.2.2"),
    (K.NON_INVITE_SERVER, S.PROCEEDING, I_.SEND_FINAL): ((A.SEND, A.START_J), S.COMPLETED, "17.2.2"),
    (K.NON_INVITE_SERVER, S.COMPLETED, I_.REQUEST): ((A.RESEND,), S.COMPLETED, "17.2.2"),
    (K.NON_INVITE_SERVER, S.COMPLETED, I_.TIMER_J): ((), S.TERMINATED, "17.2.2"),
    # client INVITE (our re-INVITE), section 17.1.1
    (K.INVITE_CLIENT, S.CALLING, I_.TIMER_A): ((A.RESEND_REQUEST, A.BACKOFF), S.CALLING, "17.1.1.2"),
    (K.INVITE_CLIENT, S.CALLING, I_.TIMER_B): ((A.TIMEOUT,), S.TERMINATED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.CALLING, I_.RECV_1XX): ((A.STOP_RETRANSMIT, A.TO_TU), S.PROCEEDING, "17.1.1.2"),
    (K.INVITE_CLIENT, S.CALLING, I_.RECV_2XX): ((A.TO_TU,), S.TERMINATED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.CALLING, I_.RECV_FINAL): ((A.STOP_RETRANSMIT, A.SEND_ACK, A.TO_TU, A.START_D), S.COMPLETED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.PROCEEDING, I_.RECV_1XX): ((A.TO_TU,), S.PROCEEDING, "17.1.1.2"),
    (K.INVITE_CLIENT, S.PROCEEDING, I_.RECV_2XX): ((A.TO_TU,), S.TERMINATED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.PROCEEDING, I_.RECV_FINAL): ((A.SEND_ACK, A.TO_TU, A.START_D), S.COMPLETED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.PROCEEDING, I_.TIMER_B): ((A.TIMEOUT,), S.TERMINATED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.COMPLETED, I_.RECV_FINAL): ((A.SEND_ACK,), S.COMPLETED, "17.1.1.2"),
    (K.INVITE_CLIENT, S.COMPLETED, I_.TIMER_D): ((), S.TERMINATED, "17.1.1.2"),
    # client non-INVITE (our BYE, UPDATE, INFO), section 17.1.2
    (K.NON_INVITE_CLIENT, S.TRYING, I_.TIMER_E): ((A.RESEND_REQUEST, A.BACKOFF), S.TRYING, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.TRYING, I_.TIMER_F): ((A.TIMEOUT,), S.TERMINATED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.TRYING, I_.RECV_1XX): ((A.TO_TU,), S.PROCEEDING, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.TRYING, I_.RECV_2XX): ((A.TO_TU, A.STOP_RETRANSMIT, A.START_K), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.TRYING, I_.RECV_FINAL): ((A.TO_TU, A.STOP_RETRANSMIT, A.START_K), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.PROCEEDING, I_.TIMER_E): ((A.RESEND_REQUEST, A.BACKOFF), S.PROCEEDING, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.PROCEEDING, I_.TIMER_F): ((A.TIMEOUT,), S.TERMINATED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.PROCEEDING, I_.RECV_1XX): ((A.TO_TU,), S.PROCEEDING, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.PROCEEDING, I_.RECV_2XX): ((A.TO_TU, A.STOP_RETRANSMIT, A.START_K), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.PROCEEDING, I_.RECV_FINAL): ((A.TO_TU, A.STOP_RETRANSMIT, A.START_K), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.COMPLETED, I_.RECV_1XX): ((), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.COMPLETED, I_.RECV_2XX): ((), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.COMPLETED, I_.RECV_FINAL): ((), S.COMPLETED, "17.1.2.2"),
    (K.NON_INVITE_CLIENT, S.COMPLETED, I_.TIMER_K): ((), S.TERMINATED, "17.1.2.2"),
}

# timer name -> (input fired, duration on unreliable transports, duration on reliable ones)
_TIMERS: dict[Act, tuple[TxInput, float, float]] = {
    A.START_A: (I_.TIMER_A, T1, -1), A.START_B: (I_.TIMER_B, 64 * T1, 64 * T1),
    A.START_D: (I_.TIMER_D, 32.0, 0.0), A.START_E: (I_.TIMER_E, T1, -1),
    A.START_F: (I_.TIMER_F, 64 * T1, 64 * T1), A.START_G: (I_.TIMER_G, T1, -1),
    A.START_H: (I_.TIMER_H, 64 * T1, 64 * T1), A.START_I: (I_.TIMER_I, T4, 0.0),
    A.START_J: (I_.TIMER_J, 64 * T1, 0.0), A.START_K: (I_.TIMER_K, T4, 0.0),
    A.START_L: (I_.TIMER_L, 64 * T1, 64 * T1),
}
_RETRANSMIT = (I_.TIMER_A, I_.TIMER_E, I_.TIMER_G)


class TxEventKind(enum.Enum):
    RESPONSE = "response"  # client: a response for the TU
    TIMEOUT = "timeout"  # timer B/F (client) or H (server: no ACK for a final)
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True, kw_only=True)
class TxEvent:
    kind: TxEventKind
    response: Response | None = None


class InvalidTransition(Exception):
    """An input the table has no row for: the caller ignores it (absorbed)."""


class Transaction:
    """One transaction. Server kinds start from a received request, client kinds send one."""

    __slots__ = ("kind", "state", "request", "reliable", "last_response", "outbox", "events",
                 "_timers", "_intervals", "ack")

    def __init__(self, kind: TxKind, request: Request, *, reliable: bool, now: float) -> None:
        self.kind = kind
        self.request = request
        self.reliable = reliable
        self.last_response: Response | None = None
        self.outbox: list[bytes] = []
        self.events: list[TxEvent] = []
        self._timers: dict[TxInput, float] = {}
        self._intervals: dict[TxInput, float] = {}
        self.ack: Request | None = None
        if kind is K.INVITE_SERVER:
            self.state = S.PROCEEDING
        elif kind is K.NON_INVITE_SERVER:
            self.state = S.TRYING
        elif kind is K.INVITE_CLIENT:
            self.state = S.CALLING
            self.outbox.append(bytes(request))
            self._start(A.START_A, now)
            self._start(A.START_B, now)
        else:
            self.state = S.TRYING
            self.outbox.append(bytes(request))
            self._start(A.START_E, now)
            self._start(A.START_F, now)

    @property
    def terminated(self) -> bool:
        return self.state is S.TERMINATED

    # inputs -------------------------------------------------------------------------------
    def send_response(self, response: Response, now: float) -> None:
        cls = response.status // 100
        inp = I_.SEND_1XX if cls == 1 else I_.SEND_2XX if cls == 2 else I_.SEND_FINAL
        self._apply(inp, now, response)

    def receive_request(self, request: Request, now: float) -> None:
        self._apply(I_.ACK if request.method == "ACK" else I_.REQUEST, now)

    def receive_response(self, response: Response, now: float) -> None:
        cls = response.status // 100
        inp = I_.RECV_1XX if cls == 1 else I_.RECV_2XX if cls == 2 else I_.RECV_FINAL
        self._apply(inp, now, response)

    def get_timer(self) -> float | None:
        return min(self._timers.values()) if self._timers else None

    def handle_timer(self, now: float) -> None:
        for inp, when in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if when <= now and self._timers.get(inp) == when:
                del self._timers[inp]
                self._apply(inp, now)

    # machinery ----------------------------------------------------------------------------
    def _apply(self, inp: TxInput, now: float, response: Response | None = None) -> None:
        row = TABLE.get((self.kind, self.state, inp))
        if row is None:
            raise InvalidTransition(f"{self.kind.value} {self.state.value} {inp.value}")
        actions, new_state, _section = row
        if new_state is not self.state:  # timers with no row in the new state are cancelled
            self._timers = {t: w for t, w in self._timers.items() if (self.kind, new_state, t) in TABLE}
        self.state = new_state
        for act in actions:
            if act is A.SEND:
                assert response is not None
                self.last_response = response
                self.outbox.append(bytes(response))
            elif act is A.RESEND:
                if self.last_response is not None:
                    self.outbox.append(bytes(self.last_response))
            elif act is A.RESEND_REQUEST:
                self.outbox.append(bytes(self.request))
            elif act is A.SEND_ACK:
                assert response is not None
                self.ack = self.ack or _ack_for(self.request, response)
                self.outbox.append(bytes(self.ack))
            elif act is A.TO_TU:
                self.events.append(TxEvent(kind=TxEventKind.RESPONSE, response=response))
            elif act is A.TIMEOUT:
                self.events.append(TxEvent(kind=TxEventKind.TIMEOUT))
            elif act is A.BACKOFF:
                interval = self._intervals[inp] * 2
                if inp is not I_.TIMER_A:
                    interval = min(interval, T2)
                self._intervals[inp] = interval
                self._timers[inp] = now + interval
            elif act is A.STOP_RETRANSMIT:
                for t in _RETRANSMIT:
                    self._timers.pop(t, None)
            else:
                self._start(act, now)
        if new_state is S.TERMINATED:
            self._timers.clear()
            self.events.append(TxEvent(kind=TxEventKind.TERMINATED))

    def _start(self, act: Act, now: float) -> None:
        inp, unreliable, reliable = _TIMERS[act]
        duration = reliable if self.reliable else unreliable
        if duration < 0:
            return  # retransmit timers run on unreliable transports only
        if duration == 0:
            self._apply(inp, now)
            return
        self._intervals[inp] = duration
        self._timers[inp] = now + duration


def _ack_for(request: Request, response: Response) -> Request:
    """ACK for a non-2xx final response (section 17.1.1.3)."""
    hdrs: list[tuple[str, str]] = []
    top_via_done = False
    for k, v in request.headers:
        if k == "Via":
            if not top_via_done:
                hdrs.append((k, v))
                top_via_done = True
        elif k in ("From", "Call-ID", "Route", "Max-Forwards"):
            hdrs.append((k, v))
        elif k == "CSeq":
            hdrs.append((k, f"{request.cseq.number} ACK"))
    hdrs.append(("To", response.header("To")))
    return Request(method="ACK", uri=request.uri, headers=tuple(hdrs))


def server_key(request: Request) -> tuple[str, str, str]:
    """Transaction key of a request (section 17.2.3): branch, sent-by, method (ACK -> INVITE)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch.startswith("z9hG4bK"):
        return (branch, f"{via.host}:{via.port or ''}", method)
    # RFC 2543 peers: fall back to Call-ID, CSeq number and From tag
    return (f"2543:{request.call_id}:{request.cseq.number}:{request.from_.tag}",
            f"{via.host}:{via.port or ''}", method)


def client_key(message: Request | Response) -> tuple[str, str]:
    """Client transaction key (section 17.1.3): top Via branch and CSeq method."""
    return (message.top_via.branch, message.cseq.method if message.cseq.method != "ACK" else "INVITE")
