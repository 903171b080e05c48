"""Q.931 messages as H.225.0 uses them (H.225.0 section 7.2; Q.931 sections 3 and 4).

Wire layout of one message (Q.931 section 4.1, figure 4-1):

    protocol discriminator (0x08) | call reference length (0..2) + flag/value |
    message type | information elements (codeset 0 ascending; single-octet IEs
    have bit 8 set; the user-user IE 0x7E has a 2-octet length, H.225.0 7.2.2.1)

:class:`Message` is the decoded form: the IEs H.323 uses get typed fields, every other
codeset-0 IE stays in ``other_ies`` so nothing is silently lost. ``decode`` raises
:class:`RemoteProtocolError` with the Q.850 cause of Q.931 section 5.8 (95 invalid message,
96 mandatory IE missing, 100 invalid IE contents) and never anything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.h323.errors import Cause, RemoteProtocolError

PROTOCOL_DISCRIMINATOR = 0x08
UUIE_PROTOCOL_DISCRIMINATOR = 0x05  # X.208/X.209 coded user information (H.225.0 7.2.2.1)
KEYPAD_CHARS = frozenset("0123456789*#ABCD")
# bearer capability an H.323 endpoint sends (H.225.0 table 8): unrestricted digital, 64 kbit/s
BEARER_UNRESTRICTED_DIGITAL = bytes([0x88, 0x90, 0xA5])


class MessageType(enum.IntEnum):
    """Q.931 table 4-1, the subset H.225.0 section 7.2 allows."""

    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    RELEASE_COMPLETE = 0x5A
    FACILITY = 0x62
    NOTIFY = 0x6E
    STATUS_ENQUIRY = 0x75
    INFORMATION = 0x7B
    STATUS = 0x7D


class IE(enum.IntEnum):
    """Codeset-0 information element identifiers (Q.931 table 4-3) we type."""

    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    CALL_STATE = 0x14
    PROGRESS_INDICATOR = 0x1E
    NOTIFICATION_INDICATOR = 0x27
    DISPLAY = 0x28
    KEYPAD = 0x2C
    SIGNAL = 0x34
    CALLING_PARTY_NUMBER = 0x6C
    CALLED_PARTY_NUMBER = 0x70
    USER_USER = 0x7E


class CallState(enum.IntEnum):
    """Q.931 section 2.1.1 user-side states reported in the call state IE (table 4-10)."""

    NULL = 0
    CALL_PRESENT = 6
    CALL_RECEIVED = 7
    CONNECT_REQUEST = 8
    INCOMING_CALL_PROCEEDING = 9
    ACTIVE = 10
    RELEASE_REQUEST = 19


# H.225.0 section 7.2: which IEs each message must carry (the UUIE for all but Status*)
MANDATORY: dict[MessageType, frozenset[IE]] = {
    MessageType.SETUP: frozenset({IE.BEARER_CAPABILITY, IE.USER_USER}),
    MessageType.CALL_PROCEEDING: frozenset({IE.USER_USER}),
    MessageType.ALERTING: frozenset({IE.USER_USER}),
    MessageType.CONNECT: frozenset({IE.USER_USER}),
    MessageType.FACILITY: frozenset({IE.USER_USER}),
    MessageType.STATUS: frozenset({IE.CAUSE, IE.CALL_STATE}),
}
# Information, Notify, Progress, ReleaseComplete: the UUIE is required by H.225.0 but some
# endpoints omit it on keypad Information and on ReleaseComplete; we accept them without.


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    message_type: MessageType | int
    call_reference: int  # 15-bit value (Q.931 4.3)
    # call reference flag: False in messages from the side that allocated the reference
    # (the caller), True in messages from the side it was sent to (us, for dial-in)
    from_destination: bool = False
    bearer_capability: bytes | None = None
    cause: int | None = None  # Q.850 cause value
    call_state: int | None = None
    progress: int | None = None  # progress description (Q.931 table 4-12)
    notification: int | None = None
    display: str | None = None
    keypad: str | None = None
    signal: int | None = None
    calling_number: str | None = None
    called_number: str | None = None
    user_user: bytes | None = None  # the H.225.0 PER, without the 0x05 discriminator
    other_ies: tuple[tuple[int, bytes], ...] = ()


def _digits(content: bytes, what: str) -> str:
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"{what} is not IA5", Cause.INVALID_IE_CONTENTS) from exc
    return text


def _number_ie(content: bytes, with_3a: bool, what: str) -> str:
    """Called/calling party number: octet 3 (type/plan), optional 3a, then IA5 digits."""
    if not content:
        raise RemoteProtocolError(f"empty {what}", Cause.INVALID_IE_CONTENTS)
    skip = 1
    if with_3a and not content[0] & 0x80:
        skip = 2
    return _digits(content[skip:], what)


def _cause_ie(content: bytes) -> int:
    """Cause IE (Q.931 4.5.12): octet 3 coding/location, optional 3a, octet 4 the value."""
    idx = 1 if content and content[0] & 0x80 else 2
    if len(content) <= idx:
        raise RemoteProtocolError("truncated cause IE", Cause.INVALID_IE_CONTENTS)
    return content[idx] & 0x7F


def decode(data: bytes) -> Message:
    """One Q.931 message (a TPKT payload) to :class:`Message`."""
    if len(data) < 3:
        raise RemoteProtocolError(f"Q.931 message of {len(data)} bytes", Cause.INVALID_MESSAGE)
    if data[0] != PROTOCOL_DISCRIMINATOR:
        raise RemoteProtocolError(f"protocol discriminator {data[0]:#x}", Cause.INVALID_MESSAGE)
    crl = data[1] & 0x0F
    if crl > 2 or len(data) < 3 + crl:
        raise RemoteProtocolError(f"call reference length {crl}", Cause.INVALID_MESSAGE)
    cr_bytes = data[2 : 2 + crl]
    flag = bool(cr_bytes and cr_bytes[0] & 0x80)
    cr = int.from_bytes(cr_bytes, "big") & 0x7FFF if cr_bytes else 0
    pos = 2 + crl
    raw_type = data[pos]
    pos += 1
    try:
        mtype: MessageType | int = MessageType(raw_type)
    except ValueError:
        mtype = raw_type
    fields: dict[str, object] = {}
    other: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    codeset = 0
    n = len(data)
    while pos < n:
        ident = data[pos]
        if ident & 0x80:  # single-octet IE (Q.931 4.5.1)
            pos += 1
            if ident & 0xF0 == 0x90:  # shift: 0x98 bit = non-locking
                codeset = ident & 0x07
            continue
        if ident == IE.USER_USER and codeset == 0:
            if pos + 3 > n:
                raise RemoteProtocolError("truncated user-user IE", Cause.INVALID_MESSAGE)
            length = int.from_bytes(data[pos + 1 : pos + 3], "big")
            start = pos + 3
        else:
            if pos + 2 > n:
                raise RemoteProtocolError(f"truncated IE {ident:#x}", Cause.INVALID_MESSAGE)
            length = data[pos + 1]
            start = pos + 2
        end = start + length
        if end > n:
            raise RemoteProtocolError(f"IE {ident:#x} overruns message", Cause.INVALID_MESSAGE)
        content = bytes(data[start:end])
        pos = end
        if codeset != 0:
            continue  # national / network-specific codesets: ignored (Q.931 5.8.7.1)
        seen.add(ident)
        _store(fields, other, ident, content)
    if isinstance(mtype, MessageType):
        missing = {ie for ie in MANDATORY.get(mtype, frozenset()) if ie not in seen}
        if missing:
            names = ", ".join(sorted(ie.name for ie in missing))
            raise RemoteProtocolError(f"{mtype.name} lacks {names}", Cause.MANDATORY_IE_MISSING)
    return Message(
        message_type=mtype,
        call_reference=cr,
        from_destination=flag,
        other_ies=tuple(other),
        **fields,  # type: ignore[arg-type]
    )


def _store(fields: dict[str, object], other: list[tuple[int, bytes]], ident: int, c: bytes) -> None:
    if ident == IE.BEARER_CAPABILITY:
        fields["bearer_capability"] = c
    elif ident == IE.CAUSE:
        fields["cause"] = _cause_ie(c)
    elif ident == IE.CALL_STATE:
        if len(c) != 1:
            raise RemoteProtocolError("call state IE length", Cause.INVALID_IE_CONTENTS)
        fields["call_state"] = c[0] & 0x3F
    elif ident == IE.PROGRESS_INDICATOR:
        if len(c) < 2:
            raise RemoteProtocolError("progress IE length", Cause.INVALID_IE_CONTENTS)
        fields["progress"] = c[1] & 0x7F
    elif ident == IE.NOTIFICATION_INDICATOR:
        if not c:
            raise RemoteProtocolError("empty notification IE", Cause.INVALID_IE_CONTENTS)
        fields["notification"] = c[0] & 0x7F
    elif ident == IE.DISPLAY:
        fields["display"] = c.decode("latin-1")
    elif ident == IE.KEYPAD:
        text = _digits(c, "keypad")
        if not text or set(text) - KEYPAD_CHARS:
            raise RemoteProtocolError(
                "keypad IE holds non-keypad characters", Cause.INVALID_IE_CONTENTS
            )
        fields["keypad"] = text
    elif ident == IE.SIGNAL:
        if len(c) != 1:
            raise RemoteProtocolError("signal IE length", Cause.INVALID_IE_CONTENTS)
        fields["signal"] = c[0]
    elif ident == IE.CALLING_PARTY_NUMBER:
        fields["calling_number"] = _number_ie(c, True, "calling party number")
    elif ident == IE.CALLED_PARTY_NUMBER:
        fields["called_number"] = _number_ie(c, False, "called party number")
    elif ident == IE.USER_USER:
        if not c or c[0] != UUIE_PROTOCOL_DISCRIMINATOR:
            raise RemoteProtocolError("user-user IE is not X.208 coded", Cause.INVALID_IE_CONTENTS)
        fields["user_user"] = c[1:]
    else:
        other.append((ident, c))


def encode(msg: Message) -> bytes:
    """:class:`Message` to wire bytes; IEs in ascending identifier order (Q.931 4.5.1)."""
    cr = msg.call_reference & 0x7FFF
    head = bytes(
        [
            PROTOCOL_DISCRIMINATOR,
            2,
            (cr >> 8) | (0x80 if msg.from_destination else 0),
            cr & 0xFF,
            int(msg.message_type),
        ]
    )
    ies: list[tuple[int, bytes]] = list(msg.other_ies)
    if msg.bearer_capability is not None:
        ies.append((IE.BEARER_CAPABILITY, msg.bearer_capability))
    if msg.cause is not None:
        # coding standard ITU-T, location "private network serving the local user" (1)
        ies.append((IE.CAUSE, bytes([0x81, 0x80 | (msg.cause & 0x7F)])))
    if msg.call_state is not None:
        ies.append((IE.CALL_STATE, bytes([msg.call_state & 0x3F])))
    if msg.progress is not None:
        ies.append((IE.PROGRESS_INDICATOR, bytes([0x81, 0x80 | (msg.progress & 0x7F)])))
    if msg.notification is not None:
        ies.append((IE.NOTIFICATION_INDICATOR, bytes([0x80 | (msg.notification & 0x7F)])))
    if msg.display is not None:
        ies.append((IE.DISPLAY, msg.display.encode("latin-1", "replace")[:80]))
    if msg.keypad is not None:
        ies.append((IE.KEYPAD, msg.keypad.encode("ascii")))
    if msg.signal is not None:
        ies.append((IE.SIGNAL, bytes([msg.signal & 0xFF])))
    if msg.calling_number is not None:
        ies.append((IE.CALLING_PARTY_NUMBER, b"\x00\x80" + msg.calling_number.encode("ascii")))
    if msg.called_number is not None:
        ies.append((IE.CALLED_PARTY_NUMBER, b"\x80" + msg.called_number.encode("ascii")))
    out = bytearray(head)
    for ident, content in sorted(ies, key=lambda ie: ie[0]):
        out += bytes([ident, len(content)]) + content
    if msg.user_user is not None:
        body = bytes([UUIE_PROTOCOL_DISCRIMINATOR]) + msg.user_user
        out += bytes([IE.USER_USER]) + len(body).to_bytes(2, "big") + body
    return bytes(out)
