"""Voice prompts: their texts and loading of the committed WAVs.

The WAVs in gateway/prompts/ are rendered from these texts by
scripts/gen_prompts.py (espeak-ng + sox) at 8 and 16 kHz; a test checks
every text has both files so the menu is never silent.
"""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

import numpy as np

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"

PROMPT_TEXTS: dict[str, str] = {
    "welcome": "Welcome. Please enter your meeting I D, followed by the pound key.",
    "not_found": "That meeting I D was not found. Please try again.",
    "too_many_attempts": "Too many attempts. Goodbye.",
    "menu_timeout": "We did not receive a meeting I D. Goodbye.",
    "joining": "Joining the meeting.",
    "waiting": "Please wait. The meeting will start when a host joins.",
    "no_host": "No host has joined the meeting. Goodbye.",
    "locked": "This meeting is locked. Goodbye.",
    "moderator": "You are now a moderator.",
    "wrong_passcode": "That passcode is not correct.",
    "muted": "You are muted.",
    "unmuted": "You are unmuted.",
    "all_muted": "All other participants are muted.",
    "recording_started": "Recording has started.",
    "recording_stopped": "Recording has stopped.",
    "meeting_locked": "The meeting is now locked.",
    "meeting_unlocked": "The meeting is now unlocked.",
    "meeting_ended": "The host has ended the meeting. Goodbye.",
    "moderator_only": "Only a moderator can do that.",
    "try_again": "Please key that again.",
    "help": ("Press star seven to mute or unmute yourself. Moderators: star nine seven mutes "
             "everyone else, star two starts or stops recording, star four locks or unlocks "
             "the meeting, and pound pound ends the meeting. Enter the moderator passcode "
             "followed by pound to become a moderator."),
}


@cache
def load(name: str, rate: int = 8000) -> np.ndarray:
    """The prompt as int16 PCM at ``rate`` (8000 or 16000)."""
    if name not in PROMPT_TEXTS:
        raise KeyError(f"no prompt {name!r}")
    path = PROMPT_DIR / f"{name}.{rate // 1000}k.wav"
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != rate or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path} is not mono 16-bit at {rate} Hz")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()
    data.setflags(write=False)
    return data
