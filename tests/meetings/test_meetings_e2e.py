"""Meetings end to end: real pjsua2 callers through the real daemon (SPEC.md moderated meetings).

Each caller plays its own tone and records what it hears; Goertzel levels prove who hears
whom. Times inside a recording are measured from that caller's CONFIRMED event as the test
saw it, so windows line up across processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, start_daemon
from tests.peers import Agent, levels, sip_uri, tone_wav

OPEN, MOD, PASS = "4718203956", "5829103746182", "2468"
HEARD, SILENT = 1500.0, 300.0  # tone amplitude (of 8000 sent) that counts as heard / absent


def vtcgw(data_dir: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", *args, "--data-dir", str(data_dir)],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    data = tmp_path_factory.mktemp("meet") / "var"
    vtcgw(data, "create", "--id", OPEN)
    vtcgw(data, "create", "--id", MOD, "--moderated", "--moderator-passcode", PASS)
    d = start_daemon(data)
    yield d
    d.stop()


def caller(gw: Daemon, tmp: Path, name: str, user: str, hz: float, **spec) -> Agent:
    base = {"uri": sip_uri(user, gw.ports["sip_tls"]), "transport": "tls", "from_user": name,
            "play_wav": str(tone_wav(tmp / f"{name}.tone.wav", hz)), "record_wav": str(tmp / f"{name}.rx.wav"),
            "max_duration": 40}
    return Agent({**base, **spec}, name=name)


def profile(path: Path, hz: float) -> list[int]:
    """Per-second level of one tone, for failure messages."""
    from tests.peers import read_wav, tone_level

    x, rate = read_wav(path)
    return [round(tone_level(x[i * rate:(i + 1) * rate], rate, hz)) for i in range(len(x) // rate)]


class Clock:
    """When (test time) each agent confirmed, so recording offsets can be computed."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.confirmed: dict[str, float] = {}

    def confirm(self, agent: Agent) -> None:
        agent.wait_for("state", state="CONFIRMED")
        self.confirmed[agent.name] = time.monotonic()

    def offset(self, agent: Agent, at: float) -> float:
        return at - self.confirmed[agent.name]


@pytest.mark.parametrize("method", ["rfc4733", "info"])
def test_lobby_hears_nothing_until_moderator_keys_passcode(gw: Daemon, tmp_path: Path, method: str) -> None:
    clock = Clock()
    p = caller(gw, tmp_path, "p", MOD, 440, hangup_after=16)
    clock.confirm(p)
    m = caller(gw, tmp_path, "m", MOD, 700, hangup_after=12,
               dtmf=[{"at": 4.0, "digits": PASS + "#", "method": method}])
    clock.confirm(m)
    sent = m.wait_for("dtmf_sent")
    keyed_at = time.monotonic()
    assert p.stop() == 0 and m.stop() == 0
    before = levels(tmp_path / "p.rx.wav", [700], start=clock.offset(p, clock.confirmed["m"]) + 0.5,
                    end=clock.offset(p, keyed_at) - 0.2)
    after = levels(tmp_path / "p.rx.wav", [700], start=clock.offset(p, keyed_at) + 1.5,
                   end=clock.offset(p, keyed_at) + 5.0)
    assert before[700] < SILENT, (before, sent)
    assert after[700] > HEARD, after
    m_after = levels(tmp_path / "m.rx.wav", [440], start=clock.offset(m, keyed_at) + 1.5,
                     end=clock.offset(m, keyed_at) + 5.0)
    assert m_after[440] > HEARD, (m_after, clock.offset(m, keyed_at), profile(tmp_path / "m.rx.wav", 440))


@pytest.mark.parametrize("user", ["meeting", "u"])
def test_voice_menu_caller_keys_id_and_joins(gw: Daemon, tmp_path: Path, user: str) -> None:
    clock = Clock()
    a = caller(gw, tmp_path, "a", OPEN, 440, hangup_after=12)
    clock.confirm(a)
    b = caller(gw, tmp_path, "b", user, 700, hangup_after=9,
               dtmf=[{"at": 2.0, "digits": OPEN + "#", "method": "rfc4733"}])
    clock.confirm(b)
    b.wait_for("dtmf_sent")
    keyed_at = time.monotonic()
    assert b.stop() == 0 and a.stop() == 0
    heard = levels(tmp_path / "b.rx.wav", [440], start=clock.offset(b, keyed_at) + 2.0,
                   end=clock.offset(b, keyed_at) + 5.5)
    assert heard[440] > HEARD, heard
    welcome = levels(tmp_path / "b.rx.wav", [440], start=0.0, end=1.5)
    assert welcome[440] < SILENT  # the menu is its own room: the meeting is not heard before the ID


