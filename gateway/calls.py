"""The seam between signalling (SIP, H.323) and the application (meetings).

Signalling adapters parse the wire, negotiate media through the media plane and
report a call's life to a :class:`CallApplication`; the application decides
where the call goes (voice menu, meeting, lobby) and drives it through the
:class:`CallControl` the adapter hands over. Neither side imports the other's
modules: both import this one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the media plane is an implementation detail of each adapter
    from gateway.rtp.plane import RtpLeg


class Protocol_(enum.Enum):
    SIP = "sip"
    H323 = "h323"


class Transport(enum.Enum):
    TLS = "tls"
    TCP = "tcp"
    UDP = "udp"


class DigitSource(enum.Enum):
    RFC4733 = "rfc4733"
    SIP_INFO = "sip-info"
    H245_UII = "h245-uii"
    Q931_KEYPAD = "q931-keypad"


class Admission(enum.Enum):
    ACCEPT = "accept"
    DRAINING = "draining"  # SIP 503 + Retry-After / Q.850 cause 42
    THROTTLED = "throttled"  # SIP 503 + Retry-After / Q.850 cause 42, counted in Throttles
    NO_MEDIA_PORTS = "no-media-ports"  # SIP 503 / Q.850 cause 47


_ID_RE = re.compile(r"^(?P<id>\d{10}|\d{13})(?:\.(?P<passcode>\d{4,8}))?$")
MENU_USERS = frozenset({"", "meeting", "u"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DialTarget:
    """What the caller dialed, reduced to our dial-string grammar (SPEC.md "Dial-in").

    - ``meeting`` / ``u`` / empty user: the voice menu (menu=True, meeting_id None).
    - ``<10 or 13 digits>``: that meeting.
    - ``<ID>.<passcode>``: that meeting, joining as moderator if the passcode matches
      (our extension: a room system's speed dial can carry the passcode).
    - anything else: the voice menu with a "not found" cue (unknown=True), because a
      room user cannot see SIP errors.
    """

    meeting_id: str | None = None
    passcode: str | None = None
    menu: bool = False
    unknown: bool = False

    @classmethod
    def parse(cls, user: str) -> DialTarget:
        user = user.strip()
        if user.lower() in MENU_USERS:
            return cls(menu=True)
        m = _ID_RE.match(user)
        if m is None:
            return cls(menu=True, unknown=True)
        return cls(meeting_id=m["id"], passcode=m["passcode"])


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    call_id: str  # our id for the leg (SIP Call-ID or H.225 callIdentifier as hex)
    protocol: Protocol_
    transport: Transport
    source: tuple[str, int]  # where the signalling came from
    from_uri: str  # SIP From URI or H.323 source alias
    to_uri: str  # SIP Request-URI or H.323 destination alias
    target: DialTarget
    user_agent: str = ""


class CallControl(Protocol):
    """What an adapter offers the application for one connected call."""

    @property
    def legs(self) -> list[RtpLeg]: ...

    def hangup(self, reason: str) -> None:
        """End the call from our side (SIP BYE / H.225 ReleaseComplete)."""

    def request_keyframe(self) -> None:
        """Ask the device for a video keyframe by every means it supports."""


class CallApplication(Protocol):
    """Implemented by the meetings layer; called by the signalling adapters."""

    def admit(self, call: IncomingCall) -> Admission:
        """Decide before answering. Must be quick and must not block."""

    def call_connected(self, call: IncomingCall, control: CallControl) -> None:
        """Answered and acknowledged; media legs are configured."""

    def digit(self, call_id: str, digit: str, source: DigitSource, *, suspect: bool = False) -> None:
        """One keypad digit (0-9, *, #, A-D) from any signalling or media path.

        ``suspect``: the media path saw enough packet loss since the previous digit that a
        whole keypress may be missing (RFC 4733 only; see docs/keypad.md).
        """

    def call_ended(self, call_id: str, reason: str) -> None:
        """The call is gone (either side, timeout, error); reason is for logs and CDRs."""
