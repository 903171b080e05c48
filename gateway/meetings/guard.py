"""Brute-force budget per source address (sans-I/O, time passed in).

Each wrong meeting ID or passcode from an address is one attempt; an address that
has made ``budget`` attempts in the last ``window_s`` seconds is refused until
old attempts age out. Lock-outs are counted by the caller (Throttles) and logged
without the digits.
"""

from __future__ import annotations

from collections import deque


class AttemptGuard:
    def __init__(self, *, budget: int = 20, window_s: float = 3600.0, max_sources: int = 100_000) -> None:
        self.budget = budget
        self.window_s = window_s
        self.max_sources = max_sources
        self._attempts: dict[str, deque[float]] = {}

    def _recent(self, ip: str, now: float) -> deque[float]:
        q = self._attempts.get(ip)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._attempts[ip]
        return q

    def allowed(self, ip: str, now: float) -> bool:
        return len(self._recent(ip, now)) < self.budget

    def record(self, ip: str, now: float) -> None:
        q = self._recent(ip, now)
        if ip not in self._attempts:
            if len(self._attempts) >= self.max_sources:  # bounded memory under a spray
                self._attempts.pop(next(iter(self._attempts)))
            self._attempts[ip] = q
        q.append(now)
