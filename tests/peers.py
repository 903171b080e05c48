"""Real SIP callers for end-to-end tests: pjsua2 agents (probes/pjsip_agent.py) as subprocesses,
tone files to play and a Goertzel measure to prove what each caller heard."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def tone_wav(path: Path, hz: float, *, seconds: float = 4.0, rate: int = 8000, amplitude: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * hz * t) * amplitude).astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        if w.getnchannels() > 1:
            x = x.reshape(-1, w.getnchannels()).mean(axis=1)
        return x, w.getframerate()


def tone_level(x: np.ndarray, rate: int, hz: float) -> float:
    """Amplitude of the ``hz`` component (Goertzel over the whole slice)."""
    if len(x) == 0:
        return 0.0
    n = len(x)
    k = round(n * hz / rate)
    return float(abs(np.dot(x, np.exp(-2j * np.pi * k * np.arange(n) / n))) * 2 / n)


def levels(path: Path, tones: list[float], *, start: float = 0.0, end: float | None = None) -> dict[float, float]:
    x, rate = read_wav(path)
    seg = x[int(start * rate): None if end is None else int(end * rate)]
    return {hz: tone_level(seg, rate, hz) for hz in tones}


class Agent:
    """One pjsua2 call in its own process; events read on a thread as they arrive."""

    def __init__(self, spec: dict[str, Any], *, name: str = "agent") -> None:
        self.spec = spec
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "probes.pjsip_agent", "--spec", json.dumps(spec)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()

    def wait_for(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.get("event") == event and all(ev.get(k) == v for k, v in match.items()):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{self.name}: no {event} {match} in {timeout}s; events={self.events}; "
                                         f"stderr={self.stderr_tail()}")
                self._cond.wait(min(left, 0.5))

    def ended(self) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == "ended"), None)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-2000:]

    def stop(self, timeout: float = 20.0) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def sip_uri(user: str, port: int, transport: str = "tls") -> str:
    return f"sip:{user}@127.0.0.1:{port};transport={transport}"
