"""Receiver-side RFC 3550 figures for our RTCP report blocks, computed off the hot path.

The hot path only appends rows to a :class:`~gateway.quality.records.PacketLog`; when a
report is due, :meth:`ReceptionState.consume` folds the batch in with NumPy:
- extended highest sequence number (A.1, 16-bit wrap carried as cycles),
- expected / lost / fraction lost per interval (A.3),
- interarrival jitter (A.8, float form) over packets in arrival order, as a 1-pole IIR.
Probation and restart detection are simplified: a new SSRC resets the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter

from gateway.rtp.packets import RtcpReceiverInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceptionSnapshot:
    ssrc: int
    received: int
    expected: int
    lost: int
    jitter_ts: float  # RTP timestamp units
    clock_rate: int

    @property
    def jitter_us(self) -> int:
        return int(self.jitter_ts * 1_000_000 / self.clock_rate) if self.clock_rate else 0


@lru_cache(maxsize=256)
def pt_mask(pts: frozenset[int]) -> np.ndarray:
    """A read-only 256-entry bool table, True at ``pts``: ``pt_mask(pts)[rows["pt"]]`` is
    ``np.isin(rows["pt"], list(pts))`` without isin's per-call cost (RTCP ticks of many legs)."""
    mask = np.zeros(256, bool)
    mask[list(pts)] = True
    mask.flags.writeable = False
    return mask


def _unwrap16(prev: int | None, seq: np.ndarray) -> np.ndarray:
    """Extend 16-bit sequence numbers relative to ``prev`` (an extended seq, or None)."""
    s = seq.astype(np.int64)
    start = s[0] if prev is None else prev + ((int(s[0]) - prev + 0x8000) & 0xFFFF) - 0x8000
    d = ((np.diff(s) + 0x8000) & 0xFFFF) - 0x8000
    return np.concatenate(([start], start + np.cumsum(d)))


def _unwrap32(prev: int | None, ts: np.ndarray) -> np.ndarray:
    t = ts.astype(np.int64)
    start = (
        t[0] if prev is None else prev + ((int(t[0]) - prev + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    )
    d = ((np.diff(t) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    return np.concatenate(([start], start + np.cumsum(d)))


class ReceptionState:
    """Running A.1/A.3/A.8 state for one received stream."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self._reset()

    def _reset(self) -> None:
        self.base_seq: int | None = None
        self.max_seq: int | None = None  # extended
        self.last_seq: int | None = None  # extended, arrival order (unwrap reference)
        self.last_ts: int | None = None
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.transit: float | None = None

    def consume(self, rows: np.ndarray, media_pts: frozenset[int]) -> None:
        """Fold in PACKET_DTYPE rows (arrival order); only ``media_pts`` feed jitter."""
        if len(rows) == 0:
            return
        ssrc = int(rows["ssrc"][-1])
        if ssrc != self.ssrc:
            self.ssrc = ssrc
            self._reset()
        rows = rows[rows["ssrc"] == ssrc]
        ext = _unwrap16(self.last_seq, rows["seq"])
        self.last_seq = int(ext[-1])
        if self.base_seq is None:
            self.base_seq = int(ext[0])
            self.max_seq = int(ext[0])
        self.base_seq = min(self.base_seq, int(ext.min()))
        self.max_seq = max(int(self.max_seq or 0), int(ext.max()))
        self.received += len(rows)
        media = rows[pt_mask(media_pts)[rows["pt"]]] if media_pts else rows
        if len(media) and self.clock_rate:
            ts = _unwrap32(self.last_ts, media["ts"])
            self.last_ts = int(ts[-1])
            arrival = media["arrival_ns"].astype(np.float64) * (self.clock_rate / 1e9)
            transit = arrival - ts
            if self.transit is not None:
                transit = np.concatenate(([self.transit], transit))
            d = np.abs(np.diff(transit))
            if len(d):
                y, _ = lfilter([1 / 16], [1, -15 / 16], d, zi=[15 / 16 * self.jitter])
                self.jitter = float(y[-1])
            self.transit = float(transit[-1])

    @property
    def expected(self) -> int:
        if self.base_seq is None or self.max_seq is None:
            return 0
        return self.max_seq - self.base_seq + 1

    def snapshot(self) -> ReceptionSnapshot:
        return ReceptionSnapshot(
            ssrc=self.ssrc or 0,
            received=self.received,
            expected=self.expected,
            lost=self.expected - self.received,
            jitter_ts=self.jitter,
            clock_rate=self.clock_rate,
        )

    def report_block(self, *, lsr: int, dlsr: int) -> RtcpReceiverInfo | None:
        """An RR block for this source (advances the A.3 interval counters)."""
        if self.ssrc is None or self.max_seq is None:
            return None
        expected = self.expected
        exp_int = expected - self.expected_prior
        rec_int = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_int = exp_int - rec_int
        fraction = 0 if exp_int <= 0 or lost_int <= 0 else min(255, (lost_int << 8) // exp_int)
        lost = max(-0x800000, min(0x7FFFFF, expected - self.received))
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self.max_seq & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )
