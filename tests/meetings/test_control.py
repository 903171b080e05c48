"""Meeting control as a pure state machine: menu, lobby, moderators, commands, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.calls import DialTarget
from gateway.meetings.actions import (
    EnterMeeting,
    Hangup,
    MeetingEvent,
    Play,
    SetMuted,
    SetRecording,
    VerifyPasscode,
)
from gateway.meetings.control import Limits, MeetingControl, PState
from gateway.meetings.store import SQLiteMeetingStore

OPEN, MOD, HOSTID = "4718203956", "5829103746182", "6938201746183"


class Control(MeetingControl):
    """MeetingControl whose passcode checks the test answers at once, as the adapter does later."""

    def __init__(self, store: SQLiteMeetingStore, **kw) -> None:
        super().__init__(lookup=store.lookup, **kw)
        self.store = store

    def _resolve(self, acts: list, now: float) -> list:
        out = []
        for a in acts:
            if isinstance(a, VerifyPasscode):
                assert "2468" not in repr(a)  # the passcode never prints
                out += self._resolve(self.passcode_checked(
                    a.call_id, self.store.check_passcode(a.meeting_id, a.passcode), now), now)
            else:
                out.append(a)
        return out

    def digit(self, call_id, digit, now, **kw):
        return self._resolve(super().digit(call_id, digit, now, **kw), now)

    def call_connected(self, call_id, target, *, identity, source_ip, now):
        return self._resolve(super().call_connected(call_id, target, identity=identity,
                                                    source_ip=source_ip, now=now), now)


@pytest.fixture
def ctl(tmp_path: Path) -> MeetingControl:
    store = SQLiteMeetingStore(tmp_path / "db")
    store.create(meeting_id=OPEN, title="open")
    store.create(meeting_id=MOD, moderated=True, moderator_passcode="2468", host_ids=(HOSTID,))
    return Control(store)


def keys(ctl: MeetingControl, call: str, text: str, t0: float = 1.0):
    out = []
    for i, k in enumerate(text):
        out += ctl.digit(call, k, t0 + 0.2 * i)
    return out


def prompts(acts, call=None):
    return [a.prompt for a in acts if isinstance(a, Play) and (call is None or a.call_id == call)]


def kinds(acts):
    return [a.kind for a in acts if isinstance(a, MeetingEvent)]


def test_direct_dial_open_meeting(ctl: MeetingControl) -> None:
    acts = ctl.call_connected("a", DialTarget.parse(OPEN), identity="sip:a@x", source_ip="1.1.1.1", now=0)
    assert EnterMeeting(call_id="a", meeting_id=OPEN, lobby=False) in acts
    assert kinds(acts) == ["MeetingStarted", "ParticipantJoined"]


def test_menu_then_join_and_three_misses_hang_up(ctl: MeetingControl) -> None:
    acts = ctl.call_connected("a", DialTarget.parse("meeting"), identity="a", source_ip="1.1.1.1", now=0)
    assert prompts(acts) == ["welcome"]
    acts = keys(ctl, "a", OPEN + "#")
    assert any(isinstance(a, EnterMeeting) and not a.lobby for a in acts)

    ctl.call_connected("b", DialTarget.parse("u"), identity="b", source_ip="1.1.1.2", now=0)
    assert prompts(keys(ctl, "b", "9182736450#")) == ["not_found"]
    assert prompts(keys(ctl, "b", "9182736451#", 5)) == ["not_found"]
    acts = keys(ctl, "b", "9182736452#", 10)
    assert prompts(acts) == ["too_many_attempts"]
    assert any(isinstance(a, Hangup) and a.throttle for a in acts)


def test_unknown_dialed_id_goes_to_menu_with_cue(ctl: MeetingControl) -> None:
    acts = ctl.call_connected("a", DialTarget.parse("9182736450"), identity="a", source_ip="i", now=0)
    assert prompts(acts) == ["not_found", "welcome"]
    assert ctl.participants["a"].state is PState.MENU


def test_menu_timeout(ctl: MeetingControl) -> None:
    ctl.call_connected("a", DialTarget.parse("meeting"), identity="a", source_ip="i", now=0)
    assert ctl.get_timer() == 60.0
    acts = ctl.handle_timer(60.0)
    assert prompts(acts) == ["menu_timeout"] and any(isinstance(a, Hangup) for a in acts)


def test_moderated_lobby_until_passcode(ctl: MeetingControl) -> None:
    acts = ctl.call_connected("p", DialTarget.parse(MOD), identity="p", source_ip="i", now=0)
    assert EnterMeeting(call_id="p", meeting_id=MOD, lobby=True) in acts
    assert prompts(acts) == ["waiting"]
    assert prompts(ctl.handle_timer(60.0)) == ["waiting"]  # the cue every minute
    acts = ctl.call_connected("m", DialTarget.parse(MOD), identity="m", source_ip="i", now=61)
    acts += keys(ctl, "m", "2468#", 62)
    assert EnterMeeting(call_id="p", meeting_id=MOD, lobby=False) in acts  # lobby released
    assert EnterMeeting(call_id="m", meeting_id=MOD, lobby=False) in acts
    assert "MeetingStarted" in kinds(acts) and "ParticipantBecameModerator" in kinds(acts)


def test_dial_string_passcode_and_host_id(ctl: MeetingControl) -> None:
    acts = ctl.call_connected("m", DialTarget.parse(f"{MOD}.2468"), identity="m", source_ip="i", now=0)
    assert ctl.participants["m"].moderator and ctl.participants["m"].state is PState.MEETING
    acts = ctl.call_connected("h", DialTarget.parse(HOSTID), identity="h", source_ip="i", now=0)
    assert ctl.participants["h"].moderator
    assert "moderator" in prompts(acts)


def test_lobby_gives_up_after_ten_minutes(ctl: MeetingControl) -> None:
    ctl.call_connected("p", DialTarget.parse(MOD), identity="p", source_ip="i", now=0)
    acts = []
    t = 0.0
    while (nt := ctl.get_timer()) is not None and nt <= 600:
        t = nt
        acts += ctl.handle_timer(t)
    assert prompts(acts).count("waiting") == 9 and prompts(acts)[-1] == "no_host"
    assert t == 600


def test_wrong_passcodes_limit(ctl: MeetingControl) -> None:
    ctl.call_connected("p", DialTarget.parse(MOD), identity="p", source_ip="i", now=0)
    assert prompts(keys(ctl, "p", "1111#")) == ["wrong_passcode"]
    assert prompts(keys(ctl, "p", "2222#", 5)) == ["wrong_passcode"]
    acts = keys(ctl, "p", "3333#", 10)
    assert prompts(acts) == ["too_many_attempts"] and any(isinstance(a, Hangup) for a in acts)


def test_moderator_commands(ctl: MeetingControl) -> None:
    ctl.call_connected("m", DialTarget.parse(f"{MOD}.2468"), identity="m", source_ip="i", now=0)
    ctl.call_connected("a", DialTarget.parse(MOD), identity="a", source_ip="i", now=0)
    ctl.call_connected("b", DialTarget.parse(MOD), identity="b", source_ip="i", now=0)
    assert prompts(keys(ctl, "a", "*4"), "a") == ["moderator_only"]
    acts = keys(ctl, "m", "*97")
    assert {(a.call_id, a.muted) for a in acts if isinstance(a, SetMuted)} == {("a", True), ("b", True)}
    assert SetMuted(call_id="a", muted=False) in keys(ctl, "a", "*7", 3)
    assert SetRecording(meeting_id=MOD, on=True) in keys(ctl, "m", "*2", 4)
    acts = keys(ctl, "m", "*4", 5)
    assert "MeetingLocked" in kinds(acts)
    # a newcomer is refused; someone already on the roster may rejoin
    ctl.call_ended("b", 6)
    assert prompts(ctl.call_connected("b2", DialTarget.parse(MOD), identity="b", source_ip="i", now=7)) == \
        ["joining"]
    acts = ctl.call_connected("c", DialTarget.parse(MOD), identity="c", source_ip="i", now=7)
    assert prompts(acts) == ["locked"] and any(isinstance(a, Hangup) for a in acts)
    acts = keys(ctl, "m", "##", 8)
    assert {a.call_id for a in acts if isinstance(a, Hangup)} == {"m", "a", "b2"}
    assert "MeetingEnded" in kinds(acts)
    assert SetRecording(meeting_id=MOD, on=False) in acts


def test_source_budget_blocks_further_tries(tmp_path: Path) -> None:
    store = SQLiteMeetingStore(tmp_path / "db")
    bad: dict[str, int] = {}
    ctl = Control(store, source_allowed=lambda ip, now: bad.get(ip, 0) < 2,
                         on_bad_attempt=lambda ip, now: bad.__setitem__(ip, bad.get(ip, 0) + 1),
                         limits=Limits())
    ctl.call_connected("a", DialTarget.parse("meeting"), identity="a", source_ip="6.6.6.6", now=0)
    keys(ctl, "a", "9182736450#")
    acts = keys(ctl, "a", "9182736451#", 5)
    assert any(isinstance(a, Hangup) and a.throttle for a in acts)
    acts = ctl.call_connected("b", DialTarget.parse("9182736452"), identity="b", source_ip="6.6.6.6", now=9)
    assert any(isinstance(a, Hangup) and a.throttle for a in acts)
