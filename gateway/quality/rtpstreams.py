"""RTP streams in a capture: heuristic discovery, SDP learning, analysis.

Discovery works like Wireshark's `rtp_udp` heuristic: RTP version 2, a payload
type outside the RTCP band (RFC 5761), not on the SIP ports, grouped by
(5-tuple, SSRC), at least `min_packets` packets, mostly small forward sequence
steps. SIP messages in the capture are scanned for SDP (c=, m=, a=rtpmap) to
learn dynamic payload types; for dynamic PTs without SDP the clock rate is
inferred from RTP timestamp steps against arrival time, snapped to
8000/16000/48000/90000. All per-packet work is vectorized; loops run per stream
or per SIP message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.quality.payload import COMMON_CLOCK_RATES, STATIC_PAYLOAD_TYPES
from gateway.quality.pcap import (
    CaptureError,
    UdpDatagrams,
    format_ip,
    read_frames,
    udp_datagrams,
)
from gateway.quality.records import PACKET_DTYPE
from gateway.quality.sequence import concat_ranges


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpStreamInfo:
    index: int
    src: str
    sport: int
    dst: str
    dport: int
    ssrc: int
    payload_type: int
    clock_rate: int
    encoding: str
    clock_source: str  # "static", "sdp", "name", "inferred", "unknown"
    packets: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpCapture:
    """The RTP packets of a capture in capture order, with their stream; plus the
    permutation grouping them by stream: rows[by_stream[starts[k]:starts[k + 1]]]
    are stream k's packets in capture order (feed `QualityEngine.update_grouped`)."""

    rows: np.ndarray  # PACKET_DTYPE, capture order
    stream: np.ndarray  # int64: index into streams, per row
    by_stream: np.ndarray  # int64 permutation of rows
    starts: np.ndarray  # int64, len(streams) + 1
    streams: tuple[RtpStreamInfo, ...]


# ----------------------------------------------------------------------------- SDP in SIP

_SIP_START = re.compile(rb"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3})")


@dataclass(slots=True)
class SdpMedia:
    """What the SDPs in a capture say about payload types, per (address, port)."""

    by_endpoint: dict[tuple[str, int], dict[int, tuple[str, int]]] = field(default_factory=dict)
    any_pt: dict[int, tuple[str, int]] = field(default_factory=dict)


def parse_sdp_rtpmaps(sdp: str) -> list[tuple[str | None, int, dict[int, tuple[str, int]]]]:
    """(connection address, media port, {pt: (encoding, clock rate)}) per m= line."""
    out: list[tuple[str | None, int, dict[int, tuple[str, int]]]] = []
    session_c: str | None = None
    cur: list | None = None
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("c=") and len(line.split()) >= 3:
            addr = line.split()[2].split("/")[0]
            if cur is None:
                session_c = addr
            else:
                cur[0] = addr
        elif line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 3 and parts[1].split("/")[0].isdigit():
                cur = [session_c, int(parts[1].split("/")[0]), {}]
                for p in parts[3:]:
                    if p.isdigit() and int(p) in STATIC_PAYLOAD_TYPES:
                        cur[2][int(p)] = STATIC_PAYLOAD_TYPES[int(p)]
                out.append(cur)  # type: ignore[arg-type]
        elif line.startswith("a=rtpmap:") and cur is not None:
            m = re.match(r"a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", line)
            if m:
                cur[2][int(m.group(1))] = (m.group(2).upper(), int(m.group(3)))
    return [(c, p, pts) for c, p, pts in out]


def scan_sip_sdp(udp: UdpDatagrams, limit: int = 10_000) -> SdpMedia:
    """Find SIP messages among the datagrams and collect their SDP rtpmaps."""
    media = SdpMedia()
    buf = udp.buf
    first = buf[np.minimum(udp.payload_offset, len(buf) - 1)]
    cand = np.flatnonzero((udp.payload_len > 20) & (first >= ord("A")) & (first <= ord("Z")))
    for i in cand[:limit].tolist():
        o = int(udp.payload_offset[i])
        msg = bytes(buf[o : o + int(udp.payload_len[i])])
        if not _SIP_START.match(msg) or b"\r\n\r\n" not in msg:
            continue
        head, _, body = msg.partition(b"\r\n\r\n")
        if b"application/sdp" not in head.lower():
            continue
        for addr, port, pts in parse_sdp_rtpmaps(body.decode("latin-1")):
            if addr is not None:
                media.by_endpoint.setdefault((addr, port), {}).update(pts)
            for pt, val in pts.items():
                media.any_pt.setdefault(pt, val)
    return media


