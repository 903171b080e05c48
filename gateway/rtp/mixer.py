"""Conference audio mixer: one 20 ms tick in, one encoded frame per participant out (sans-I/O).

Per tick (``tick(now)``):
1. each participant's jitter buffer yields a packet (decoded), a loss (concealed) or nothing;
   PCM is brought to the mix rate (8 kHz when every participant is narrowband, else 16 kHz);
2. muted and lobby participants contribute nothing; of the rest, only the ``max_talkers``
   loudest frames above a floor are summed (int32);
3. each participant gets the sum minus its own contribution (mix-minus), plus its own
   prompts (``play``) and the meeting-wide sounds (``play_all``), clipped to int16 and encoded
   in its own codec; lobby participants get only their prompts;
4. the result carries the meeting mix (for recording) and each participant's level.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import firwin, resample_poly

from gateway.rtp.codecs import AudioCodec
from gateway.rtp.jitter import JitterBuffer, Pull
from gateway.rtp.types import Codec

TICK_S = 0.02
LEVEL_FLOOR = 30.0**2  # mean-square floor (~ -61 dBov) below which a frame is not a talker


@functools.lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The filter resample_poly would design on every call (same length, cutoff and
    Kaiser window); designing it once per rate pair saves most of a tick's cost."""
    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.setflags(write=False)
    return taps


CONVERTED_KEEP = 64
# read-only sound (prompt sequences the application caches) -> its copy at another rate;
# the entry holds the source array so its id() cannot be reused while cached
_converted: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def convert_rate(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """``pcm`` from ``src`` to ``dst`` Hz. A read-only input is converted once and the copy
    kept: every caller of a meeting gets the same welcome prompt, and resampling a few
    seconds of it per call showed up as the largest item of the mix engine's profile."""
    if src == dst:
        return pcm
    key = (id(pcm), src, dst)
    hit = _converted.get(key)
    if hit is not None and hit[0] is pcm:
        return hit[1]
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    out = resample_poly(pcm.astype(np.float32), up, down, window=_lowpass(up, down))
    out = np.clip(out, -32768, 32767).astype(np.int16)
    if not pcm.flags.writeable:
        out.setflags(write=False)
        if len(_converted) >= CONVERTED_KEEP:
            _converted.pop(next(iter(_converted)))
        _converted[key] = (pcm, out)
    return out


class PlayHandle:
    """A sound being played; ``stop()`` ends it early, ``done`` tells when it finished.

    The sound is kept at 16 kHz; a copy at another mix rate is made once, on first use,
    not every tick. The position counts 16 kHz samples whatever rate is read.
    """

    __slots__ = ("_at", "done", "id", "loop", "pcm", "pos")

    def __init__(self, pcm: np.ndarray, loop: bool) -> None:
        self.id = next(_handle_ids)
        self.pcm, self.loop, self.pos, self.done = pcm, loop, 0, False
        self._at: dict[int, np.ndarray] = {16000: pcm}

    def stop(self) -> None:
        self.done = True

    def take(self, n: int, rate: int = 16000) -> np.ndarray | None:
        """The next ``n`` samples at 16 kHz, returned at ``rate`` (8000 or 16000)."""
        if self.done or not len(self.pcm):
            self.done = True
            return None
        pcm = self._at.get(rate)
        if pcm is None:
            pcm = self._at[rate] = convert_rate(self.pcm, 16000, rate)
        k, start = n * rate // 16000, self.pos * rate // 16000
        if self.loop:
            chunk = pcm[(start + np.arange(k)) % len(pcm)]
            self.pos = (self.pos + n) % len(self.pcm)
            return chunk
        chunk = pcm[start : start + k]
        self.pos += n
        if self.pos >= len(self.pcm):
            self.done = True
        if len(chunk) < k:
            chunk = np.concatenate((chunk, np.zeros(k - len(chunk), dtype=np.int16)))
        return chunk


_handle_ids = itertools.count(1)


@dataclass(slots=True)
class _Member:
    pid: str
    codec: AudioCodec
    send_pt: int
    jb: JitterBuffer
    muted: bool = False
    lobby: bool = False
    ts_offset: int = 0
    started: bool = False
    prompts: list[PlayHandle] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutFrame:
    pid: str
    pt: int
    payload: bytes
    ts_offset: int
    marker: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MixResult:
    frames: tuple[OutFrame, ...]
    mix: np.ndarray  # the meeting's mix at ``rate`` (recording tap)
    rate: int
    levels: dict[str, float]  # mean-square level of each participant's contribution
    talkers: tuple[str, ...]


class AudioMixer:
    def __init__(self, *, max_talkers: int = 4) -> None:
        self.max_talkers = max_talkers
        self._members: dict[str, _Member] = {}
        self._everyone: list[PlayHandle] = []
        self.rate = 8000

    # ----- membership ----------------------------------------------------------------
    def add(self, pid: str, codec: Codec) -> None:
        """Add (or re-codec) a participant; raises UnsupportedCodec for codecs we cannot mix."""
        old = self._members.get(pid)
        m = _Member(pid=pid, codec=AudioCodec(codec), send_pt=codec.payload_type, jb=JitterBuffer())
        if old is not None:
            m.muted, m.lobby, m.prompts, m.ts_offset = (
                old.muted,
                old.lobby,
                old.prompts,
                old.ts_offset,
            )
        self._members[pid] = m
        self._update_rate()

    def remove(self, pid: str) -> None:
        self._members.pop(pid, None)
        self._update_rate()

    def __contains__(self, pid: str) -> bool:
        return pid in self._members

    def __len__(self) -> int:
        return len(self._members)

    def _update_rate(self) -> None:
        self.rate = max([8000] + [min(16000, m.codec.fmt.pcm_rate) for m in self._members.values()])

    def set_muted(self, pid: str, muted: bool) -> None:
        if pid in self._members:
            self._members[pid].muted = muted

    def set_lobby(self, pid: str, lobby: bool) -> None:
        if pid in self._members:
            self._members[pid].lobby = lobby

    def receive(self, pid: str, seq: int, timestamp: int, payload: bytes, now: float) -> None:
        m = self._members.get(pid)
        if m is not None:
            m.jb.put(seq, timestamp, payload, now, m.codec.fmt.rtp_clock)

    def jitter_buffer(self, pid: str) -> JitterBuffer | None:
        m = self._members.get(pid)
        return m.jb if m else None

    # ----- sounds --------------------------------------------------------------------
    def _prepare(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        if sample_rate not in (8000, 16000):
            raise ValueError(f"prompts are 8 or 16 kHz, not {sample_rate}")
        a = np.asarray(pcm, dtype=np.int16)
        return convert_rate(a if a.ndim == 1 else a.reshape(-1), sample_rate, 16000)

    def play(self, pid: str, pcm: np.ndarray, sample_rate: int, loop: bool = False) -> PlayHandle:
        h = PlayHandle(self._prepare(pcm, sample_rate), loop)
        m = self._members.get(pid)
        if m is None:
            h.done = True
        else:
            m.prompts.append(h)
        return h

    def play_all(self, pcm: np.ndarray, sample_rate: int, loop: bool = False) -> PlayHandle:
        h = PlayHandle(self._prepare(pcm, sample_rate), loop)
        self._everyone.append(h)
        return h

    @staticmethod
    def _sound(handles: list[PlayHandle], n16: int, rate: int) -> np.ndarray | None:
        acc = None
        for h in handles:
            chunk = h.take(n16, rate)
            if chunk is None:
                continue
            acc = chunk.astype(np.int32) if acc is None else acc + chunk
        handles[:] = [h for h in handles if not h.done]
        return acc

    # ----- the tick ------------------------------------------------------------------
    def tick(self, now: float) -> MixResult:
        rate = self.rate
        n = int(rate * TICK_S)
        members = list(self._members.values())
        count = len(members)
        frames = np.zeros((count, n), dtype=np.int32)
        has = np.zeros(count, dtype=bool)  # produced audio this tick (packet or concealment)
        quiet = np.zeros(count, dtype=bool)  # muted or in the lobby: never mixed
        for i, m in enumerate(members):
            kind, payload = m.jb.pull()
            if kind is Pull.PACKET:
                pcm = m.codec.decode(payload)
            elif kind is Pull.LOST:
                pcm = m.codec.conceal()
            else:
                continue
            pcm = convert_rate(pcm, m.codec.fmt.pcm_rate, rate)
            k = min(len(pcm), n)
            frames[i, :k] = pcm[:k]
            has[i] = True
            quiet[i] = m.muted or m.lobby
        f = frames.astype(np.float64)
        level_arr = np.einsum("ij,ij->i", f, f) / n
        level_arr[quiet | ~has] = 0.0
        order = np.argsort(-level_arr, kind="stable")[: self.max_talkers]
        selected = np.zeros(count, dtype=bool)
        selected[order[level_arr[order] >= LEVEL_FLOOR]] = True
        total = frames[selected].sum(axis=0, dtype=np.int32) if count else np.zeros(n, np.int32)
        extra = self._sound(self._everyone, int(16000 * TICK_S), rate)
        meeting = total if extra is None else total + extra
        out = meeting[None, :] - frames * selected[:, None]  # mix-minus, all at once
        lobby = np.array([m.lobby for m in members], dtype=bool)
        out[lobby] = 0
        for i, m in enumerate(members):
            if m.prompts:
                own = self._sound(m.prompts, int(16000 * TICK_S), rate)
                if own is not None:
                    out[i] += own
        pcm_all = np.clip(out, -32768, 32767).astype(np.int16)
        payloads = self._encode_all(members, pcm_all, rate)
        result = []
        for i, m in enumerate(members):
            result.append(
                OutFrame(
                    pid=m.pid,
                    pt=m.send_pt,
                    payload=payloads[i],
                    ts_offset=m.ts_offset,
                    marker=not m.started,
                )
            )
            m.started = True
            m.ts_offset += m.codec.fmt.frame_samples * m.codec.fmt.rtp_clock // m.codec.fmt.pcm_rate
        levels = {m.pid: float(level_arr[i]) for i, m in enumerate(members) if has[i]}
        talkers = tuple(members[i].pid for i in order if selected[i])
        mix = np.clip(meeting, -32768, 32767).astype(np.int16)
        return MixResult(frames=tuple(result), mix=mix, rate=rate, levels=levels, talkers=talkers)

    @staticmethod
    def _encode_all(members: list[_Member], pcm_all: np.ndarray, rate: int) -> list[bytes]:
        """Encode every participant's frame; G.711 rows at the mix rate share one table lookup."""
        payloads: list[bytes] = [b""] * len(members)
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(members):
            table = m.codec.g711_table
            if table is not None and m.codec.fmt.pcm_rate == rate:
                groups.setdefault(id(table), []).append(i)
            else:
                pcm = convert_rate(pcm_all[i], rate, m.codec.fmt.pcm_rate)
                payloads[i] = m.codec.encode(pcm)
        for rows in groups.values():
            table = members[rows[0]].codec.g711_table
            coded = table[pcm_all[rows].astype(np.int32) + 32768]
            for j, i in enumerate(rows):
                payloads[i] = coded[j].tobytes()
        return payloads
