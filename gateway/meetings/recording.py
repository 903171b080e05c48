"""Meeting recordings: the conference's mixed audio to a WAV file.

The conference hands its mix to :meth:`Recorder.write` every tick (its ``on_mix``
tap); writing is buffered by the wave module and the file is closed, and so
made complete, on stop. Files live under ``<recordings_dir>/<meeting_id>/``.
Video recording (the switched stream to MKV via PyAV) is not done yet.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np


class Recorder:
    def __init__(self, root: Path, meeting_id: str, *, sample_rate: int, now_wall: float | None = None) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_wall or time.time()))
        self.path = root / meeting_id / f"{stamp}.wav"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self.samples = 0

    def write(self, pcm: np.ndarray, sample_rate: int) -> None:
        if self._wav is None:
            return
        if sample_rate != self.sample_rate:
            idx = (np.arange(int(len(pcm) * self.sample_rate / sample_rate)) * sample_rate
                   // self.sample_rate)
            pcm = pcm[idx]
        self._wav.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
        self.samples += len(pcm)

    def close(self) -> Path:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        return self.path


def list_recordings(root: Path) -> list[dict[str, object]]:
    if not root.exists():
        return []
    return [{"meeting_id": p.parent.name, "name": p.name, "bytes": p.stat().st_size}
            for p in sorted(root.glob("*/*.wav"))]


def beep(sample_rate: int, *, hz: float = 1000.0, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
