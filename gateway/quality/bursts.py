"""Loss burst structure: RFC 3611 burst/gap densities and the G.107 BurstR.

Input is a stream's loss-run history as recorded by `sequence.SeqTable`: one
row (gap_before, run_length) per run of consecutive lost packets, where
gap_before is the number of received packets since the previous run, plus the
received packets since the last run. The stream then reads
R^g1 L^l1 R^g2 L^l2 ... L^lK R^tail.

RFC 3611 section 4.7.2: a burst is a stretch that starts and ends with a lost
packet and contains no run of Gmin (16) or more received packets; the rest is
gap. A burst holding a single lost packet (an isolated loss, surrounded by at
least Gmin received packets) counts as gap, as in the RFC's reference
algorithm. Densities are lost / packets within bursts and within gaps.

BurstR (ITU-T G.107 section 3.8, 2-state Markov model): with p the probability
of going from "found" to "lost" and q from "lost" to "found", BurstR = 1/(p+q);
estimated here as p = runs / received, q = runs / lost. BurstR = 1 for random
loss, > 1 for bursty loss; no loss gives 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GMIN = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstMetrics:
    burst_density: float  # lost / packets within bursts (0..1)
    gap_density: float  # lost / packets within gaps (0..1)
    burst_packets: int
    burst_lost: int
    gap_packets: int
    gap_lost: int
    burst_count: int


def burst_metrics(events: np.ndarray, tail: int, gmin: int = GMIN) -> BurstMetrics:
    """events: int array of shape (K, 2) with columns (gap_before, run_length)."""
    if len(events) == 0:
        return BurstMetrics(
            burst_density=0.0, gap_density=0.0, burst_packets=0, burst_lost=0,
            gap_packets=int(tail), gap_lost=0, burst_count=0,
        )  # fmt: skip
    g = events[:, 0].astype(np.int64)
    ln = events[:, 1].astype(np.int64)
    start = g >= gmin
    start[0] = True
    bid = np.cumsum(start) - 1
    nb = int(bid[-1]) + 1
    lost = np.bincount(bid, weights=ln, minlength=nb)
    inner = np.bincount(bid, weights=np.where(start, 0, g), minlength=nb)
    real = lost >= 2
    burst_lost = int(lost[real].sum())
    burst_packets = int((lost + inner)[real].sum())
    total = int(g.sum() + ln.sum() + tail)
    total_lost = int(ln.sum())
    gap_packets = total - burst_packets
    gap_lost = total_lost - burst_lost
    return BurstMetrics(
        burst_density=burst_lost / burst_packets if burst_packets else 0.0,
        gap_density=gap_lost / gap_packets if gap_packets else 0.0,
        burst_packets=burst_packets,
        burst_lost=burst_lost,
        gap_packets=gap_packets,
        gap_lost=gap_lost,
        burst_count=int(real.sum()),
    )


def burst_ratio(received: int, lost: int, runs: int) -> float:
    """G.107 BurstR from counts of received packets, lost packets and loss runs."""
    if lost <= 0 or runs <= 0 or received <= 0:
        return 1.0
    p = runs / received
    q = runs / lost
    return 1.0 / (p + q)
