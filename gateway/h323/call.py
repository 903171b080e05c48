"""H.225.0 call signalling core for one incoming call (sans-I/O; the gateway is the callee).

Stack: TCP bytes -> :class:`TpktReader` -> :func:`q931.decode` ->
:func:`asn1.decode_user_information` -> this state machine -> events. Our answers go the
same way down, pulled with :meth:`H225Call.data_to_send`. One call per TCP connection (we
answer multipleCalls and maintainConnection FALSE, H.225.0 section 7.3).

Call states (Q.931 section 2.1.1 user side, as H.225.0 section 7.2 narrows them):

| state                    | Q.931 | left by                                | timer          |
|--------------------------|-------|----------------------------------------|----------------|
| NULL                     | U0    | Setup in -> CALL_PRESENT               | setup_wait     |
| CALL_PRESENT             | U6    | proceed() -> INCOMING_CALL_PROCEEDING  | answer (102)   |
| INCOMING_CALL_PROCEEDING | U9    | alert() -> CALL_RECEIVED, connect()    | answer (102)   |
| CALL_RECEIVED            | U7    | connect() -> ACTIVE                    | answer (102)   |
| ACTIVE                   | U10   | ReleaseComplete either way -> RELEASED | T322 (102)     |
| RELEASED                 | -     | terminal: the adapter closes the socket | -             |

(ACTIVE is also watched by the H.245 session's RoundTripDelay keepalive, T105.)

Rows for messages from the peer are in ``_TABLE`` below, each with its section. Anything
malformed ends the call with ReleaseComplete carrying the error's cause (Q.931 5.8);
a message type we do not know gets Status cause 97 (5.8.4); a message not valid in the
current state gets Status cause 98 (5.8.5.1 / H.225.0 7.2.2.x); a foreign call reference
gets ReleaseComplete cause 81 on that reference (5.8.3.2) and our call carries on.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.h323 import asn1, q931
from gateway.h323 import messages as m
from gateway.h323.errors import Cause, LocalProtocolError, RemoteProtocolError
from gateway.h323.q931 import MessageType
from gateway.h323.tpkt import MAX_FRAME, TpktReader, frame


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTimers:
    setup_wait_s: float = 10.0  # connection open, no Setup yet
    answer_s: float = 30.0  # Setup received, no Connect from us yet
    t322_s: float = 4.0  # Status Enquiry without Status (Q.931 table 9-2)


class CallState(enum.Enum):
    NULL = 0
    CALL_PRESENT = 6
    INCOMING_CALL_PROCEEDING = 9
    CALL_RECEIVED = 7
    ACTIVE = 10
    RELEASED = -1


# --------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupReceived:
    call_id: str  # callIdentifier guid as hex
    info: m.UserInformation
    called_number: str | None
    calling_number: str | None
    display: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsReceived:
    digits: str  # Q.931 keypad IE (Information message)


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelledH245:
    pdus: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class H245AddressReceived:
    address: m.Address  # the peer asks us to connect to its H.245 listener (Facility)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReleased:
    cause: int
    reason: str
    by_peer: bool


Event = SetupReceived | DigitsReceived | TunnelledH245 | H245AddressReceived | CallReleased


class H225Call:
    """Callee side of one H.225.0 call on one TCP connection."""

    def __init__(
        self,
        *,
        timers: CallTimers | None = None,
        now: float = 0.0,
        max_frame: int = MAX_FRAME,
        tunnelling: bool = True,
    ) -> None:
        self.timers = timers or CallTimers()
        self.state = CallState.NULL
        self.call_reference = 0
        self.call_identifier = b""
        self.conference_id = b""
        self.tunnelling = False  # both sides agreed (the peer asked and we allow it)
        self._allow_tunnelling = tunnelling
        self._reader = TpktReader(max_frame)
        self._out: list[bytes] = []
        self._pending_h245: list[bytes] = []
        self._deadline: float | None = now + self.timers.setup_wait_s
        self._t322: float | None = None
        self.release_cause: int | None = None

    # ------------------------------------------------------------------ I/O surface

    @property
    def closed(self) -> bool:
        """True once the call is over: flush :meth:`data_to_send`, then close the socket."""
        return self.state is CallState.RELEASED

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def get_timer(self) -> float | None:
        times = [t for t in (self._deadline, self._t322) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Event]:
        if self._t322 is not None and now >= self._t322:
            self._t322 = None
            return self._fail(
                Cause.RECOVERY_ON_TIMER_EXPIRY, "T322: no Status after Status Enquiry"
            )
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if self.state is CallState.NULL:
                self.state = (
                    CallState.RELEASED
                )  # nothing to release: just close (no call reference)
                return [
                    CallReleased(
                        cause=Cause.RECOVERY_ON_TIMER_EXPIRY, reason="no Setup", by_peer=False
                    )
                ]
            return self._fail(Cause.RECOVERY_ON_TIMER_EXPIRY, f"not answered in {self.state.name}")
        return []

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self.closed:
            return []
        events: list[Event] = []
        try:
            frames = self._reader.feed(data)
        except RemoteProtocolError as exc:
            return self._fail(exc.cause, exc.reason)
        for payload in frames:
            if not payload:
                continue  # an empty TPKT is a TCP keep-alive some stacks send, not a message
            events += self._receive_message(payload, now)
            if self.closed:
                break
        return events

    def connection_lost(self) -> list[Event]:
        if self.closed:
            return []
        self.state = CallState.RELEASED
        return [
            CallReleased(
                cause=Cause.NORMAL_UNSPECIFIED, reason="TCP connection closed", by_peer=True
            )
        ]

    # ------------------------------------------------------------------ actions (ours)

    def proceed(self, now: float, *, h245_address: m.Address | None = None) -> None:
        """CallProceeding (H.225.0 7.3.2): we take the call."""
        self._need(CallState.CALL_PRESENT)
        self._send(
            MessageType.CALL_PROCEEDING, self._ui(m.Body.CALL_PROCEEDING, h245_address=h245_address)
        )
        self.state = CallState.INCOMING_CALL_PROCEEDING

    def alert(self, now: float) -> None:
        self._need(CallState.CALL_PRESENT, CallState.INCOMING_CALL_PROCEEDING)
        self._send(MessageType.ALERTING, self._ui(m.Body.ALERTING))
        self.state = CallState.CALL_RECEIVED

    def connect(
        self,
        now: float,
        *,
        fast_start: tuple[bytes, ...] | None = None,
        fast_connect_refused: bool = False,
        h245_address: m.Address | None = None,
        display: str | None = None,
    ) -> None:
        """Connect (H.225.0 7.3.3), carrying fastStart answers and any pending tunnelled H.245."""
        self._need(
            CallState.CALL_PRESENT, CallState.INCOMING_CALL_PROCEEDING, CallState.CALL_RECEIVED
        )
        ui = self._ui(
            m.Body.CONNECT,
            fast_start=fast_start,
            h245_address=h245_address,
            fast_connect_refused=fast_connect_refused,
        )
        self._send(MessageType.CONNECT, ui, display=display)
        self.state = CallState.ACTIVE
        self._deadline = None

    def tunnel_h245(self, pdus: list[bytes]) -> None:
        """Queue H.245 PDUs: they ride on our next message, or a Facility now if active."""
        if not pdus or self.closed:
            return
        if not self.tunnelling:
            raise LocalProtocolError("H.245 tunnelling is not in use on this call")
        self._pending_h245 += pdus
        if self.state is not CallState.CALL_PRESENT:
            # H.225.0 7.4 / H.323 8.2.1: Facility with an empty body just carries h245Control
            self._send(MessageType.FACILITY, self._ui(m.Body.EMPTY))

    def status_enquiry(self, now: float) -> None:
        """Ask the peer for its call state (Q.931 5.8.10); T322 guards the answer."""
        if self.closed or self.state is CallState.NULL:
            return
        self._send(MessageType.STATUS_ENQUIRY, self._ui(m.Body.STATUS_INQUIRY))
        self._t322 = now + self.timers.t322_s

    def release(self, cause: int, reason: str = "") -> list[Event]:
        """ReleaseComplete with ``cause`` (H.225.0 7.3.6); the call is then over."""
        if self.closed:
            return []
        if self.state is not CallState.NULL:
            self._send(MessageType.RELEASE_COMPLETE, self._ui(m.Body.RELEASE_COMPLETE), cause=cause)
        self.state = CallState.RELEASED
        self.release_cause = cause
        self._deadline = self._t322 = None
        return [
            CallReleased(
                cause=cause, reason=reason or f"released with cause {cause}", by_peer=False
            )
        ]

    # ------------------------------------------------------------------ receiving

    def _receive_message(self, payload: bytes, now: float) -> list[Event]:
        try:
            msg = q931.decode(payload)
            ui = asn1.decode_user_information(msg.user_user) if msg.user_user is not None else None
        except RemoteProtocolError as exc:
            return self._fail(exc.cause, exc.reason)
        if not isinstance(msg.message_type, MessageType):
            self._status(Cause.MESSAGE_TYPE_NONEXISTENT)
            return []
        if self.state is not CallState.NULL and msg.call_reference != self.call_reference:
            # Q.931 5.8.3.2: an unknown call reference is released on its own
            self._out.append(
                frame(
                    q931.encode(
                        q931.Message(
                            message_type=MessageType.RELEASE_COMPLETE,
                            call_reference=msg.call_reference,
                            from_destination=not msg.from_destination,
                            cause=Cause.INVALID_CALL_REFERENCE,
                        )
                    )
                )
            )
            return []
        row = _TABLE.get((self.state, msg.message_type)) or _ANY_STATE.get(msg.message_type)
        if row is None:
            if self.state is CallState.NULL:
                return self._fail(
                    Cause.MESSAGE_NOT_COMPATIBLE_WITH_CALL_STATE,
                    f"{msg.message_type.name} before Setup",
                )
            self._status(Cause.MESSAGE_NOT_COMPATIBLE_WITH_STATE)
            return []
        events = row(self, msg, ui, now)
        if ui is not None and ui.h245_control and self.tunnelling and not self.closed:
            events.append(TunnelledH245(pdus=ui.h245_control))
        return events

    def _on_setup(self, msg: q931.Message, ui: m.UserInformation | None, now: float) -> list[Event]:
        # H.225.0 7.3.1 / H.323 8.1.1
        self.call_reference = msg.call_reference
        if ui is None or ui.body is not m.Body.SETUP:
            return self._fail(Cause.INVALID_IE_CONTENTS, "Setup without a setup UUIE")
        self.state = CallState.CALL_PRESENT
        self._deadline = now + self.timers.answer_s
        guid = (
            ui.call_identifier if ui.call_identifier and any(ui.call_identifier) else os.urandom(16)
        )
        self.call_identifier = guid
        self.conference_id = ui.conference_id or os.urandom(16)
        self.tunnelling = self._allow_tunnelling and ui.h245_tunnelling
        return [
            SetupReceived(
                call_id=guid.hex(),
                info=ui,
                called_number=msg.called_number,
                calling_number=msg.calling_number,
                display=msg.display,
            )
        ]

    def _on_release_complete(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        # H.225.0 7.3.6: the peer is gone; nothing to answer
        self.state = CallState.RELEASED
        self._deadline = self._t322 = None
        cause = msg.cause if msg.cause is not None else Cause.NORMAL_CLEARING
        reason = ui.release_reason if ui is not None and ui.release_reason else "released by peer"
        return [CallReleased(cause=cause, reason=reason, by_peer=True)]

    def _on_information(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        # H.225.0 7.3.5 / H.323 10.3: keypad IE digits
        return [DigitsReceived(digits=msg.keypad)] if msg.keypad else []

    def _on_facility(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        # H.225.0 7.4 and H.323 8.2.3: tunnelled H.245 rides along; startH245 offers an address
        if ui is not None and ui.h245_address is not None:
            return [H245AddressReceived(address=ui.h245_address)]
        return []

    def _on_status_enquiry(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        self._status(Cause.RESPONSE_TO_STATUS_ENQUIRY)  # Q.931 5.8.10
        return []

    def _on_status(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        # Q.931 5.8.11: the peer in state 0 means the call is gone
        self._t322 = None
        if msg.call_state == 0:
            self.state = CallState.RELEASED
            self._deadline = None
            return [
                CallReleased(
                    cause=msg.cause or Cause.NORMAL_UNSPECIFIED,
                    reason="peer reports Null state",
                    by_peer=True,
                )
            ]
        return []

    def _on_ignored(
        self, msg: q931.Message, ui: m.UserInformation | None, now: float
    ) -> list[Event]:
        return []  # Notify, Progress: nothing for a callee to do (their h245Control is still read)

    # ------------------------------------------------------------------ helpers

    def _need(self, *states: CallState) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"not allowed in {self.state.name}")

    def _ui(self, body: m.Body, **kw: object) -> m.UserInformation:
        ui = m.UserInformation(
            body=body,
            call_identifier=self.call_identifier or None,
            conference_id=self.conference_id or None,
            h245_tunnelling=self.tunnelling,
        )
        if kw:
            ui = replace(ui, **{k: v for k, v in kw.items() if v is not None})  # type: ignore[arg-type]
        if self._pending_h245 and self.tunnelling and body is not m.Body.RELEASE_COMPLETE:
            ui = replace(ui, h245_control=tuple(self._pending_h245))
            self._pending_h245 = []
        return ui

    def _send(
        self,
        mtype: MessageType,
        ui: m.UserInformation | None,
        *,
        cause: int | None = None,
        display: str | None = None,
        call_state: int | None = None,
    ) -> None:
        msg = q931.Message(
            message_type=mtype,
            call_reference=self.call_reference,
            from_destination=True,
            cause=cause,
            display=display,
            call_state=call_state,
            user_user=asn1.encode_user_information(ui) if ui is not None else None,
        )
        self._out.append(frame(q931.encode(msg)))

    def _status(self, cause: int) -> None:
        self._send(
            MessageType.STATUS,
            self._ui(m.Body.STATUS),
            cause=cause,
            call_state=self.state.value if self.state.value >= 0 else 0,
        )

    def _fail(self, cause: int, reason: str) -> list[Event]:
        return self.release(cause, reason)


_Row = Callable[[H225Call, q931.Message, "m.UserInformation | None", float], list[Event]]
_ACTIVE_STATES = (
    CallState.CALL_PRESENT,
    CallState.INCOMING_CALL_PROCEEDING,
    CallState.CALL_RECEIVED,
    CallState.ACTIVE,
)
_TABLE: dict[tuple[CallState, MessageType], _Row] = {
    (CallState.NULL, MessageType.SETUP): H225Call._on_setup,  # H.225.0 7.3.1
    **{
        (s, MessageType.INFORMATION): H225Call._on_information for s in _ACTIVE_STATES
    },  # H.225.0 7.3.5
    **{(s, MessageType.FACILITY): H225Call._on_facility for s in _ACTIVE_STATES},  # H.225.0 7.4
    **{(s, MessageType.NOTIFY): H225Call._on_ignored for s in _ACTIVE_STATES},  # H.225.0 7.3.8
    **{(s, MessageType.PROGRESS): H225Call._on_ignored for s in _ACTIVE_STATES},  # H.225.0 7.3.7
}
_ANY_STATE: dict[MessageType, _Row] = {
    MessageType.RELEASE_COMPLETE: H225Call._on_release_complete,  # H.225.0 7.3.6
    MessageType.STATUS_ENQUIRY: H225Call._on_status_enquiry,  # Q.931 5.8.10
    MessageType.STATUS: H225Call._on_status,  # Q.931 5.8.11
}


def dial_string(aliases: tuple[m.Alias, ...], called_number: str | None) -> str:
    """What the caller dialled, for :meth:`DialTarget.parse` (H.323 dial-in habits).

    Preference: E.164 digits (dialedDigits, partyNumber), the Q.931 called party number,
    the h323-ID, then the user part of a URL/email alias. ``IP##ID`` strings (keyed on room
    systems that cannot set an alias) keep only what follows ``##``.
    """
    by_kind = {a.kind: a.value for a in reversed(aliases)}
    for value in (
        by_kind.get(m.AliasKind.DIALED_DIGITS),
        by_kind.get(m.AliasKind.PARTY_NUMBER),
        called_number,
        by_kind.get(m.AliasKind.H323_ID),
        by_kind.get(m.AliasKind.URL),
        by_kind.get(m.AliasKind.EMAIL),
    ):
        if value:
            text = value.strip()
            if "##" in text:
                text = text.rsplit("##", 1)[1]
            for prefix in ("h323:", "sip:"):
                if text.lower().startswith(prefix):
                    text = text[len(prefix) :]
            return text.split("@", 1)[0]
    return ""
