"""A Wireshark-compatible view of one RTP stream (what `tshark -z rtp,streams` prints).

Wireshark's RTP analysis (ui/tap-rtp-analysis.c, rtppacket_analyse, and
ui/tap-rtp-common.c) differs from RFC 3550 on purpose; this view reproduces it
so captures can be cross-checked against tshark figure by figure:

* time base: capture time in ms relative to the first frame of the file;
* jitter in ms: D = |t - (t_ref + (ts - ts_ref) / (clock_rate div 1000))| where
  ref is the last packet "in time sequence", J = (15 J + D) / 16 on packets in
  time sequence after the first; the clock rate is divided by 1000 in integers
  (44100 -> 44). "In time sequence" in Wireshark 4.0 (the tshark installed here,
  4.0.17, checked by tests/quality/test_tshark.py) means an extended RTP
  timestamp not before the stream's first packet; later Wireshark sources
  compare with the largest timestamp so far instead;
* max/mean jitter and delta only over "regular" packets: not the first, no
  marker bit, not comfort noise (PT 13/19) nor following it, in time sequence;
  the mean is Wireshark's running mean that divides by the packet count so far
  (m = (m (N-1) + J) / N, N = packets before this one), so skipped packets
  still count in N;
* lost = (last seq seen + 65536 cycles - first seq + 1) - packets, where a cycle
  is counted when a seq below the first one arrives in time sequence (reset once
  a seq above it arrives); no probation, duplicates count as packets.

The RFC engine (`engine.QualityEngine`) agrees with this on clean or pure-loss
streams; it differs with reordering (reference packet, late packets excluded),
with duplicates and a reordered last packet (loss), and with marker/CN packets.
This view has a per-packet loop for the sequence-cycle and running-mean rules;
it is a cross-check tool, not on the media path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

_CN = (13, 19)


@dataclass(frozen=True, slots=True, kw_only=True)
class WiresharkStreamFigures:
    packets: int
    expected: int
    lost: int
    max_delta_ms: float
    mean_delta_ms: float
    max_jitter_ms: float
    mean_jitter_ms: float
    min_jitter_ms: float


def tshark_compatible(rows: np.ndarray, clock_rate: int, *, time_origin_ns: int) -> WiresharkStreamFigures:
    """Figures of one stream (PACKET_DTYPE rows in capture order) as tshark computes
    them; time_origin_ns is the capture time of the file's first frame."""
    n = len(rows)
    if n == 0:
        return WiresharkStreamFigures(
            packets=0, expected=0, lost=0, max_delta_ms=0.0, mean_delta_ms=0.0,
            max_jitter_ms=0.0, mean_jitter_ms=0.0, min_jitter_ms=0.0,
        )  # fmt: skip
    t = (rows["arrival_ns"].astype(np.int64) - time_origin_ns) / 1e6
    ts = rows["ts"].astype(np.int64)
    dts = np.diff(ts) & 0xFFFFFFFF
    dts = np.where(dts >= 1 << 31, dts - (1 << 32), dts)
    ext = np.concatenate([[ts[0]], ts[0] + np.cumsum(dts)])
    # "in time sequence": extended timestamp not before the stream's first packet
    in_time = ext >= ext[0]
    idx = np.arange(n)
    last_in = np.maximum.accumulate(np.where(in_time, idx, 0))
    ref = np.zeros(n, np.int64)
    ref[1:] = last_in[:-1]
    delta = t - t[ref]
    per_ms = clock_rate // 1000
    if per_ms:
        expected_t = t[ref] + (ext - ext[ref]) / float(per_ms)
        cd = np.abs(t - expected_t)
        # only packets in time sequence update J; the others leave it as it was
        upd = in_time & (idx > 0)
        j_upd = lfilter([1.0 / 16.0], [1.0, -15.0 / 16.0], cd[upd])
        jit = np.concatenate([[0.0], j_upd])[np.cumsum(upd)]
    else:
        jit = np.zeros(n)
    pt = rows["pt"].astype(np.int64)
    prev_pt = np.empty(n, np.int64)
    prev_pt[0] = -1
    prev_pt[1:] = pt[:-1]
    regular = in_time & ~rows["marker"] & ~np.isin(pt, _CN) & ~np.isin(prev_pt, _CN) & (idx > 0)
    # running means (divide by packets so far) and sequence cycles: a scalar pass
    seq = rows["seq"].astype(np.int64).tolist()
    start = seq[0]
    cycles = 0
    under = False
    stop = seq[0]
    mean_d = mean_j = 0.0
    reg = regular.tolist()
    it = in_time.tolist()
    jl = jit.tolist()
    dl = delta.tolist()
    for k in range(1, n):
        s = seq[k]
        if s < start and it[k] and not under or s == 0 and stop == 65535 and it[k] and not under:
            cycles += 1
            under = True
        elif s > start and it[k] and under:
            under = False
        if reg[k]:
            mean_d = (mean_d * (k - 1) + dl[k]) / k
            if per_ms:
                mean_j = (mean_j * (k - 1) + jl[k]) / k
        stop = s
    expected = stop + cycles * 65536 - start + 1
    rj = jit[regular] if per_ms else np.zeros(0)
    rd = delta[regular]
    return WiresharkStreamFigures(
        packets=n,
        expected=expected,
        lost=expected - n,
        max_delta_ms=float(rd.max()) if len(rd) else 0.0,
        mean_delta_ms=mean_d,
        max_jitter_ms=float(rj.max()) if len(rj) else 0.0,
        mean_jitter_ms=mean_j,
        min_jitter_ms=float(rj.min()) if len(rj) else 0.0,
    )
