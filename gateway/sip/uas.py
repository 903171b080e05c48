"""Inbound calls on top of the transaction layer: dialogs, offer/answer, session timers.

One :class:`SipCall` per admitted INVITE; its life follows :data:`gateway.sip.call.CALL_TABLE`.
The :class:`CallManager` turns requests into call inputs and performs the table's effects
(RFC 3261 sections 12-15, RFC 3264, RFC 4028, RFC 3262 for 100rel, RFC 6086 for INFO).
Time is passed in; the only I/O is through the core's ``send``/``respond``/``start_client``
and the media legs the core's ``open_leg`` returns.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gateway.calls import Admission, DialTarget, DigitSource, IncomingCall, Protocol_, Transport
from gateway.rtp.ports import PortsExhausted
from gateway.rtp.types import MediaKind, SrtpParams
from gateway.sip.call import CallInput, CallState, Effect, transition
from gateway.sip.dialog import NUMBERS, Dialog, new_tag
from gateway.sip.errors import SipParseError, SipRequestError
from gateway.sip.headers import escape_user
from gateway.sip.message import Origin, Request, Response, response_to
from gateway.sip.offer_answer import (
    LocalMedia,
    MediaPlan,
    OfferRejected,
    apply_answer,
    build_answer,
    build_offer,
    negotiate,
    new_srtp_key,
)
from gateway.sip.sdp import Sdp
from gateway.sip.session_timer import (
    SessionTimer,
    after_422,
    after_refresh_response,
    negotiate_as_uas,
    refresh_headers,
)
from gateway.sip.transaction import T1, T2

if TYPE_CHECKING:
    from gateway.sip.core import SipCore

SDP_TYPE = "application/sdp"
FPU_XML = (b'<?xml version="1.0" encoding="utf-8" ?>\r\n<media_control><vc_primitive><to_encoder>'
           b"<picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n")
_DIGITS = "0123456789*#ABCD"
_EVENT_DIGITS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
_SIGNAL_RE = re.compile(r"^\s*signal\s*=\s*(\S+)\s*$", re.I | re.M)
ServerKey = tuple[str, str, str]


class SipCall:
    """Everything about one inbound call (mutable; owned by the CallManager)."""

    def __init__(self, *, call_id: str, info: IncomingCall, invite: Request, origin: Origin,
                 invite_key: ServerKey, dialog: Dialog, timer: SessionTimer) -> None:
        self.call_id = call_id
        self.state = CallState.RINGING
        self.info = info
        self.invite = invite
        self.origin = origin
        self.invite_key = invite_key
        self.dialog = dialog
        self.timer = timer
        self.legs: dict[MediaKind, Any] = {}
        self.plans: list[MediaPlan] = []
        self.answer: Sdp | None = None
        self.answer_bytes = b""  # bytes(answer), rendered once per change
        self.sdp_version = NUMBERS.randrange(10**6)
        self.session_id = str(NUMBERS.randrange(10**12))
        self.srtp_tx: dict[MediaKind, SrtpParams] = {}
        self.awaiting_answer: list[MediaPlan] | None = None  # our offer is out (delayed offer)
        self.pending_2xx: Response | None = None
        self.pending_cseq = 0
        self.retx_interval = T1
        self.deadlines: dict[str, float] = {}
        self.peer_allow = invite.tokens("Allow")
        self.refreshing = False
        self.acks: dict[int, bytes] = {}  # our ACKs for 2xx to our re-INVITEs, by CSeq
        self.rseq = 0
        self.ended_reason = ""
        self.control = SipCallControl(self)
        self.manager: CallManager | None = None

    @property
    def secure(self) -> bool:
        return self.origin.transport == "tls"


class SipCallControl:
    """What the application holds for a connected call (gateway.calls.CallControl)."""

    def __init__(self, call: SipCall) -> None:
        self._call = call

    @property
    def legs(self) -> list[Any]:
        return list(self._call.legs.values())

    def hangup(self, reason: str) -> None:
        mgr = self._call.manager
        if mgr is not None:
            mgr.hangup(self._call.call_id, reason, mgr.core.clock())
            mgr.core.notify()

    def request_keyframe(self) -> None:
        """FIR/PLI through the video leg when the device does RTCP feedback; otherwise the
        leg falls back to SIP INFO picture_fast_update (wired at leg creation)."""
        mgr = self._call.manager
        if mgr is None:
            return
        leg = self._call.legs.get(MediaKind.VIDEO)
        if leg is not None:
            leg.request_keyframe()
        else:
            mgr.send_fpu(self._call, mgr.core.clock())
        mgr.core.notify()


class CallManager:
    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.calls: dict[str, SipCall] = {}
        self._active = 0  # calls past RINGING and not ended (the InboundCallsActive gauge)

    @property
    def settings(self) -> Any:
        return self.core.settings

    def local_tag_of(self, call_id: str) -> str:
        call = self.calls.get(call_id)
        return call.dialog.local_tag if call else ""

    def active_count(self) -> int:
        return self._active

    # ---- initial INVITE -------------------------------------------------------------------
    def receive_invite(self, req: Request, origin: Origin, key: ServerKey, now: float) -> None:
        m = self.core.metrics
        m.inc("InboundCallAttempts")
        try:
            self._admit_invite(req, origin, key, now)
        except SipRequestError:
            m.inc("InboundCallFailures")
            raise

    def _admit_invite(self, req: Request, origin: Origin, key: ServerKey, now: float) -> None:
        s = self.settings
        if req.call_id in self.calls:
            raise SipRequestError(482, "Loop Detected")
        if not self.core.accepting:
            raise SipRequestError(503, "Draining", headers=(("Retry-After", str(s.retry_after_s)),))
        uri = req.ruri
        if uri.scheme not in ("sip", "sips"):
            raise SipRequestError(416, "Unsupported URI Scheme")
        user = dial_user(uri.user, uri.host)
        bare_id = not uri.user and bool(user)
        if s.domains and not bare_id and uri.host not in s.domains and uri.host != s.advertise_host:
            raise SipRequestError(404, "Not Found (unknown domain)")
        timer = negotiate_as_uas(req, min_se=s.min_se_s, default_se=s.session_expires_s)
        offer = _sdp_of(req)
        secure = origin.transport == "tls"
        plans: list[MediaPlan] = []
        if offer is not None:
            try:
                plans = negotiate(offer, srtp_ok=secure, require_srtp=secure and s.require_srtp_on_tls)
            except OfferRejected as exc:
                raise SipRequestError(488, str(exc)) from None
        info = IncomingCall(call_id=req.call_id, protocol=Protocol_.SIP, transport=Transport(origin.transport),
                            source=origin.addr, from_uri=req.from_.uri, to_uri=req.uri,
                            target=DialTarget.parse(user), user_agent=req.header("User-Agent"))
        admission = self.core.app.admit(info)
        if admission is not Admission.ACCEPT:
            if admission is Admission.THROTTLED:
                self.core.metrics.inc("Throttles")
            if admission is Admission.NO_MEDIA_PORTS:
                raise SipRequestError(503, "No Media Ports")
            raise SipRequestError(503, "Service Unavailable", headers=(("Retry-After", str(s.retry_after_s)),))
        scheme = "sips" if uri.scheme == "sips" else "sip"
        host = s.advertise_host
        port = origin.local[1]
        contact = f"<{scheme}:{escape_user(uri.user) or 'gw'}@{host}:{port};transport={origin.transport}>"
        dialog = Dialog.from_invite(req, origin, local_tag=new_tag(), contact=contact, via_host=f"{host}:{port}")
        call = SipCall(call_id=req.call_id, info=info, invite=req, origin=origin, invite_key=key,
                       dialog=dialog, timer=timer)
        call.manager = self
        try:
            if offer is not None:
                self._take_offer(call, offer, plans)
            else:
                self._make_offer(call)
        except SipRequestError:
            self._close_legs(call)
            self.core.app.call_ended(call.call_id, "no-media-ports")
            raise
        self.calls[call.call_id] = call
        if s.answer_delay_s > 0:
            self._ring(call, req, key, now)
            call.deadlines["answer"] = now + s.answer_delay_s
            self.core.schedule(call.deadlines["answer"], "call", call)
        else:
            self._input(call, CallInput.ANSWER, now)

    def _ring(self, call: SipCall, req: Request, key: ServerKey, now: float) -> None:
        extra: tuple[tuple[str, str], ...] = (("Contact", call.dialog.contact),)
        if "100rel" in req.tokens("Require") or "100rel" in req.tokens("Supported"):
            call.rseq = 1  # RFC 3262: reliable provisional; the PRACK is answered 200
            extra += (("Require", "100rel"), ("RSeq", "1"))
        self.core.respond(key, response_to(req, 180, to_tag=call.dialog.local_tag, extra=extra), now)

    # ---- offer/answer -----------------------------------------------------------------------
    def _legs_for(self, call: SipCall, kinds: list[MediaKind]) -> None:
        for kind in kinds:
            if kind in call.legs:
                continue
            try:
                leg = self.core.open_leg(call.call_id, kind)
            except PortsExhausted:
                raise SipRequestError(503, "No Media Ports") from None
            self._wire_leg(call, kind, leg)
            call.legs[kind] = leg

    def _wire_leg(self, call: SipCall, kind: MediaKind, leg: Any) -> None:
        call_id = call.call_id
        app = self.core.app
        core = self.core
        if kind is MediaKind.AUDIO:
            leg.on_dtmf = lambda digit, suspect: app.digit(call_id, digit, DigitSource.RFC4733, suspect=suspect)
            leg.on_timeout = lambda reason: (self.hangup(call_id, f"media-timeout: {reason}", core.clock()),
                                             core.notify())
        else:
            leg.on_keyframe_request_fallback = lambda: (self.send_fpu(call, core.clock()), core.notify())

    def _srtp_for(self, call: SipCall, plan: MediaPlan) -> SrtpParams | None:
        if plan.srtp_rx is None or plan.kind is None:
            return None
        key = call.srtp_tx.get(plan.kind)
        if key is None or key.suite != plan.srtp_rx.suite:
            key = call.srtp_tx[plan.kind] = new_srtp_key(plan.srtp_rx.suite)
        return key

    def _take_offer(self, call: SipCall, offer: Sdp, plans: list[MediaPlan]) -> None:
        """Answer an offer (initial or re-INVITE/UPDATE): same SDP in -> same answer and version."""
        self._legs_for(call, [p.kind for p in plans if p.kind is not None])
        local: dict[int, LocalMedia] = {}
        for p in plans:
            if p.kind is not None:
                local[p.index] = LocalMedia(rtp_port=call.legs[p.kind].local_rtp_port,
                                            srtp_tx=self._srtp_for(call, p))
        host = self.settings.advertise_host
        answer = build_answer(offer, plans, local, host=host, session_id=call.session_id,
                              version=call.sdp_version)
        rendered = bytes(answer)
        if call.answer is not None and rendered != call.answer_bytes:
            call.sdp_version += 1  # RFC 4566 5.2 / RFC 3264 8: a changed answer gets a new version
            answer.version = call.sdp_version
            rendered = bytes(answer)
        call.answer = answer
        call.answer_bytes = rendered
        call.plans = plans
        self._configure(call, plans)

    def _configure(self, call: SipCall, plans: list[MediaPlan]) -> None:
        for p in plans:
            if p.kind is not None and p.kind in call.legs:
                call.legs[p.kind].configure(p.leg_config(call.srtp_tx.get(p.kind)))

    def _make_offer(self, call: SipCall) -> None:
        """Delayed offer (RFC 3261 13.2.1): we offer in the 200, the answer comes in the ACK."""
        self._legs_for(call, [MediaKind.AUDIO, MediaKind.VIDEO])
        secure = call.secure and self.settings.require_srtp_on_tls
        local = {}
        for kind, leg in call.legs.items():
            srtp = None
            if secure:
                srtp = call.srtp_tx.setdefault(kind, new_srtp_key("AES_CM_128_HMAC_SHA1_80"))
            local[kind] = LocalMedia(rtp_port=leg.local_rtp_port, srtp_tx=srtp)
        offer, plans = build_offer(local, host=self.settings.advertise_host, session_id=call.session_id,
                                   version=call.sdp_version, secure=secure)
        call.answer = offer
        call.answer_bytes = bytes(offer)
        call.awaiting_answer = plans

    def _answer_from(self, call: SipCall, body_owner: Request) -> None:
        if call.awaiting_answer is None:
            return
        sdp = _sdp_of(body_owner)
        if sdp is None:
            return
        plans = apply_answer(call.awaiting_answer, sdp)
        call.awaiting_answer = None
        call.plans = plans
        self._configure(call, plans)

    # ---- answering and the 2xx retransmission (section 13.3.1.4) -----------------------------
    def _send_2xx(self, call: SipCall, req: Request, key: ServerKey, now: float,
                  extra: tuple[tuple[str, str], ...] = (), with_sdp: bool = True) -> None:
        body = call.answer_bytes if (with_sdp and call.answer is not None) else b""
        hdrs = (("Contact", call.dialog.contact),) + self.core.capabilities() + extra
        resp = response_to(req, 200, to_tag=call.dialog.local_tag, extra=hdrs, body=body,
                           content_type=SDP_TYPE if body else "")
        self.core.respond(key, resp, now)
        if req.method == "INVITE":
            call.pending_2xx = resp
            call.pending_cseq = req.cseq.number
            call.retx_interval = T1
            if not call.origin.reliable:
                call.deadlines["retx"] = now + T1
                self.core.schedule(now + T1, "call", call)
            call.deadlines["ack"] = now + 64 * T1
            self.core.schedule(now + 64 * T1, "call", call)

    def _answer(self, call: SipCall, now: float) -> None:
        self._send_2xx(call, call.invite, call.invite_key, now, extra=call.timer.response_headers())
        self.core.metrics.inc("InboundCallsAnswered")
        self._arm_session_timer(call, now)

    def _arm_session_timer(self, call: SipCall, now: float) -> None:
        when, refresh = call.timer.deadline(now)
        call.deadlines.pop("refresh", None)
        if refresh:
            call.deadlines["refresh"] = when
            call.deadlines["expire"] = now + call.timer.interval_s
        else:
            call.deadlines["expire"] = when
        for w in (call.deadlines.get("refresh"), call.deadlines["expire"]):
            self.core.schedule(w, "call", call)

    # ---- the table's effects -------------------------------------------------------------
    def _input(self, call: SipCall, inp: CallInput, now: float, reason: str = "") -> None:
        step = transition(call.state, inp)
        if step is None:
            return
        effects, new_state = step
        was_active = call.state is not CallState.RINGING and call.state is not CallState.ENDED
        now_active = new_state is not CallState.RINGING and new_state is not CallState.ENDED
        call.state = new_state
        if was_active != now_active:
            self._active += 1 if now_active else -1
            self.core.metrics.gauge("InboundCallsActive", self._active)
        for eff in effects:
            if eff is Effect.SEND_200:
                self._answer(call, now)
            elif eff is Effect.SEND_487:
                self.core.respond(call.invite_key, response_to(call.invite, 487, to_tag=call.dialog.local_tag), now)
                self.core.metrics.inc("InboundCallFailures")
            elif eff is Effect.SEND_480:
                self.core.respond(call.invite_key, response_to(call.invite, 480, reason or "Temporarily Unavailable",
                                                               to_tag=call.dialog.local_tag), now)
                self.core.metrics.inc("InboundCallFailures")
            elif eff is Effect.SEND_BYE:
                bye = call.dialog.request("BYE", extra=(("Reason", f'SIP;cause=200;text="{_q(reason)}"'),))
                self.core.start_client(bye, call.origin, now, lambda resp, t: None)
            elif eff is Effect.CONNECTED:
                self.core.app.call_connected(call.info, call.control)
            elif eff is Effect.ENDED:
                self._ended(call, reason or inp.value)

    def _ended(self, call: SipCall, reason: str) -> None:
        call.deadlines.clear()
        call.pending_2xx = None
        self._close_legs(call)
        self.calls.pop(call.call_id, None)
        call.ended_reason = reason
        self.core.app.call_ended(call.call_id, reason)

    def _close_legs(self, call: SipCall) -> None:
        for leg in call.legs.values():
            leg.close()
        call.legs.clear()

    # ---- inputs from the core ------------------------------------------------------------
    def receive_cancel(self, req: Request, now: float) -> None:
        call = self.calls.get(req.call_id)
        if call is not None:
            self._input(call, CallInput.CANCEL, now, "cancelled")

    def receive_ack(self, req: Request, origin: Origin, now: float) -> None:
        call = self.calls.get(req.call_id)
        if call is None or not call.dialog.matches(req):
            return  # stray ACK: dropped (section 17.2.3)
        if call.pending_2xx is not None and req.cseq.number == call.pending_cseq:
            call.pending_2xx = None
            call.deadlines.pop("retx", None)
            call.deadlines.pop("ack", None)
        self._answer_from(call, req)
        self._input(call, CallInput.ACK, now)

    def final_not_acked(self, call_id: str, now: float) -> None:
        """Timer H fired for a non-2xx final: nothing left of the call (logged by the adapter)."""

    def retransmitted_2xx(self, resp: Response, now: float) -> None:
        call = self.calls.get(resp.call_id)
        if call is None:
            return
        ack = call.acks.get(resp.cseq.number)
        if ack is not None:
            self.core.send(call.origin, ack, call_id=call.call_id)

    def hangup(self, call_id: str, reason: str, now: float) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            self._input(call, CallInput.HANGUP, now, reason)

    def close_all(self, reason: str, now: float) -> None:
        for call in list(self.calls.values()):
            self._input(call, CallInput.HANGUP, now, reason)

    def on_timer(self, call: SipCall, now: float) -> None:
        if call.state is CallState.ENDED:
            return
        d = call.deadlines
        if d.get("answer", now + 1) <= now:
            del d["answer"]
            self._input(call, CallInput.ANSWER, now)
        if d.get("retx", now + 1) <= now and call.pending_2xx is not None:
            call.retx_interval = min(call.retx_interval * 2, T2)
            d["retx"] = now + call.retx_interval
            self.core.send(call.origin, bytes(call.pending_2xx), call_id=call.call_id, status=200)
            self.core.schedule(d["retx"], "call", call)
        if d.get("ack", now + 1) <= now:
            del d["ack"]
            d.pop("retx", None)
            call.pending_2xx = None
            self._input(call, CallInput.ACK_TIMEOUT, now, "ack-timeout")
        if d.get("refresh", now + 1) <= now:
            del d["refresh"]
            self._refresh(call, now)
        if d.get("expire", now + 1) <= now:
            del d["expire"]
            self._input(call, CallInput.SESSION_EXPIRED, now, "session-timer-expired")

    # ---- in-dialog requests ----------------------------------------------------------------
    def receive_in_dialog(self, req: Request, origin: Origin, key: ServerKey, now: float) -> None:
        call = self.calls.get(req.call_id)
        if call is None or not call.dialog.matches(req):
            raise SipRequestError(481, "Call/Transaction Does Not Exist")
        cseq = req.cseq.number
        if cseq <= call.dialog.remote_cseq:
            raise SipRequestError(500, "CSeq Out Of Order")
        call.dialog.remote_cseq = cseq
        if req.header("Allow"):
            call.peer_allow = req.tokens("Allow")
        tag = call.dialog.local_tag
        method = req.method
        if method == "BYE":
            self.core.respond(key, response_to(req, 200, to_tag=tag), now)
            self._input(call, CallInput.BYE, now, "remote-bye")
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(call, req, key, now)
        elif method == "INFO":
            self._info(call, req, key, now)
        elif method == "OPTIONS":
            self.core.respond(key, response_to(req, 200, to_tag=tag, extra=self.core.capabilities()), now)
        elif method == "PRACK":
            rack = req.header("RAck").split()
            if call.rseq and rack and rack[0] == str(call.rseq):
                self.core.respond(key, response_to(req, 200, to_tag=tag), now)
            else:
                raise SipRequestError(481, "No Matching Reliable Provisional")

    def _reoffer(self, call: SipCall, req: Request, key: ServerKey, now: float) -> None:
        """re-INVITE or UPDATE (RFC 3311): new offer and/or session refresh."""
        if call.awaiting_answer is not None or call.refreshing or call.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            raise SipRequestError(491, "Request Pending", headers=(("Retry-After", "1"),))
        s = self.settings
        timer = negotiate_as_uas(req, min_se=s.min_se_s, default_se=call.timer.interval_s)
        offer = _sdp_of(req)
        with_sdp = False
        if offer is not None:
            try:
                plans = negotiate(offer, srtp_ok=call.secure, require_srtp=call.secure and s.require_srtp_on_tls)
            except OfferRejected as exc:
                raise SipRequestError(488, str(exc)) from None
            self._take_offer(call, offer, plans)
            with_sdp = True
        elif req.method == "INVITE":
            call.awaiting_answer = [p for p in call.plans if p.kind is not None]  # our offer = last answer
            with_sdp = True
        call.timer = timer
        self._send_2xx(call, req, key, now, extra=timer.response_headers(), with_sdp=with_sdp)
        self._arm_session_timer(call, now)

    def _info(self, call: SipCall, req: Request, key: ServerKey, now: float) -> None:
        """RFC 6086 INFO: DTMF relay bodies and picture_fast_update."""
        ctype = req.header("Content-Type").split(";")[0].strip().lower()
        body = req.body.decode("utf-8", "replace")
        digit = ""
        if ctype == "application/dtmf-relay":
            m = _SIGNAL_RE.search(body)
            digit = m.group(1) if m else ""
        elif ctype == "application/dtmf":
            digit = body.strip()
        elif ctype == "application/media_control+xml":
            if "picture_fast_update" in body:
                leg = call.legs.get(MediaKind.VIDEO)
                if leg is not None:
                    leg.request_keyframe()
        elif ctype and req.body:
            raise SipRequestError(415, "Unsupported Media Type", headers=(("Accept", "application/dtmf-relay, "
                                  "application/dtmf, application/media_control+xml"),))
        if digit:
            digit = _EVENT_DIGITS.get(digit, digit).upper()
            if len(digit) != 1 or digit not in _DIGITS:
                raise SipRequestError(400, "Bad DTMF digit in INFO")
        self.core.respond(key, response_to(req, 200, to_tag=call.dialog.local_tag), now)
        if digit:
            self.core.app.digit(call.call_id, digit, DigitSource.SIP_INFO)

    # ---- requests we send -------------------------------------------------------------------
    def send_fpu(self, call: SipCall, now: float) -> None:
        if call.state is not CallState.CONFIRMED:
            return
        info = call.dialog.request("INFO", body=FPU_XML, content_type="application/media_control+xml")
        self.core.start_client(info, call.origin, now, lambda resp, t: None)

    def _refresh(self, call: SipCall, now: float) -> None:
        """RFC 4028 section 7.4 / 9: refresh by UPDATE when the peer allows it, else re-INVITE."""
        if call.state is not CallState.CONFIRMED or call.refreshing:
            return
        call.refreshing = True
        hdrs = refresh_headers(call.timer, self.settings.min_se_s)
        if "update" in call.peer_allow:
            req = call.dialog.request("UPDATE", extra=hdrs)
        else:
            body = call.answer_bytes
            req = call.dialog.request("INVITE", extra=hdrs, body=body, content_type=SDP_TYPE if body else "")
        self.core.start_client(req, call.origin, now, lambda resp, t: self._refreshed(call, req, resp, t))

    def _refreshed(self, call: SipCall, req: Request, resp: Response | None, now: float) -> None:
        call.refreshing = False
        if call.state is not CallState.CONFIRMED:
            return
        if resp is None or resp.status in (408, 481):
            self._input(call, CallInput.REFRESH_FAILED, now, "session-refresh-failed")
            return
        if 200 <= resp.status < 300:
            if req.method == "INVITE":
                ack = call.dialog.request("ACK", cseq=req.cseq.number)
                to = resp.header("To")
                ack = ack.with_headers(tuple((k, to if k == "To" else v) for k, v in ack.headers))
                call.acks = {req.cseq.number: bytes(ack)}
                self.core.send(call.origin, call.acks[req.cseq.number], call_id=call.call_id)
                sdp = _sdp_of(resp)
                if sdp is not None:
                    self._configure(call, apply_answer([p for p in call.plans if p.kind], sdp))
            call.timer = after_refresh_response(call.timer, resp)
            self._arm_session_timer(call, now)
        elif resp.status == 422:
            call.timer = after_422(call.timer, resp)
            self._refresh(call, now)
        else:  # 491 and friends: try again shortly; the expiry deadline still stands
            call.deadlines["refresh"] = now + 2.0
            self.core.schedule(now + 2.0, "call", call)


_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def dial_user(user: str, host: str) -> str:
    """The dial string of a Request-URI: ``ID@domain``, ``ID@IP`` -> the user part without
    user-parameters (``;phone-context=..``); a bare ``sip:ID`` (no user part, the ID where the
    host goes) -> the ID."""
    if user:
        return user.split(";")[0]
    if host and not _IPV4.match(host) and host.replace(".", "").isdigit():
        return host
    return ""


def _sdp_of(msg: Request | Response) -> Sdp | None:
    if not msg.body:
        return None
    ctype = msg.header("Content-Type").split(";")[0].strip().lower()
    if ctype != SDP_TYPE:
        if isinstance(msg, Request):
            raise SipRequestError(415, "Unsupported Media Type", headers=(("Accept", SDP_TYPE),))
        return None
    try:
        return Sdp.parse(msg.body)
    except SipParseError as exc:
        raise SipRequestError(400, f"Bad SDP: {exc.reason}") from None


def _q(text: str) -> str:
    return "".join(c for c in text if c not in '"\\\r\n')[:100]


__all__ = ["CallManager", "SipCall", "SipCallControl"]
