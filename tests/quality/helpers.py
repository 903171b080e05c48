"""Building packet rows and RTP captures for the quality tests."""

from __future__ import annotations

import numpy as np
from aiortc.rtp import RtpPacket

from gateway.quality.records import PACKET_DTYPE

T0 = 1_700_000_000_000_000_000  # a Unix time in ns


def rows(
    seqs: list[int],
    *,
    ssrc: int = 1,
    pt: int = 0,
    ts: list[int] | None = None,
    arrival_ns: list[int] | None = None,
    size: int = 172,
) -> np.ndarray:
    """PACKET_DTYPE rows for a seq list; by default 20 ms / 160 ticks per packet."""
    n = len(seqs)
    out = np.zeros(n, PACKET_DTYPE)
    out["seq"] = np.asarray(seqs, np.int64) & 0xFFFF
    out["ts"] = np.asarray(ts if ts is not None else [i * 160 for i in range(n)], np.int64) & 0xFFFFFFFF
    out["arrival_ns"] = arrival_ns if arrival_ns is not None else [T0 + i * 20_000_000 for i in range(n)]
    out["ssrc"] = ssrc
    out["pt"] = pt
    out["size"] = size
    return out


def rtp_bytes(*, pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """A serialized RTP packet (aiortc's RtpPacket does the wire format)."""
    p = RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        marker=int(marker),
    )
    p.payload = payload
    return bytes(p.serialize())


def impaired_stream(
    *,
    n: int,
    pt: int,
    ssrc: int,
    src: tuple[str, int],
    dst: tuple[str, int],
    seed: int,
    ticks: int = 160,
    first_seq: int = 1000,
    first_ts: int = 5000,
    loss: float = 0.0,
    jitter_ns: int = 0,
    swaps: int = 0,
    dups: int = 0,
    t0: int = T0,
    payload: int = 160,
) -> list[tuple[int, tuple[str, int], tuple[str, int], bytes]]:
    """(arrival_ns, src, dst, rtp) tuples of one stream with known impairment:
    random loss, uniform arrival jitter, adjacent swaps (away from both ends) and
    duplicates re-sent 1 ms after the original. Sorted by arrival."""
    rng = np.random.default_rng(seed)
    send = list(range(n))
    keep = [i for i in send if i in (0, 1, n - 1) or rng.random() >= loss]
    order = list(keep)
    if swaps:
        spots = rng.choice(np.arange(5, len(order) - 5, 3), size=swaps, replace=False)
        for j in spots.tolist():
            order[j], order[j + 1] = order[j + 1], order[j]
    out = []
    for slot, i in enumerate(order):
        arr = t0 + slot * 20_000_000 + (int(rng.integers(0, jitter_ns)) if jitter_ns else 0)
        pkt = rtp_bytes(pt=pt, seq=first_seq + i, ts=first_ts + i * ticks, ssrc=ssrc, payload=bytes(payload))
        out.append((arr, src, dst, pkt))
    if dups:
        for j in rng.choice(np.arange(5, len(out) - 5), size=dups, replace=False).tolist():
            a, s, d, p = out[j]
            out.append((a + 1_000_000, s, d, p))
    out.sort(key=lambda x: x[0])
    return out