def test_three_wrong_ids_end_the_call(gw: Daemon, tmp_path: Path) -> None:
    a = caller(gw, tmp_path, "a", "meeting", 440, dtmf=[
        {"at": 1.0, "digits": "9182736450#", "method": "rfc4733"},
        {"at": 5.0, "digits": "9182736451#", "method": "info"},
        {"at": 9.0, "digits": "9182736452#", "method": "rfc4733"}])
    ended = a.wait_for("ended", timeout=30)
    assert ended["by"] == "remote"
    a.stop()
    x = levels(tmp_path / "a.rx.wav", [440])  # it heard prompts, so the recording is not silent
    assert x is not None


def test_moderator_keypad_commands(gw: Daemon, tmp_path: Path) -> None:
    clock = Clock()
    a = caller(gw, tmp_path, "a", MOD, 440)
    b = caller(gw, tmp_path, "b", MOD, 700)
    clock.confirm(a)
    clock.confirm(b)
    m = caller(gw, tmp_path, "m", f"{MOD}.{PASS}", 1200, dtmf=[
        {"at": 2.0, "digits": "*2", "method": "rfc4733"},   # recording on
        {"at": 6.0, "digits": "*2", "method": "info"},      # recording off
        {"at": 7.0, "digits": "*97", "method": "rfc4733"},  # mute everyone else
        {"at": 11.0, "digits": "*4", "method": "info"},     # lock
        {"at": 17.0, "digits": "##", "method": "rfc4733"},  # end for everyone
    ])
    clock.confirm(m)
    m.wait_for("dtmf_sent", digits="*97")
    muted_at = time.monotonic()
    m.wait_for("dtmf_sent", digits="*4")
    time.sleep(1.0)  # let the lock take effect before the newcomer dials
    c = caller(gw, tmp_path, "c", MOD, 900)
    c_end = c.wait_for("ended", timeout=20)
    assert c_end["by"] == "remote"  # locked: "this meeting is locked", released
    for agent in (a, b, m):
        assert agent.wait_for("ended", timeout=30)["by"] == "remote"  # ## ended every leg
    for agent in (a, b, m, c):
        agent.stop()
    before = levels(tmp_path / "m.rx.wav", [440, 700], start=3.5, end=clock.offset(m, muted_at) - 0.3)
    after = levels(tmp_path / "m.rx.wav", [440, 700], start=clock.offset(m, muted_at) + 1.5,
                   end=clock.offset(m, muted_at) + 3.5)
    assert min(before.values()) > HEARD, before
    assert max(after.values()) < SILENT, after
    recs = list((gw.data_dir / "recordings" / MOD).glob("*.wav"))
    assert len(recs) == 1  # audio-only callers: the recording is WAV (MKV only when there is video)
    assert not list(recs[0].parent.glob("*.mkv"))
    rec = levels(recs[0], [440, 700])
    assert min(rec.values()) > HEARD / 2, rec  # both callers' tones are in the recording


def test_cdrs_written_with_masked_pin(gw: Daemon) -> None:
    docs = [json.loads(p.read_text()) for p in (gw.data_dir / "cdr").rglob("*") if p.is_file()]
    assert docs, "no CDRs"
    for d in docs:
        assert PASS not in json.dumps(d)
        if d["ConferenceId"]:
            assert d["ConferencePin"].endswith(d["ConferenceId"][-4:]) and "*" in d["ConferencePin"]
    assert any(d["ConferenceStartTimeEpochSeconds"] for d in docs)
    assert PASS not in gw.log()


def test_three_callers_hear_the_others_and_star7_mutes(gw: Daemon, tmp_path: Path) -> None:
    """The media issue's evidence through the whole daemon: mix-minus, then *7 by DTMF."""
    clock = Clock()
    tones = {"a": 400.0, "b": 700.0, "c": 1100.0}
    agents = {n: caller(gw, tmp_path, n, OPEN, hz, hangup_after=14,
                        dtmf=[{"at": 8.0, "digits": "*7", "method": "rfc4733"}] if n == "c" else [])
              for n, hz in tones.items()}
    for a in agents.values():
        clock.confirm(a)
    agents["c"].wait_for("dtmf_sent")
    muted_at = time.monotonic()
    for a in agents.values():
        assert a.stop() == 0
    all_in = max(clock.confirmed.values())
    for name, agent in agents.items():
        path = tmp_path / f"{name}.rx.wav"
        start = clock.offset(agent, all_in) + 2.0
        before = levels(path, list(tones.values()), start=start, end=clock.offset(agent, muted_at) - 0.3)
        for other, hz in tones.items():
            if other == name:
                assert before[hz] < SILENT, (name, before)  # never hears itself
            else:
                assert before[hz] > HEARD, (name, other, before)
        if name != "c":
            after = levels(path, [tones["c"]], start=clock.offset(agent, muted_at) + 1.5,
                           end=clock.offset(agent, muted_at) + 4.0)
            assert after[tones["c"]] < SILENT, (name, after)
