"""The call state machine of one inbound SIP call, as a table (RFC 3261, RFC 4028).

``(state, input) -> (effects, new state, RFC section)``. The core feeds inputs and
performs the effects; a pair missing from the table is ignored (e.g. a BYE racing
our own). States:

- RINGING: admitted, 180 sent, answer pending (``answer_delay_s`` > 0 only).
- ANSWERED: 200 sent, waiting for the ACK (2xx retransmitted on UDP, section 13.3.1.4).
- HANGUP_AFTER_ACK: the app hung up before the ACK; BYE goes out once it arrives or
  times out (section 15: no BYE before the ACK).
- CONFIRMED: in the meeting.
- ENDED: gone; media closed, the app told once.
"""

from __future__ import annotations

import enum


class CallState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    RINGING = "ringing"
    ANSWERED = "answered"
    HANGUP_AFTER_ACK = "hangup-after-ack"
    CONFIRMED = "confirmed"
    ENDED = "ended"


class CallInput(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    ANSWER = "answer"
    CANCEL = "cancel"
    ACK = "ack"
    ACK_TIMEOUT = "ack-timeout"
    BYE = "bye"
    HANGUP = "hangup"
    SESSION_EXPIRED = "session-expired"
    REFRESH_FAILED = "refresh-failed"
    MEDIA_TIMEOUT = "media-timeout"


class Effect(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, fast table lookups

    SEND_200 = "send-200"  # answer the INVITE
    SEND_487 = "send-487"  # the INVITE was cancelled
    SEND_480 = "send-480"  # the app hung up before we answered
    SEND_BYE = "send-bye"
    CONNECTED = "connected"  # app.call_connected
    ENDED = "ended"  # close media, app.call_ended


C, In, E = CallState, CallInput, Effect

CALL_TABLE: dict[tuple[CallState, CallInput], tuple[tuple[Effect, ...], CallState, str]] = {
    (C.RINGING, In.ANSWER): ((E.SEND_200,), C.ANSWERED, "13.3.1.4"),
    (C.RINGING, In.CANCEL): ((E.SEND_487, E.ENDED), C.ENDED, "9.2"),
    (C.RINGING, In.HANGUP): ((E.SEND_480, E.ENDED), C.ENDED, "13.3.1.3"),
    (C.RINGING, In.MEDIA_TIMEOUT): ((E.SEND_480, E.ENDED), C.ENDED, "13.3.1.3"),
    (C.ANSWERED, In.ACK): ((E.CONNECTED,), C.CONFIRMED, "13.3.1.4"),
    (C.ANSWERED, In.ACK_TIMEOUT): ((E.SEND_BYE, E.ENDED), C.ENDED, "13.3.1.4"),
    (C.ANSWERED, In.BYE): ((E.ENDED,), C.ENDED, "15.1.2"),
    (C.ANSWERED, In.HANGUP): ((), C.HANGUP_AFTER_ACK, "15"),
    (C.ANSWERED, In.MEDIA_TIMEOUT): ((), C.HANGUP_AFTER_ACK, "15"),
    (C.HANGUP_AFTER_ACK, In.ACK): ((E.SEND_BYE, E.ENDED), C.ENDED, "15"),
    (C.HANGUP_AFTER_ACK, In.ACK_TIMEOUT): ((E.SEND_BYE, E.ENDED), C.ENDED, "15"),
    (C.HANGUP_AFTER_ACK, In.BYE): ((E.ENDED,), C.ENDED, "15.1.2"),
    (C.CONFIRMED, In.ACK): ((), C.CONFIRMED, "13.3.1.4"),
    (C.CONFIRMED, In.BYE): ((E.ENDED,), C.ENDED, "15.1.2"),
    (C.CONFIRMED, In.HANGUP): ((E.SEND_BYE, E.ENDED), C.ENDED, "15.1.1"),
    (C.CONFIRMED, In.SESSION_EXPIRED): ((E.SEND_BYE, E.ENDED), C.ENDED, "RFC4028 10"),
    (C.CONFIRMED, In.REFRESH_FAILED): ((E.SEND_BYE, E.ENDED), C.ENDED, "RFC5057 5.1"),
    (C.CONFIRMED, In.MEDIA_TIMEOUT): ((E.SEND_BYE, E.ENDED), C.ENDED, "15.1.1"),
}


def transition(state: CallState, inp: CallInput) -> tuple[tuple[Effect, ...], CallState] | None:
    row = CALL_TABLE.get((state, inp))
    if row is None:
        return None
    return row[0], row[1]
