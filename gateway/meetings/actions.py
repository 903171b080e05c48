"""What meeting control asks the adapter to do. Frozen values; the adapter acts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Play a voice prompt to one call (barged in on by the next prompt or keypress)."""

    call_id: str
    prompt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterMeeting:
    """Put the call into the meeting's conference: in the lobby (no meeting media) or fully."""

    call_id: str
    meeting_id: str
    lobby: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMuted:
    call_id: str
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRecording:
    meeting_id: str
    on: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    call_id: str
    reason: str
    after_prompt: bool = True  # let the goodbye prompt finish first
    throttle: bool = False  # counts in Throttles (brute-force lockout)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingEvent:
    """A webhook event (SPEC.md envelope); kind is the detail-type."""

    kind: str
    meeting_id: str
    call_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPasscode:
    """Check a keyed passcode off the event loop (scrypt takes tens of ms), then report
    the answer with ``MeetingControl.passcode_checked``. The passcode never prints."""

    call_id: str
    meeting_id: str
    passcode: str = field(repr=False)


Action = Play | EnterMeeting | SetMuted | SetRecording | Hangup | MeetingEvent | VerifyPasscode
