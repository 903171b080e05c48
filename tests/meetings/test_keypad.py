"""The keypad grammar: every SPEC.md command, and no lost/duplicated digit makes another."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls import DigitSource
from gateway.meetings.keypad import Command, Keypad

COMMANDS = {"*7": Command.MUTE_SELF, "*97": Command.MUTE_ALL, "*2": Command.RECORD,
            "*4": Command.LOCK, "*0": Command.HELP, "##": Command.END}


def run(keys: str, *, gap: float = 0.3, suspect_at: set[int] = frozenset(), kp: Keypad | None = None):
    kp = kp or Keypad()
    out = []
    for i, k in enumerate(keys):
        out += kp.feed(k, i * gap, suspect=i in suspect_at)
    return out


@pytest.mark.parametrize(("keys", "cmd"), COMMANDS.items())
def test_each_command(keys: str, cmd: Command) -> None:
    assert [e.command for e in run(keys)] == [cmd]


def test_numbers() -> None:
    assert [(e.command, e.number) for e in run("4821#")] == [(Command.NUMBER, "4821")]
    assert run("5819203746182#")[0].number == "5819203746182"
    assert [e.command for e in run("123#")] == [Command.REJECTED]
    assert [e.command for e in run("123456789#")] == [Command.REJECTED]


def test_star_restarts_a_command() -> None:
    assert [e.command for e in run("12*7")] == [Command.MUTE_SELF]
    assert [e.command for e in run("*9*4")] == [Command.LOCK]


def test_inter_digit_timeout_drops_partial() -> None:
    kp = Keypad(inter_digit_s=5)
    assert kp.feed("*", 0.0) == []
    assert kp.feed("9", 1.0) == []
    assert kp.get_timer() == 6.0
    kp.handle_timer(6.0)
    assert kp.feed("7", 6.5) == []  # a lone 7 starts a number, not *97 nor *7


def test_suspect_digit_rejects_instead_of_guessing() -> None:
    # *97 whose 9 was lost arrives as *,7 with the 7 marked suspect
    assert [e.command for e in run("*7", suspect_at={1})] == [Command.REJECTED]
    # loss before the first digit of a command does not matter
    assert [e.command for e in run("*7", suspect_at={0})] == [Command.MUTE_SELF]


def test_same_digit_by_two_paths_counts_once() -> None:
    kp = Keypad()
    assert kp.feed("*", 0.0, source=DigitSource.RFC4733) == []
    assert kp.feed("*", 0.05, source=DigitSource.SIP_INFO) == []
    out = kp.feed("7", 0.3, source=DigitSource.RFC4733) + kp.feed("7", 0.32, source=DigitSource.SIP_INFO)
    assert [e.command for e in out] == [Command.MUTE_SELF]


def _variants(keys: str):
    """Every single-digit deletion and duplication of a key sequence."""
    for i in range(len(keys)):
        yield keys[:i] + keys[i + 1:], i  # deletion at i (the digit after it, at i, is suspect)
        yield keys[:i + 1] + keys[i] + keys[i + 1:], None  # duplication


@pytest.mark.parametrize(("keys", "cmd"), COMMANDS.items())
def test_one_lost_or_doubled_digit_never_runs_another_command(keys: str, cmd: Command) -> None:
    for variant, lost_at in _variants(keys):
        suspect = {lost_at} if lost_at is not None and lost_at < len(variant) else set()
        kp = Keypad()
        out = run(variant, suspect_at=suspect, kp=kp)
        kp.handle_timer(1e9)
        ran = {e.command for e in out} - {Command.REJECTED}
        assert ran <= {cmd}, (keys, variant, ran)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("0123456789*#")), max_size=20))
def test_any_sequence_is_safe(keys: list[str]) -> None:
    kp = Keypad()
    for i, k in enumerate(keys):
        for ev in kp.feed(k, i * 0.2):
            assert ev.command in Command
            if ev.command is Command.NUMBER:
                assert ev.number and ev.number.isdigit()
