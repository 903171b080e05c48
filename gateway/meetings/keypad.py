"""The keypad grammar: digits in, commands out (sans-I/O, time passed in).

Grammar (SPEC.md keypad map; docs/keypad.md gives the reasoning)::

    command  = "*7" | "*97" | "*2" | "*4" | "*0" | "##" | number "#"
    number   = 4*13 DIGIT       ; 4-8: moderator passcode, 10/13: meeting or host ID

States are a table keyed by (state, input class). Design rules:

1. ``*`` always starts a fresh command, whatever came before, and ``**`` is the same
   as ``*``: a duplicated star cannot change the command.
2. After ``*`` exactly one more digit completes a command, except ``9``, which must be
   followed by ``7``. Anything else is rejected with a cue, never guessed.
3. The only single-digit deletion that turns one command into another valid one is
   ``*97`` -> ``*7``. A lost digit on RFC 4733 shows as a run of lost RTP packets
   (a keyed digit is several event packets, the end packet sent three times), so the
   media leg marks the next digit ``suspect`` when such a run preceded it. A command
   with a suspect digit after its first is rejected ("please key that again").
4. Duplicated trailing digits (``*77``, ``*977``, ``###``) leave stray digits that
   start a number; a number without ``#`` is dropped at the inter-digit timeout,
   so strays never complete a command.
5. The same digit arriving by two paths (RFC 4733 and SIP INFO, which some devices
   both send) within ``dup_window_s`` is counted once.
6. A partial command is dropped after ``inter_digit_s`` (5 s) of silence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.calls import DigitSource


class Command(enum.Enum):
    MUTE_SELF = "*7"
    MUTE_ALL = "*97"
    RECORD = "*2"
    LOCK = "*4"
    HELP = "*0"
    END = "##"
    NUMBER = "number#"  # passcode or ID; see KeypadEvent.number
    REJECTED = "rejected"  # not a command; the caller plays "try again"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypadEvent:
    command: Command
    number: str | None = None
    reason: str = ""


class _S(enum.Enum):
    IDLE = "idle"
    STAR = "star"
    STAR9 = "star9"
    HASH = "hash"
    NUMBER = "number"


_STAR_COMMANDS = {"7": Command.MUTE_SELF, "2": Command.RECORD, "4": Command.LOCK, "0": Command.HELP}
VALID_DIGITS = frozenset("0123456789*#ABCD")
MAX_NUMBER = 13


class Keypad:
    def __init__(self, *, inter_digit_s: float = 5.0, dup_window_s: float = 0.4) -> None:
        self.inter_digit_s = inter_digit_s
        self.dup_window_s = dup_window_s
        self._state = _S.IDLE
        self._buf = ""
        self._suspect = False
        self._last_at: float | None = None
        self._last_by_source: dict[DigitSource, tuple[str, float]] = {}

    @property
    def pending(self) -> str:
        """What has been keyed towards the current command (for prompts; never logged)."""
        prefix = {"star": "*", "star9": "*9", "hash": "#"}.get(self._state.value, "")
        return prefix + self._buf

    def get_timer(self) -> float | None:
        if self._state is _S.IDLE or self._last_at is None:
            return None
        return self._last_at + self.inter_digit_s

    def handle_timer(self, now: float) -> list[KeypadEvent]:
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            self._reset()
        return []

    def _reset(self) -> None:
        self._state, self._buf, self._suspect = _S.IDLE, "", False

    def _is_duplicate(self, digit: str, source: DigitSource, now: float) -> bool:
        for other, (d, at) in self._last_by_source.items():
            if other is not source and d == digit and now - at <= self.dup_window_s:
                return True
        self._last_by_source[source] = (digit, now)
        return False

    def feed(self, digit: str, now: float, *, source: DigitSource = DigitSource.RFC4733,
             suspect: bool = False) -> list[KeypadEvent]:
        digit = digit.upper()
        if digit not in VALID_DIGITS or digit in "ABCD":
            return []
        if self._is_duplicate(digit, source, now):
            return []
        self.handle_timer(now)
        self._last_at = now
        first = self._state is _S.IDLE or digit == "*"
        if digit == "*":
            self._state, self._buf, self._suspect = _S.STAR, "", False
            return []
        if not first and suspect:
            self._suspect = True
        return self._step(digit)

    def _done(self, command: Command, number: str | None = None) -> list[KeypadEvent]:
        suspect = self._suspect
        self._reset()
        if suspect:
            return [KeypadEvent(command=Command.REJECTED, reason="digits may have been lost")]
        return [KeypadEvent(command=command, number=number)]

    def _reject(self, reason: str) -> list[KeypadEvent]:
        self._reset()
        return [KeypadEvent(command=Command.REJECTED, reason=reason)]

    def _step(self, d: str) -> list[KeypadEvent]:
        s = self._state
        if s is _S.STAR:
            if d == "9":
                self._state = _S.STAR9
                return []
            if d in _STAR_COMMANDS:
                return self._done(_STAR_COMMANDS[d])
            return self._reject(f"*{d} is not a command")
        if s is _S.STAR9:
            return self._done(Command.MUTE_ALL) if d == "7" else self._reject(f"*9{d} is not a command")
        if s is _S.HASH:
            if d == "#":
                return self._done(Command.END)
            self._state, self._buf = _S.NUMBER, d
            return []
        if d == "#":
            if s is _S.IDLE:
                self._state = _S.HASH
                return []
            number = self._buf
            if 4 <= len(number) <= 8 or len(number) in (10, 13):
                return self._done(Command.NUMBER, number)
            return self._reject("a number must be 4-8, 10 or 13 digits")
        # a digit in IDLE or NUMBER
        self._state = _S.NUMBER
        self._buf += d
        if len(self._buf) > MAX_NUMBER:
            return self._reject("number too long")
        return []
