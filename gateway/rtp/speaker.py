"""Voice-activated speaker selection (sans-I/O, time passed in).

Levels (mean-square per 20 ms tick) are smoothed with a ~300 ms time constant. A challenger
becomes the active speaker when its smoothed level exceeds the current speaker's by
``margin`` (x2 = 3 dB) and the floor, continuously for ``hold_s``, and the current speaker has
held the floor at least ``dwell_s``. ``eligible`` restricts who may become the speaker
(e.g. only participants with video for the video switch); the audio speaker is unrestricted.
"""

from __future__ import annotations

FLOOR = 150.0**2


class SpeakerDetector:
    def __init__(
        self, *, hold_s: float = 0.6, dwell_s: float = 1.5, margin: float = 2.0, alpha: float = 0.07
    ) -> None:
        self.hold_s, self.dwell_s, self.margin, self.alpha = hold_s, dwell_s, margin, alpha
        self.smoothed: dict[str, float] = {}
        self.current: str | None = None
        self.previous: str | None = None
        self._since = 0.0
        self._challenger: str | None = None
        self._challenge_from = 0.0

    def forget(self, pid: str) -> None:
        self.smoothed.pop(pid, None)
        if self.current == pid:
            self.current = None
        if self.previous == pid:
            self.previous = None
        if self._challenger == pid:
            self._challenger = None

    def update(self, levels: dict[str, float], now: float) -> bool:
        """Fold one tick's levels in; True when the speaker changed."""
        a = self.alpha
        for pid in list(self.smoothed):
            if pid not in levels:
                self.smoothed[pid] *= 1 - a
        for pid, lvl in levels.items():
            self.smoothed[pid] = self.smoothed.get(pid, 0.0) * (1 - a) + lvl * a
        if not self.smoothed:
            return False
        best = max(self.smoothed, key=self.smoothed.__getitem__)
        current = self.smoothed.get(self.current, 0.0) if self.current is not None else 0.0
        return self.decide(best, self.smoothed[best], current, now)

    def decide(self, best: str, best_level: float, current_level: float, now: float) -> bool:
        """The decision after smoothing: ``best`` is the loudest smoothed participant, the
        levels are its and the current speaker's smoothed levels. True when the speaker
        changed. (The mix engine smooths many meetings at once and calls this directly.)"""
        if best_level < FLOOR or best == self.current:
            self._challenger = None
            return False
        if self.current is None:
            return self._switch(best, now)
        if best_level < self.margin * current_level:
            self._challenger = None
            return False
        if best != self._challenger:
            self._challenger, self._challenge_from = best, now
            return False
        if now - self._challenge_from >= self.hold_s and now - self._since >= self.dwell_s:
            return self._switch(best, now)
        return False

    def _switch(self, pid: str, now: float) -> bool:
        self.previous, self.current, self._since = self.current, pid, now
        self._challenger = None
        return True
