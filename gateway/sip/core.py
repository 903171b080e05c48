"""The SIP user-agent core of the gateway (sans-I/O): requests in, responses out.

It owns the transactions (:mod:`gateway.sip.transaction`), the calls and their dialogs
(:mod:`gateway.sip.uas`), and the timer heap. Time is passed in (``receive_*(.., now)``,
``handle_timer(now)``, ``get_timer()``); what to send is pulled with ``data_to_send()``
as ``(origin, bytes)`` pairs that go back over the flow the message came in on
(INTEROP.md report 10). Things the application starts outside a receive (hang-up,
keyframe request) read the injected ``clock`` and call ``wakeup`` so the adapter flushes.

Request routing (RFC 3261 section 8.2, 12.2.2, 17.2.3):
  parse error       -> 400/505/513 with a reason naming the defect (dropped if unanswerable)
  retransmission    -> the server transaction answers it
  ACK               -> the non-2xx server transaction, or the call's dialog (2xx ACK)
  Max-Forwards: 0   -> 483;  merged request (same From tag/Call-ID/CSeq, other branch) -> 482
  Require unknown   -> 420 with Unsupported
  REGISTER etc.     -> 405 with Allow;  unknown method -> 501
  to-tag present    -> the dialog's call, or 481
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from gateway.calls import CallApplication
from gateway.rtp.types import MediaKind
from gateway.sip.errors import SipParseError, SipRequestError
from gateway.sip.headers import canonical, format_params
from gateway.sip.message import Origin, Request, Response, response_to
from gateway.sip.metrics import Metrics, NullMetrics
from gateway.sip.parser import parse_message
from gateway.sip.ratelimit import RateLimiter
from gateway.sip.settings import SipSettings
from gateway.sip.transaction import (
    InvalidTransition,
    Transaction,
    TxEventKind,
    TxKind,
    client_key,
    server_key,
)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK"
SUPPORTED = "timer, 100rel"
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf, application/media_control+xml"
KNOWN_EXTENSIONS = frozenset({"timer", "100rel"})
NOT_ALLOWED = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER"})

OpenLeg = Callable[[str, MediaKind], Any]  # (call_id, kind) -> RtpLeg; raises PortsExhausted
MessageHook = Callable[[str, bytes, str], None]  # (direction "in"/"out", raw, call_id)


class SipCore:
    """All signalling state of one gateway node."""

    def __init__(self, settings: SipSettings, app: CallApplication, open_leg: OpenLeg, *,
                 clock: Callable[[], float], metrics: Metrics | None = None,
                 on_message: MessageHook | None = None) -> None:
        from gateway.sip.uas import CallManager  # the call layer sits on top of this one

        self.settings = settings
        self.app = app
        self.open_leg = open_leg
        self.clock = clock
        self.metrics = metrics or NullMetrics()
        self.on_message = on_message
        self.wakeup: Callable[[], None] | None = None
        self.accepting = True
        self._out: list[tuple[Origin, bytes]] = []
        self._server: dict[tuple[str, str, str], tuple[Transaction, Origin]] = {}
        self._merge: dict[tuple[str, str, int], str] = {}  # (from tag, call-id, cseq) -> branch
        self._client: dict[tuple[str, str], tuple[Transaction, Origin, Callable[[Response | None, float], None]]] = {}
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        rate = settings.rate_limit_per_source
        self._limiter = RateLimiter(rate, burst=settings.rate_limit_burst) if rate else None
        self.calls = CallManager(self)

    # ---- output -------------------------------------------------------------------------
    def data_to_send(self) -> list[tuple[Origin, bytes]]:
        out, self._out = self._out, []
        return out

    def send(self, origin: Origin, data: bytes, *, call_id: str = "", status: int = 0) -> None:
        self._out.append((origin, data))
        if status:
            self.metrics.inc(f"Sip{status // 100}xxCodes")
        if self.on_message is not None:
            self.on_message("out", data, call_id)

    def notify(self) -> None:
        """After an action the app started (not a receive): let the adapter flush."""
        if self.wakeup is not None:
            self.wakeup()

    # ---- timers -------------------------------------------------------------------------
    def schedule(self, when: float | None, kind: str, ref: Any) -> None:
        if when is not None:
            heapq.heappush(self._heap, (when, next(self._seq), kind, ref))

    def get_timer(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def handle_timer(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, ref = heapq.heappop(self._heap)
            if kind == "stx":
                entry = self._server.get(ref)
                if entry is not None and (entry[0].get_timer() or now + 1) <= now:
                    entry[0].handle_timer(now)
                    self._pump_server(ref, now)
            elif kind == "ctx":
                centry = self._client.get(ref)
                if centry is not None and (centry[0].get_timer() or now + 1) <= now:
                    centry[0].handle_timer(now)
                    self._pump_client(ref, now)
            else:
                self.calls.on_timer(ref, now)

    # ---- input --------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, origin: Origin, now: float) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive datagram (RFC 5626 section 4.4.1 STUN aside)
        try:
            msg = parse_message(data, datagram=True)
        except SipParseError as exc:
            self.receive_parse_error(exc, data, origin, now)
            return
        self.receive_message(msg, origin, now, raw=data)

    def receive_parse_error(self, exc: SipParseError, raw: bytes, origin: Origin, now: float) -> None:
        if self.on_message is not None:
            self.on_message("in", raw, "")
        resp = error_response(raw, exc)
        if resp is not None:
            self.send(origin, bytes(resp), call_id=resp.call_id, status=resp.status)

    def receive_message(self, msg: Request | Response, origin: Origin, now: float, *, raw: bytes = b"") -> None:
        if self.on_message is not None:
            self.on_message("in", raw or bytes(msg), msg.call_id)
        try:
            if isinstance(msg, Response):
                self.metrics.inc(f"Sip{msg.status // 100}xxCodes")
                self._receive_response(msg, now)
            else:
                self._receive_request(msg, origin, now)
        except SipParseError as exc:  # a header we parse lazily was malformed
            if isinstance(msg, Request) and msg.method != "ACK":
                self.send(origin, bytes(response_to(msg, exc.status, exc.reason)), call_id=msg.call_id,
                          status=exc.status)

    # ---- requests -----------------------------------------------------------------------
    def _receive_request(self, req: Request, origin: Origin, now: float) -> None:
        req = _stamp_via(req, origin)
        if req.method == "ACK":
            key = server_key(req)
            entry = self._server.get(key)
            if entry is not None and entry[0].kind is TxKind.INVITE_SERVER and entry[0].last_response \
                    and entry[0].last_response.status >= 300:
                self._feed_server(key, req, now)
            else:
                self.calls.receive_ack(req, origin, now)
            return
        key = server_key(req)
        if key in self._server:
            self._feed_server(key, req, now)  # retransmission (section 17.2.3)
            return
        if req.method == "CANCEL":
            self._cancel(req, origin, key, now)
            return
        tx = Transaction(TxKind.INVITE_SERVER if req.method == "INVITE" else TxKind.NON_INVITE_SERVER,
                         req, reliable=origin.reliable, now=now)
        self._server[key] = (tx, origin)
        try:
            self._route(req, origin, key, now)
        except SipRequestError as exc:
            self.respond(key, response_to(req, exc.status, exc.reason, to_tag=_tag_for(req),
                                          extra=exc.headers), now)

    def _route(self, req: Request, origin: Origin, key: tuple[str, str, str], now: float) -> None:
        mf = req.header("Max-Forwards")
        if mf == "0":
            raise SipRequestError(483, "Too Many Hops")
        in_dialog = req.to.tag != ""
        if not in_dialog:
            merge_key = (req.from_.tag, req.call_id, req.cseq.number)
            branch = self._merge.get(merge_key)
            if branch is not None and branch != key[0]:
                raise SipRequestError(482, "Loop Detected")
            if req.method == "INVITE":
                self._merge[merge_key] = key[0]
        unknown = req.tokens("Require") - KNOWN_EXTENSIONS
        if unknown and req.method not in ("CANCEL", "ACK"):
            raise SipRequestError(420, "Bad Extension", headers=(("Unsupported", ", ".join(sorted(unknown))),))
        method = req.method
        if method in NOT_ALLOWED:
            raise SipRequestError(405, "Method Not Allowed", headers=(("Allow", ALLOW),))
        if method not in ("INVITE", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK"):
            raise SipRequestError(501, "Not Implemented", headers=(("Allow", ALLOW),))
        if method == "OPTIONS" and not in_dialog:
            self.respond(key, response_to(req, 200, to_tag=_tag_for(req), extra=self.capabilities()), now)
            return
        if not in_dialog:
            if method != "INVITE":
                raise SipRequestError(481, "Call/Transaction Does Not Exist")
            if self._limiter is not None and not self._limiter.allow(origin.addr[0], now):
                self.metrics.inc("Throttles")
                self.metrics.inc("InboundCallAttempts")
                self.metrics.inc("InboundCallFailures")
                raise SipRequestError(503, "Service Unavailable",
                                      headers=(("Retry-After", str(self.settings.retry_after_s)),))
            self.calls.receive_invite(req, origin, key, now)
            return
        self.calls.receive_in_dialog(req, origin, key, now)

    def capabilities(self) -> tuple[tuple[str, str], ...]:
        return (("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED),
                ("User-Agent", self.settings.user_agent))

    def _cancel(self, req: Request, origin: Origin, key: tuple[str, str, str], now: float) -> None:
        """Section 9.2: match the INVITE transaction, 200 the CANCEL, then 487 the INVITE."""
        tx = Transaction(TxKind.NON_INVITE_SERVER, req, reliable=origin.reliable, now=now)
        self._server[key] = (tx, origin)
        invite_key = (key[0], key[1], "INVITE")
        if invite_key not in self._server:
            self.respond(key, response_to(req, 481, to_tag=_tag_for(req)), now)
            return
        self.respond(key, response_to(req, 200, to_tag=self.calls.local_tag_of(req.call_id) or _tag_for(req)), now)
        self.calls.receive_cancel(req, now)

    def respond(self, key: tuple[str, str, str], resp: Response, now: float) -> None:
        entry = self._server.get(key)
        if entry is None:
            return
        try:
            entry[0].send_response(resp, now)
        except InvalidTransition:
            return  # already answered finally (e.g. CANCEL raced our 200)
        self._pump_server(key, now)

    def server_tx(self, key: tuple[str, str, str]) -> Transaction | None:
        entry = self._server.get(key)
        return entry[0] if entry else None

    def _feed_server(self, key: tuple[str, str, str], req: Request, now: float) -> None:
        try:
            self._server[key][0].receive_request(req, now)
        except InvalidTransition:
            return
        self._pump_server(key, now)

    def _pump_server(self, key: tuple[str, str, str], now: float) -> None:
        tx, origin = self._server[key]
        call_id = tx.request.call_id
        for data in tx.outbox:
            self.send(origin, data, call_id=call_id, status=_status_of(data))
        tx.outbox.clear()
        for ev in tx.events:
            if ev.kind is TxEventKind.TIMEOUT and tx.kind is TxKind.INVITE_SERVER:
                self.calls.final_not_acked(call_id, now)
            elif ev.kind is TxEventKind.TERMINATED:
                del self._server[key]
                if tx.kind is TxKind.INVITE_SERVER:
                    req = tx.request
                    try:
                        self._merge.pop((req.from_.tag, req.call_id, req.cseq.number), None)
                    except SipParseError:
                        pass
        tx.events.clear()
        if key in self._server:
            self.schedule(tx.get_timer(), "stx", key)

    # ---- client transactions (our BYE, UPDATE, INFO, re-INVITE) ---------------------------
    def start_client(self, req: Request, origin: Origin, now: float,
                     on_done: Callable[[Response | None, float], None]) -> None:
        """Send a request in a client transaction; ``on_done(response or None on timeout, now)``
        is called for each final response (and provisional ones are ignored)."""
        kind = TxKind.INVITE_CLIENT if req.method == "INVITE" else TxKind.NON_INVITE_CLIENT
        tx = Transaction(kind, req, reliable=origin.reliable, now=now)
        key = client_key(req)
        self._client[key] = (tx, origin, on_done)
        self._pump_client(key, now)

    def _receive_response(self, resp: Response, now: float) -> None:
        key = client_key(resp)
        if key in self._client:
            try:
                self._client[key][0].receive_response(resp, now)
            except InvalidTransition:
                return  # e.g. a late provisional: absorbed
            self._pump_client(key, now)
        elif resp.cseq.method == "INVITE" and 200 <= resp.status < 300:
            self.calls.retransmitted_2xx(resp, now)  # section 13.2.2.4: ACK it again

    def _pump_client(self, key: tuple[str, str], now: float) -> None:
        tx, origin, on_done = self._client[key]
        for data in tx.outbox:
            self.send(origin, data, call_id=tx.request.call_id)
        tx.outbox.clear()
        events = list(tx.events)
        tx.events.clear()
        for ev in events:
            if ev.kind is TxEventKind.RESPONSE and ev.response is not None and ev.response.status >= 200:
                on_done(ev.response, now)
            elif ev.kind is TxEventKind.TIMEOUT:
                on_done(None, now)
            elif ev.kind is TxEventKind.TERMINATED:
                self._client.pop(key, None)
        if key in self._client:
            self.schedule(tx.get_timer(), "ctx", key)


def _status_of(data: bytes) -> int:
    if data.startswith(b"SIP/2.0 "):
        code = data[8:11]
        return int(code) if code.isdigit() else 0
    return 0


def _tag_for(req: Request) -> str:
    """A stable To tag for our non-dialog answers (same request -> same tag)."""
    return f"{abs(hash((req.call_id, req.cseq.number))) & 0xFFFFFFFF:x}"


def _stamp_via(req: Request, origin: Origin) -> Request:
    """RFC 3581 section 4 / RFC 3261 section 18.2.1: received and rport on the top Via."""
    for i, (k, _v) in enumerate(req.headers):
        if k != "Via":
            continue
        via = req.top_via
        params = dict(via.params)
        changed = False
        if "rport" in params:
            params["rport"] = str(origin.addr[1])
            changed = True
        if via.host != origin.addr[0] or changed:
            params["received"] = origin.addr[0]
            changed = True
        if not changed:
            return req
        port = f":{via.port}" if via.port is not None else ""
        new = f"SIP/2.0/{via.transport} {via.host}{port}{format_params(params)}"
        hdrs = req.headers[:i] + (("Via", new),) + req.headers[i + 1 :]
        out = Request(method=req.method, uri=req.uri, headers=hdrs, body=req.body)
        out._memo.update(req._memo)  # parsed views stay valid, except the top Via
        out._memo.pop("via", None)
        return out
    return req


_ANSWER_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")


def error_response(raw: bytes, exc: SipParseError) -> Response | None:
    """A best-effort answer to an unparseable request: needs Via, From, To, Call-ID and CSeq
    (section 8.2.6.2), else the message is dropped. Responses and ACKs are never answered."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    if not lines or lines[0].startswith("SIP/") or lines[0].startswith("ACK "):
        return None
    found: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        try:
            cname = canonical(name.strip())
        except SipParseError:
            continue
        if cname in _ANSWER_HEADERS and (cname == "Via" or all(k != cname for k, _ in found)):
            found.append((cname, value.strip()))
    if {k for k, _ in found} != set(_ANSWER_HEADERS):
        return None
    reason = "".join(c for c in exc.reason if 32 <= ord(c) < 127)[:120] or "Bad Request"
    return Response(status=exc.status, reason=reason, headers=tuple(found))
