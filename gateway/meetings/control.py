"""Meeting control (sans-I/O): voice menu, lobby, moderators, keypad commands.

Inputs are calls connecting and ending, keypad digits, API requests, passcode
verdicts and the clock (``now`` in seconds); outputs are :mod:`actions
<gateway.meetings.actions>` the asyncio adapter carries out (play a prompt, put a
call in a conference, hang up, mute, record, post an event, verify a passcode).
Nothing here does I/O or reads a clock; directory look-ups come in as a callable,
and a passcode is verified by the adapter off the event loop (``VerifyPasscode``,
answered through :meth:`MeetingControl.passcode_checked`), because scrypt costs
tens of milliseconds that the media ticks cannot spare.

Participant states::

    MENU    --ID found, may start--> MEETING
    MENU    --ID found, no moderator yet--> LOBBY --moderator arrives--> MEETING
    any     --passcode# / host ID--> moderator (LOBBY -> MEETING, starts the meeting)
    MENU    --3 wrong IDs, 60 s--> gone;   LOBBY --10 min--> gone
    locked meeting, identity not on the roster --> "locked", gone
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.calls import DialTarget, DigitSource
from gateway.meetings.actions import (
    Action,
    EnterMeeting,
    Hangup,
    MeetingEvent,
    Play,
    SetMuted,
    SetRecording,
    VerifyPasscode,
)
from gateway.meetings.keypad import Command, Keypad
from gateway.meetings.store import Lookup, Role


class PState(enum.Enum):
    MENU = "menu"
    LOBBY = "lobby"
    MEETING = "meeting"
    GONE = "gone"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    menu_tries: int = 3
    menu_timeout_s: float = 60.0
    lobby_cue_s: float = 60.0
    lobby_timeout_s: float = 600.0
    passcode_tries: int = 3
    inter_digit_s: float = 5.0


@dataclass(slots=True, kw_only=True)
class Participant:
    call_id: str
    identity: str  # who, for "already on the roster" (the From URI / source alias)
    source_ip: str
    state: PState = PState.MENU
    meeting_id: str | None = None
    moderator: bool = False
    muted: bool = False
    menu_tries: int = 0
    passcode_tries: int = 0
    since: float = 0.0  # when the current state began
    next_cue: float | None = None
    keypad: Keypad = field(default_factory=Keypad)


@dataclass(slots=True, kw_only=True)
class Room:
    meeting_id: str
    moderated: bool
    started: bool = False
    locked: bool = False
    recording: bool = False
    roster: set[str] = field(default_factory=set)  # identities that have been in the meeting
    members: set[str] = field(default_factory=set)  # call_ids, any state but MENU


class MeetingControl:
    def __init__(self, *, lookup: Callable[[str], Lookup | None],
                 source_allowed: Callable[[str, float], bool] = lambda ip, now: True,
                 on_bad_attempt: Callable[[str, float], None] = lambda ip, now: None,
                 limits: Limits = Limits()) -> None:
        self._lookup = lookup
        self._source_allowed = source_allowed
        self._on_bad_attempt = on_bad_attempt
        self.limits = limits
        self.participants: dict[str, Participant] = {}
        self.rooms: dict[str, Room] = {}

    # ---- calls ------------------------------------------------------------------------
    def call_connected(self, call_id: str, target: DialTarget, *, identity: str, source_ip: str,
                       now: float) -> list[Action]:
        p = Participant(call_id=call_id, identity=identity, source_ip=source_ip, since=now,
                        keypad=Keypad(inter_digit_s=self.limits.inter_digit_s))
        self.participants[call_id] = p
        if target.meeting_id is None:
            prompts = ["not_found", "welcome"] if target.unknown else ["welcome"]
            return [Play(call_id=call_id, prompt=n) for n in prompts]
        acts = self._dial_number(p, target.meeting_id, now, from_menu=False)
        if target.passcode is not None and p.state is not PState.GONE and p.meeting_id:
            acts += self._passcode(p, target.passcode, now)
        return acts

    def call_ended(self, call_id: str, now: float) -> list[Action]:
        p = self.participants.pop(call_id, None)
        if p is None or p.meeting_id is None:
            return []
        return self._leave(p, now, reason="hangup")

    def get_timer(self) -> float | None:
        times = [t for p in self.participants.values() for t in (self._deadline(p), p.keypad.get_timer())
                 if t is not None]
        return min(times, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        acts: list[Action] = []
        for p in list(self.participants.values()):
            p.keypad.handle_timer(now)
            if p.state is PState.MENU and now >= p.since + self.limits.menu_timeout_s:
                acts += self._goodbye(p, "menu_timeout", "no meeting ID entered", now)
            elif p.state is PState.LOBBY:
                if now >= p.since + self.limits.lobby_timeout_s:
                    acts += self._goodbye(p, "no_host", "no moderator joined", now)
                elif p.next_cue is not None and now >= p.next_cue:
                    p.next_cue = now + self.limits.lobby_cue_s
                    acts.append(Play(call_id=p.call_id, prompt="waiting"))
        return acts

    def _deadline(self, p: Participant) -> float | None:
        if p.state is PState.MENU:
            return p.since + self.limits.menu_timeout_s
        if p.state is PState.LOBBY:
            return min(p.since + self.limits.lobby_timeout_s, p.next_cue or float("inf"))
        return None

    # ---- digits -----------------------------------------------------------------------
    def digit(self, call_id: str, digit: str, now: float, *, source: DigitSource = DigitSource.RFC4733,
              suspect: bool = False) -> list[Action]:
        p = self.participants.get(call_id)
        if p is None or p.state is PState.GONE:
            return []
        acts: list[Action] = []
        for ev in p.keypad.feed(digit, now, source=source, suspect=suspect):
            acts += self._command(p, ev.command, ev.number, now)
        return acts

    def _command(self, p: Participant, cmd: Command, number: str | None, now: float) -> list[Action]:
        cid = p.call_id
        if cmd is Command.REJECTED:
            return [Play(call_id=cid, prompt="try_again")]
        if p.state is PState.MENU:
            if cmd is Command.NUMBER and number is not None and len(number) in (10, 13):
                return self._dial_number(p, number, now, from_menu=True)
            if cmd is Command.NUMBER:
                return self._menu_miss(p, now)
            return [Play(call_id=cid, prompt="welcome")]
        if cmd is Command.NUMBER and number is not None:
            if len(number) == 13 and (lk := self._lookup(number)) is not None and lk.role == Role.HOST \
                    and lk.meeting.meeting_id == p.meeting_id:
                return self._make_moderator(p, now)
            return self._passcode(p, number, now)
        if cmd is Command.HELP:
            return [Play(call_id=cid, prompt="help")]
        if cmd is Command.MUTE_SELF:
            return self._set_muted(p, not p.muted, prompt=True)
        if not p.moderator:
            return [Play(call_id=cid, prompt="moderator_only")]
        room = self.rooms[p.meeting_id]  # type: ignore[index]
        return self._room_command(room, cmd, by=p, now=now)

    def _room_command(self, room: Room, cmd: Command, *, by: Participant | None, now: float) -> list[Action]:
        acts: list[Action] = []
        if cmd is Command.MUTE_ALL:
            for cid in self._in_meeting(room):
                q = self.participants[cid]
                if q is not by and not q.muted:
                    acts += self._set_muted(q, True, prompt=False)
            if by is not None:
                acts.append(Play(call_id=by.call_id, prompt="all_muted"))
        elif cmd is Command.LOCK:
            room.locked = not room.locked
            prompt = "meeting_locked" if room.locked else "meeting_unlocked"
            acts.append(MeetingEvent(kind="MeetingLocked" if room.locked else "MeetingUnlocked",
                                     meeting_id=room.meeting_id, call_id=by.call_id if by else None))
            if by is not None:
                acts.append(Play(call_id=by.call_id, prompt=prompt))
        elif cmd is Command.RECORD:
            room.recording = not room.recording
            acts.append(SetRecording(meeting_id=room.meeting_id, on=room.recording))
            acts.append(MeetingEvent(kind="RecordingStarted" if room.recording else "RecordingStopped",
                                     meeting_id=room.meeting_id, call_id=by.call_id if by else None))
        elif cmd is Command.END:
            for cid in list(room.members):
                member = self.participants.get(cid)
                if member is not None:
                    acts += self._goodbye(member, "meeting_ended", "meeting ended by moderator", now)
        return acts

    # ---- menu, lobby, meeting ---------------------------------------------------------
    def _menu_miss(self, p: Participant, now: float) -> list[Action]:
        p.menu_tries += 1
        self._on_bad_attempt(p.source_ip, now)
        if p.menu_tries >= self.limits.menu_tries or not self._source_allowed(p.source_ip, now):
            return self._goodbye(p, "too_many_attempts", "too many wrong meeting IDs", now, throttle=True)
        return [Play(call_id=p.call_id, prompt="not_found")]

    def _dial_number(self, p: Participant, number: str, now: float, *, from_menu: bool) -> list[Action]:
        if not self._source_allowed(p.source_ip, now):
            return self._goodbye(p, "too_many_attempts", "source over its attempt budget", now, throttle=True)
        lk = self._lookup(number)
        if lk is None:
            if not from_menu:
                p.state = PState.MENU
                return [Play(call_id=p.call_id, prompt="not_found"), Play(call_id=p.call_id, prompt="welcome")]
            return self._menu_miss(p, now)
        m = lk.meeting
        room = self.rooms.get(m.meeting_id)
        if room is None:
            room = self.rooms[m.meeting_id] = Room(meeting_id=m.meeting_id, moderated=m.moderated)
        if room.locked and p.identity not in room.roster:
            return self._goodbye(p, "locked", "meeting is locked", now)
        p.meeting_id = m.meeting_id
        room.members.add(p.call_id)
        acts: list[Action] = []
        if not room.started and not room.moderated:
            room.started = True
            acts.append(MeetingEvent(kind="MeetingStarted", meeting_id=room.meeting_id, call_id=p.call_id))
        if lk.role == Role.HOST:
            p.moderator = True
        if room.started or p.moderator:
            acts += self._enter(p, room, now)
        else:
            p.state, p.since, p.next_cue = PState.LOBBY, now, now + self.limits.lobby_cue_s
            acts += [EnterMeeting(call_id=p.call_id, meeting_id=room.meeting_id, lobby=True),
                     Play(call_id=p.call_id, prompt="waiting")]
        if p.moderator:
            acts += self._became_moderator(p, room, now)
        return acts

    def _enter(self, p: Participant, room: Room, now: float) -> list[Action]:
        p.state, p.since, p.next_cue = PState.MEETING, now, None
        room.roster.add(p.identity)
        return [EnterMeeting(call_id=p.call_id, meeting_id=room.meeting_id, lobby=False),
                Play(call_id=p.call_id, prompt="joining"),
                MeetingEvent(kind="ParticipantJoined", meeting_id=room.meeting_id, call_id=p.call_id)]

    def _passcode(self, p: Participant, passcode: str, now: float) -> list[Action]:
        if p.meeting_id is None:
            return []
        if p.moderator:
            return [Play(call_id=p.call_id, prompt="moderator")]
        if 4 <= len(passcode) <= 8:
            return [VerifyPasscode(call_id=p.call_id, meeting_id=p.meeting_id, passcode=passcode)]
        return self._wrong_passcode(p, now)

    def passcode_checked(self, call_id: str, ok: bool, now: float) -> list[Action]:
        """The adapter's answer to a :class:`VerifyPasscode`."""
        p = self.participants.get(call_id)
        if p is None or p.state is PState.GONE or p.meeting_id not in self.rooms:
            return []
        if p.moderator:
            return []
        return self._make_moderator(p, now) if ok else self._wrong_passcode(p, now)

    def _wrong_passcode(self, p: Participant, now: float) -> list[Action]:
        p.passcode_tries += 1
        self._on_bad_attempt(p.source_ip, now)
        if p.passcode_tries >= self.limits.passcode_tries or not self._source_allowed(p.source_ip, now):
            return self._goodbye(p, "too_many_attempts", "too many wrong passcodes", now, throttle=True)
        return [Play(call_id=p.call_id, prompt="wrong_passcode")]

    def _make_moderator(self, p: Participant, now: float) -> list[Action]:
        room = self.rooms[p.meeting_id]  # type: ignore[index]
        p.moderator = True
        acts: list[Action] = []
        if p.state is PState.LOBBY:
            acts += self._enter(p, room, now)
        acts += self._became_moderator(p, room, now)
        return acts

    def _became_moderator(self, p: Participant, room: Room, now: float) -> list[Action]:
        acts: list[Action] = [Play(call_id=p.call_id, prompt="moderator"),
                              MeetingEvent(kind="ParticipantBecameModerator", meeting_id=room.meeting_id,
                                           call_id=p.call_id)]
        if not room.started:
            room.started = True
            acts.append(MeetingEvent(kind="MeetingStarted", meeting_id=room.meeting_id, call_id=p.call_id))
            for cid in list(room.members):
                q = self.participants.get(cid)
                if q is not None and q.state is PState.LOBBY:
                    acts += self._enter(q, room, now)
        return acts

    def _set_muted(self, p: Participant, muted: bool, *, prompt: bool) -> list[Action]:
        p.muted = muted
        acts: list[Action] = [SetMuted(call_id=p.call_id, muted=muted)]
        if prompt:
            acts.append(Play(call_id=p.call_id, prompt="muted" if muted else "unmuted"))
        return acts

    def _goodbye(self, p: Participant, prompt: str, reason: str, now: float, *,
                 throttle: bool = False) -> list[Action]:
        acts: list[Action] = [Play(call_id=p.call_id, prompt=prompt),
                              Hangup(call_id=p.call_id, reason=reason, after_prompt=True, throttle=throttle)]
        if p.meeting_id is not None:
            acts += self._leave(p, now, reason=reason)
        p.state = PState.GONE
        return acts

    def _leave(self, p: Participant, now: float, *, reason: str) -> list[Action]:
        room = self.rooms.get(p.meeting_id or "")
        if room is None or p.call_id not in room.members:
            return []
        was_in = p.state is PState.MEETING
        room.members.discard(p.call_id)
        acts: list[Action] = []
        if was_in:
            acts.append(MeetingEvent(kind="ParticipantLeft", meeting_id=room.meeting_id, call_id=p.call_id))
        if not room.members:
            if room.started:
                acts.append(MeetingEvent(kind="MeetingEnded", meeting_id=room.meeting_id, call_id=None))
            if room.recording:
                acts.append(SetRecording(meeting_id=room.meeting_id, on=False))
            del self.rooms[room.meeting_id]
        return acts

    def _in_meeting(self, room: Room) -> list[str]:
        return [cid for cid in room.members if self.participants[cid].state is PState.MEETING]

    # ---- admin API --------------------------------------------------------------------
    def api_mute(self, call_id: str, muted: bool) -> list[Action]:
        p = self.participants.get(call_id)
        return [] if p is None else self._set_muted(p, muted, prompt=True)

    def api_room(self, meeting_id: str, cmd: Command, now: float) -> list[Action]:
        room = self.rooms.get(meeting_id)
        return [] if room is None else self._room_command(room, cmd, by=None, now=now)

    def api_lock(self, meeting_id: str, locked: bool, now: float) -> list[Action]:
        room = self.rooms.get(meeting_id)
        if room is None or room.locked == locked:
            return []
        return self._room_command(room, Command.LOCK, by=None, now=now)

    def api_kick(self, call_id: str, now: float) -> list[Action]:
        p = self.participants.get(call_id)
        if p is None:
            return []
        acts: list[Action] = [Hangup(call_id=call_id, reason="removed by administrator", after_prompt=False)]
        if p.meeting_id is not None:
            acts += self._leave(p, now, reason="kicked")
        p.state = PState.GONE
        return acts
