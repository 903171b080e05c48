"""Meeting numbers and moderator passcodes: generation, validation, hashing.

- Meeting IDs are 10 digits (a host's personal ID) or 13 digits (scheduled), random
  from the OS CSPRNG, never starting with 0 (some room keypads and dial plans strip
  it) and never a trivial sequence a person could guess: one repeated digit, an
  ascending or descending run, or a short pattern repeated.
- Passcodes are 4-8 digits, stored as ``scrypt$N$r$p$salt$hash`` (base64) and
  checked with :func:`hmac.compare_digest`, so a stolen database gives no passcode
  without a search and timing says nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

ID_LENGTHS = (10, 13)
_PASSCODE_RE = re.compile(r"^\d{4,8}$")
# scrypt cost: ~8 ms here per hash; passcodes are short, so the salt (no rainbow
# tables) and the per-call/per-IP attempt limits carry most of the protection.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**13, 8, 1


class InvalidValue(ValueError):
    """A meeting field is malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def is_trivial(number: str) -> bool:
    digits = [int(c) for c in number]
    steps = {b - a for a, b in zip(digits, digits[1:], strict=False)}
    if len(set(digits)) == 1 or steps in ({1}, {-1}, {1, -9}, {-1, 9}):
        return True
    for period in range(2, 5):  # 1212121212, 1231231231, 1234123412
        if all(number[i] == number[i % period] for i in range(len(number))):
            return True
    return False


def validate_id(number: str, *, field: str = "meeting_id") -> str:
    if not isinstance(number, str) or not number.isdigit() or len(number) not in ID_LENGTHS:
        raise InvalidValue(field, "must be 10 or 13 digits")
    if number[0] == "0":
        raise InvalidValue(field, "must not start with 0")
    if is_trivial(number):
        raise InvalidValue(field, "is a trivial sequence; choose a less guessable number")
    return number


def generate_id(digits: int) -> str:
    if digits not in ID_LENGTHS:
        raise InvalidValue("digits", "must be 10 or 13")
    while True:
        number = str(secrets.randbelow(9) + 1) + "".join(
            str(secrets.randbelow(10)) for _ in range(digits - 1)
        )
        if not is_trivial(number):
            return number


def validate_passcode(passcode: str) -> str:
    if not isinstance(passcode, str) or not _PASSCODE_RE.match(passcode):
        raise InvalidValue("moderator_passcode", "must be 4 to 8 digits")
    return passcode


def hash_passcode(passcode: str) -> str:
    validate_passcode(passcode)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(passcode.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_passcode(candidate: str, stored: str | None) -> bool:
    """Constant-time check; False for a missing hash or a malformed candidate."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        # always do the work, even for a malformed candidate, so timing says nothing
        ok_shape = bool(_PASSCODE_RE.match(candidate or ""))
        got = hashlib.scrypt((candidate or "").encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                             dklen=len(digest))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, digest) and ok_shape


def is_passcode_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])