# ----------------------------------------------------------------------------- RTP discovery


def infer_clock_rate(arrival_ns: np.ndarray, ts: np.ndarray) -> int:
    """Snap (sum of RTP timestamp steps) / (elapsed arrival time) to a common rate."""
    if len(ts) < 2:
        return 0
    dts = np.diff(ts.astype(np.int64)) & 0xFFFFFFFF
    dts = np.where(dts >= 1 << 31, dts - (1 << 32), dts)
    darr = np.diff(arrival_ns.astype(np.int64))
    good = (dts >= 0) & (darr >= 0)
    t = darr[good].sum()
    if t <= 0:
        return 0
    rate = dts[good].sum() / (t / 1e9)
    if rate <= 0:
        return 0
    best = min(COMMON_CLOCK_RATES, key=lambda r: abs(np.log(rate / r)))
    return best if abs(np.log(rate / best)) < np.log(1.25) else 0


def discover_rtp(udp: UdpDatagrams, *, min_packets: int = 5) -> RtpCapture:
    """Heuristic RTP stream discovery over all UDP datagrams of a capture."""
    ok = udp.payload_len >= 12
    hdr = udp.head  # the fixed RTP header (CSRCs/extension do not matter)
    b0 = hdr[:, 0].astype(np.int64)
    b1 = hdr[:, 1].astype(np.int64)
    pt = b1 & 0x7F
    ok &= (b0 >> 6) == 2
    ok &= ~((pt >= 72) & (pt <= 76))
    ok &= (udp.sport != 5060) & (udp.dport != 5060) & (udp.sport != 5061) & (udp.dport != 5061)
    idx = np.flatnonzero(ok)
    z = RtpCapture(
        rows=np.zeros(0, PACKET_DTYPE), stream=np.zeros(0, np.int64),
        by_stream=np.zeros(0, np.int64), starts=np.zeros(1, np.int64), streams=(),
    )  # fmt: skip
    if not len(idx):
        return z
    h12 = hdr[idx]
    seq = h12[:, 2:4].copy().view(">u2")[:, 0].astype(np.int64)
    ts = h12[:, 4:8].copy().view(">u4")[:, 0].astype(np.int64)
    ssrc = h12[:, 8:12].copy().view(">u4")[:, 0].astype(np.int64)
    src = udp.src[idx].view(np.uint64).reshape(-1, 2)
    dst = udp.dst[idx].view(np.uint64).reshape(-1, 2)
    # a 64-bit hash of the stream key; one stable sort groups the packets (arrival
    # order kept inside each group), then the key is checked exactly per packet
    sport, dport = udp.sport[idx], udp.dport[idx]
    h = _mix(src[:, 0], src[:, 1])
    h = _mix(h, dst[:, 0])
    h = _mix(h, dst[:, 1])
    h = _mix(h, (sport << 16 | dport).astype(np.uint64))
    h = _mix(h, ssrc.astype(np.uint64))
    order = np.argsort(h, kind="stable")
    hs = h[order]
    newgrp = np.ones(len(hs), bool)
    newgrp[1:] = hs[1:] != hs[:-1]
    gs = np.cumsum(newgrp) - 1  # group of each sorted packet
    gbounds = np.append(np.flatnonzero(newgrp), len(hs))
    first = order[gbounds[:-1]]  # first packet (in capture order) of each group
    counts = np.diff(gbounds)
    same_grp = ~newgrp[1:]
    for col in (src[:, 0], src[:, 1], dst[:, 0], dst[:, 1], sport, dport, ssrc):
        cs = col[order]
        if not np.all((cs[1:] == cs[:-1]) | ~same_grp):
            raise CaptureError("stream key hash collision")  # astronomically unlikely
    # plausibility: enough packets, mostly small forward seq steps
    step = np.diff(seq[order]) & 0xFFFF
    same = same_grp
    good_step = same & (step >= 1) & (step <= 100)
    n_good = np.bincount(gs[1:][good_step], minlength=len(counts))
    n_pairs = np.bincount(gs[1:][same], minlength=len(counts))
    keep_group = (counts >= min_packets) & (n_good * 2 >= n_pairs)
    # streams numbered in order of first appearance; rows kept in capture order
    groups = np.flatnonzero(keep_group)
    groups = groups[np.argsort(first[groups])]
    n_pk = counts[groups]
    K = len(groups)
    remap = np.full(len(counts), -1, np.int64)
    remap[groups] = np.arange(K)
    sid_sorted = remap[gs]
    sid = np.empty(len(idx), np.int64)
    sid[order] = sid_sorted
    sel = sid >= 0
    stream = sid[sel]
    # the grouping permutation: capture-order rows of stream k, in capture order
    pos = np.cumsum(sel) - 1  # row of each selected packet
    pick = order[concat_ranges(gbounds[groups], n_pk)]  # packets, grouped by stream
    by_stream = pos[pick]
    bounds = np.concatenate([[0], np.cumsum(n_pk)])
    rows = np.zeros(int(sel.sum()), PACKET_DTYPE)
    gi = idx[sel]
    rows["arrival_ns"] = udp.ts_ns[gi]
    rows["seq"] = seq[sel]
    rows["ts"] = ts[sel]
    rows["ssrc"] = ssrc[sel]
    rows["pt"] = pt[idx][sel]
    rows["marker"] = (b1[idx][sel] & 0x80) != 0
    rows["size"] = np.minimum(udp.payload_len[gi], 0xFFFF)
    sdp = scan_sip_sdp(udp)
    # each stream's payload type: its most frequent one
    main_pt = np.bincount(stream * 128 + rows["pt"], minlength=K * 128).reshape(K, 128).argmax(1)
    infos = []
    for k, gidx in enumerate(groups.tolist()):
        r0 = int(first[gidx])
        gsrc, gdst = format_ip(udp.src[idx[r0]]), format_ip(udp.dst[idx[r0]])
        sp, dp = int(udp.sport[idx[r0]]), int(udp.dport[idx[r0]])
        p = int(main_pt[k])
        enc, rate, source = _clock_for(
            p, sdp, gsrc, sp, gdst, dp, lambda k=k: rows[by_stream[bounds[k] : bounds[k + 1]]]
        )
        infos.append(
            RtpStreamInfo(
                index=k,
                src=gsrc,
                sport=sp,
                dst=gdst,
                dport=dp,
                ssrc=int(ssrc[r0]),
                payload_type=p,
                clock_rate=rate,
                encoding=enc,
                clock_source=source,
                packets=int(n_pk[k]),
            )
        )
    return RtpCapture(rows=rows, stream=stream, by_stream=by_stream, starts=bounds, streams=tuple(infos))


def _clock_for(pt, sdp: SdpMedia, src, sport, dst, dport, stream_rows) -> tuple[str, int, str]:
    for ep in ((dst, dport), (src, sport)):
        m = sdp.by_endpoint.get(ep)
        if m and pt in m:
            name, rate = m[pt]
            return name, rate, "sdp"
    if pt in STATIC_PAYLOAD_TYPES:
        name, rate = STATIC_PAYLOAD_TYPES[pt]
        return name, rate, "static"
    if pt in sdp.any_pt:
        name, rate = sdp.any_pt[pt]
        return name, rate, "sdp"
    rows = stream_rows()
    rate = infer_clock_rate(rows["arrival_ns"], rows["ts"])
    return ("", rate, "inferred") if rate else ("", 0, "unknown")


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)


def _mix(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (h.astype(np.uint64) ^ v.astype(np.uint64)) * _M1
        x ^= x >> np.uint64(31)
        return x * _M2


def read_rtp(path: str | Path, *, min_packets: int = 5) -> RtpCapture:
    """Frames -> UDP -> RTP streams, in one call."""
    return discover_rtp(udp_datagrams(read_frames(path)), min_packets=min_packets)


def analyse_capture(path: str | Path, *, min_packets: int = 5):
    """Run the quality engine over every RTP stream of a capture.

    Returns [(RtpStreamInfo, StreamSummary)] in order of first appearance."""
    from gateway.quality.engine import QualityEngine

    cap = read_rtp(path, min_packets=min_packets)
    eng = QualityEngine()
    for info in cap.streams:
        eng.stream_id(info.index, clock_rate=info.clock_rate or None, encoding=info.encoding or None)
    ids = np.array([eng.stream_id(info.index) for info in cap.streams], np.int64)
    eng.update_grouped(ids, cap.starts, cap.rows[cap.by_stream])
    return [(info, eng.summary(info.index)) for info in cap.streams]
