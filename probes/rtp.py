"""`vtcprobe rtp`: a synthetic RTP stream through the gateway's reflector, both directions.

The probe sends RTP packets shaped like a SPEC.md bandwidth profile to the reflector
(gateway/reflector.py), which answers each one with its receive and send times and
its counters. From that:

* forward (probe -> gateway): jitter and reordering from the reflector's receive
  timestamps against our RTP timestamps (RFC 3550 A.8 via the quality engine);
  loss from the reflector's final count (a STATS request after the stream);
* return (gateway -> probe): jitter from our kernel receive timestamps against the
  reflector's send times, loss from the reflector's count of answers it sent;
* RTT per packet = (our receive - our send) - (reflector send - reflector receive),
  which needs no clock agreement between the two hosts;
* MOS per direction from the E-model (gateway.quality.mos) with that loss, the
  engine's burst ratio and a one-way delay of RTT/2 + jitter buffer + codec delay.

RTP timestamps are taken from the actual send time (not the nominal schedule), so
our own scheduling delays do not show up as network jitter; the reflector's send
times play the same role on the way back.

Bit rates count RTP packets (UDP payload), not IP/UDP headers. The reflector rate-limits
each source (1000 packets/s by default): a custom profile above that shows the excess
as forward loss.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.quality.records import PACKET_DTYPE
from gateway.reflector import HEADER_SIZE, Kind, ProbeBlock, build_probe, verify_answer
from probes.common import Check, Op, ProbeError, ProbeResult, Progress, checks_table, fmt, table


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    name: str
    kbps: float
    packet_bytes: int
    clock_rate: int
    payload_type: int
    encoding: str  # for the MOS estimate
    max_loss_pct: float
    max_jitter_ms: float
    max_rtt_ms: float
    min_mos: float | None

    @property
    def pps(self) -> float:
        return self.kbps * 1000.0 / 8.0 / self.packet_bytes


# SPEC.md "Bandwidth the service promised"; limits: G.114 (150 ms one way), 1 % loss,
# 30 ms jitter (what a 60 ms jitter buffer absorbs), MOS 3.6 for voice.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(name="audio", kbps=54, packet_bytes=135, clock_rate=48000, payload_type=111,
                encoding="OPUS", max_loss_pct=1.0, max_jitter_ms=30.0, max_rtt_ms=300.0, min_mos=3.6),
        Profile(name="video", kbps=650, packet_bytes=1200, clock_rate=90000, payload_type=96,
                encoding="OPUS", max_loss_pct=1.0, max_jitter_ms=30.0, max_rtt_ms=300.0, min_mos=None),
        Profile(name="video-hd", kbps=1400, packet_bytes=1200, clock_rate=90000, payload_type=96,
                encoding="OPUS", max_loss_pct=1.0, max_jitter_ms=30.0, max_rtt_ms=300.0, min_mos=None),
        Profile(name="screen", kbps=1200, packet_bytes=1200, clock_rate=90000, payload_type=96,
                encoding="OPUS", max_loss_pct=1.0, max_jitter_ms=30.0, max_rtt_ms=300.0, min_mos=None),
    )
}


def custom_profile(base: Profile, *, kbps: float | None, packet_bytes: int | None) -> Profile:
    size = packet_bytes or base.packet_bytes
    if not HEADER_SIZE <= size <= 1472:
        raise ProbeError(f"packet size must be {HEADER_SIZE}-1472 bytes, not {size}")
    rate = kbps or base.kbps
    if not 1 <= rate <= 20000:
        raise ProbeError(f"rate must be 1-20000 kbps, not {rate}")
    if (packet_bytes, kbps) == (None, None):
        return base
    return Profile(name=f"{base.name}-custom", kbps=rate, packet_bytes=size,
                   clock_rate=base.clock_rate, payload_type=base.payload_type,
                   encoding=base.encoding, max_loss_pct=base.max_loss_pct,
                   max_jitter_ms=base.max_jitter_ms, max_rtt_ms=base.max_rtt_ms, min_mos=base.min_mos)


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    max_loss_pct: float
    max_jitter_ms: float
    max_rtt_ms: float
    min_mos: float | None


ANSWER_DTYPE = np.dtype([("seq", "<u2"), ("ts", "<u4"), ("client_ns", "<i8"), ("reply_seq", "<u4"),
                         ("fwd_received", "<u4"), ("recv_ns", "<i8"), ("send_ns", "<i8"),
                         ("local_ns", "<i8")])


@dataclass(frozen=True, slots=True, kw_only=True)
class RunData:
    """Everything a run observed (input to `analyse`, a pure function)."""

    profile: Profile
    ssrc: int
    sent: int
    send_ns: np.ndarray  # int64 wall-clock send time per sent packet (index = seq - seq0)
    answers: np.ndarray  # ANSWER_DTYPE in our arrival order
    final_fwd_received: int | None  # from the STATS answer
    final_replies: int | None


# ---------------------------------------------------------------------------- analysis


def _summary(rows: np.ndarray, profile: Profile, key: str,
             bins_ns: np.ndarray) -> tuple[Any, list[float]]:
    """Engine summary of one direction, plus its jitter (ms) at the end of each time bin."""
    from gateway.quality.engine import QualityEngine  # scipy: slow to import, not needed for usage errors

    eng = QualityEngine()
    eng.stream_id(key, clock_rate=profile.clock_rate, encoding=profile.encoding)
    series: list[float] = []
    cuts = np.searchsorted(rows["arrival_ns"], bins_ns) if len(rows) else np.zeros(len(bins_ns), int)
    start = 0
    for cut in cuts.tolist():
        if cut > start:
            eng.update_streams([(key, rows[start:cut])])
            start = cut
        series.append(round(eng.summary(key).jitter_us / 1000.0, 3) if start else 0.0)
    if start < len(rows):
        eng.update_streams([(key, rows[start:])])
    return (eng.summary(key) if len(rows) else None), series


def analyse(run: RunData, *, bin_s: float = 1.0) -> dict[str, Any]:
    from gateway.quality.mos import codec_for_encoding, estimate_mos

    p, a = run.profile, run.answers
    n = len(a)
    fwd_rows = np.zeros(n, PACKET_DTYPE)
    order = np.argsort(a["recv_ns"], kind="stable")  # the reflector's arrival order
    fwd_rows["arrival_ns"] = a["recv_ns"][order]
    fwd_rows["seq"] = a["seq"][order]
    fwd_rows["ts"] = a["ts"][order]
    fwd_rows["ssrc"] = run.ssrc
    fwd_rows["pt"] = p.payload_type
    fwd_rows["size"] = p.packet_bytes
    ret_rows = np.zeros(n, PACKET_DTYPE)
    ret_rows["arrival_ns"] = a["local_ns"]
    ret_rows["seq"] = a["reply_seq"] & 0xFFFF
    ret_rows["ts"] = ((a["send_ns"] - (a["send_ns"][0] if n else 0)) * p.clock_rate // 10**9) & 0xFFFFFFFF
    ret_rows["ssrc"] = run.ssrc
    ret_rows["pt"] = p.payload_type
    ret_rows["size"] = p.packet_bytes

    t0 = int(run.send_ns[0]) if len(run.send_ns) else 0
    duration_ns = int(run.send_ns[-1] - t0) if len(run.send_ns) else 0
    nbins = max(1, int(np.ceil(duration_ns / (bin_s * 1e9))))
    edges = t0 + (np.arange(1, nbins + 1) * bin_s * 1e9).astype(np.int64)
    # the reflector's clock may be offset from ours: bin its times by its own first packet
    off = int(np.min(a["recv_ns"]) - np.min(a["client_ns"])) if n else 0
    back = int(np.median(a["local_ns"] - a["send_ns"])) if n else 0  # reflector clock -> ours, + delay
    fwd, fwd_series = _summary(fwd_rows, p, "fwd", edges + off)
    ret, ret_series = _summary(ret_rows, p, "ret", edges + off + back)

    rtt_ns = (a["local_ns"] - a["client_ns"]) - (a["send_ns"] - a["recv_ns"])
    rtt_ms = rtt_ns / 1e6
    fwd_received = run.final_fwd_received if run.final_fwd_received is not None else (
        int(a["fwd_received"].max()) if n else 0)
    replies = run.final_replies if run.final_replies is not None else (int(a["reply_seq"].max()) if n else 0)
    fwd_lost = max(run.sent - fwd_received, 0)
    ret_lost = max(replies - n, 0)
    fwd_loss = 100.0 * fwd_lost / run.sent if run.sent else 100.0
    ret_loss = 100.0 * ret_lost / replies if replies else (100.0 if fwd_received else 0.0)
    rtt_mean = float(np.mean(rtt_ms)) if n else None
    codec = codec_for_encoding(p.encoding)

    def mos(loss: float, summ: Any) -> float | None:
        if summ is None or rtt_mean is None:
            return None
        jit = summ.jitter_us / 1000.0
        m = estimate_mos(codec=codec, loss_percent=loss, burst_ratio=summ.burst_ratio,
                         one_way_delay_ms=rtt_mean / 2 + max(20.0, 2 * jit) + codec.delay_ms)
        return round(m.value, 2)

    def direction(summ: Any, lost: int, expected: int, loss: float) -> dict[str, Any]:
        return {
            "expected": expected, "lost": lost, "loss_pct": round(loss, 3),
            "jitter_ms": round(summ.jitter_us / 1000.0, 3) if summ else None,
            "mean_jitter_ms": round(summ.mean_jitter_ms, 3) if summ else None,
            "max_jitter_ms": round(summ.max_jitter_ms, 3) if summ else None,
            "reordered": summ.reordered if summ else 0,
            "duplicates": summ.duplicates if summ else 0,
            "burst_ratio": round(summ.burst_ratio, 3) if summ else None,
            "mos": mos(loss, summ),
        }

    # round-trip loss per bin (by send time), RTT per bin
    sent_bin = ((run.send_ns - t0) // int(bin_s * 1e9)).clip(0, nbins - 1)
    sent_per_bin = np.bincount(sent_bin, minlength=nbins)
    got_bin = ((a["client_ns"] - t0) // int(bin_s * 1e9)).clip(0, nbins - 1) if n else np.zeros(0, int)
    got_per_bin = np.bincount(got_bin, minlength=nbins)
    rtt_bin = [float(np.median(rtt_ms[got_bin == b])) if np.any(got_bin == b) else None for b in range(nbins)]
    return {
        "profile": {"name": p.name, "kbps": p.kbps, "packet_bytes": p.packet_bytes, "pps": round(p.pps, 2),
                    "clock_rate": p.clock_rate, "payload_type": p.payload_type},
        "sent": run.sent,
        "answered": n,
        "counts_from_reflector": run.final_fwd_received is not None,
        "send_kbps": (round(run.sent * p.packet_bytes * 8 / max(duration_ns / 1e9, 1e-9) / 1000, 1)
                      if run.sent > 1 else None),
        "forward": direction(fwd, fwd_lost, run.sent, fwd_loss),
        "return": direction(ret, ret_lost, replies, ret_loss),
        "rtt_ms": {
            "mean": round(rtt_mean, 3) if rtt_mean is not None else None,
            "min": round(float(np.min(rtt_ms)), 3) if n else None,
            "median": round(float(np.median(rtt_ms)), 3) if n else None,
            "p95": round(float(np.percentile(rtt_ms, 95)), 3) if n else None,
            "max": round(float(np.max(rtt_ms)), 3) if n else None,
        },
        "series": {
            "t_s": [round((b + 1) * bin_s, 3) for b in range(nbins)],
            "forward_jitter_ms": fwd_series,
            "return_jitter_ms": ret_series,
            "round_trip_loss_pct": [round(100.0 * (1 - g / s), 2) if s else 0.0
                                    for s, g in zip(sent_per_bin.tolist(), got_per_bin.tolist(), strict=False)],
            "rtt_ms": [round(x, 3) if x is not None else None for x in rtt_bin],
        },
    }


def checks_for(result: dict[str, Any], th: Thresholds) -> list[Check]:
    out = []
    for d in ("forward", "return"):
        r = result[d]
        out.append(Check(name=f"{d} loss", value=r["loss_pct"], limit=th.max_loss_pct, unit="%"))
        out.append(Check(name=f"{d} jitter", value=r["jitter_ms"], limit=th.max_jitter_ms, unit="ms"))
    out.append(Check(name="rtt mean", value=result["rtt_ms"]["mean"], limit=th.max_rtt_ms, unit="ms"))
    if th.min_mos is not None:
        for d in ("forward", "return"):
            out.append(Check(name=f"{d} MOS", value=result[d]["mos"], limit=th.min_mos, op=Op.MIN))
    return out


# ---------------------------------------------------------------------------- I/O


class _Receiver:
    def __init__(self, key: bytes, ssrc: int) -> None:
        self.key, self.ssrc = key, ssrc
        self.rows: list[tuple[int, ...]] = []
        self.stats: ProbeBlock | None = None
        self.stats_event = asyncio.Event()
        self.bad = 0

    def on_batch(self, b: Any, n: int) -> None:
        wall = time.time_ns()
        for i in range(n):
            size = int(b.lengths[i])
            if size > b.maxlen:
                continue
            data = b.buf[i, :size].tobytes()
            blk = verify_answer(self.key, data)
            if blk is None:
                self.bad += 1
                continue
            seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
            if ssrc != self.ssrc:
                continue
            local = int(b.ts_ns[i]) or wall
            if blk.kind is Kind.ECHO_REPLY:
                self.rows.append((seq, ts, blk.client_ns, blk.reply_seq, blk.fwd_received,
                                  blk.recv_ns, blk.send_ns, local))
            elif blk.kind is Kind.STATS_REPLY:
                self.stats = blk
                self.stats_event.set()


def resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host}: {exc.strerror}") from None
    fam, _, _, _, addr = infos[0]
    return fam, addr


async def run_stream(host: str, port: int, *, token: str, profile: Profile, duration_s: float,
                     progress: Progress | None = None, local_port: int = 0) -> RunData:
    from gateway.rtp.udpbatch import BatchBuffers, add_batch_reader, enable_timestamps

    key = token.encode()
    fam, addr = resolve(host, port)
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    ssrc = struct.unpack("!I", os.urandom(4))[0]
    seq0 = struct.unpack("!H", os.urandom(2))[0]
    rx = _Receiver(key, ssrc)
    reader = None
    try:
        sock.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", local_port))
        sock.connect(addr)
        sock.setblocking(False)
        enable_timestamps(sock)
        reader = add_batch_reader(loop, sock, rx.on_batch, buffers=BatchBuffers(32, 2048))
        interval = 1.0 / profile.pps
        count = max(2, int(round(duration_s * profile.pps)))
        send_ns = np.zeros(count, np.int64)
        start = time.monotonic()
        t_first = time.time_ns()
        i = 0
        while i < count:
            now = time.monotonic()
            while i < count and start + i * interval <= now:
                wall = time.time_ns()
                ts = (wall - t_first) * profile.clock_rate // 10**9 & 0xFFFFFFFF
                hdr = struct.pack("!BBHII", 0x80, profile.payload_type, (seq0 + i) & 0xFFFF, ts, ssrc)
                pkt = build_probe(key, rtp_header=hdr, size=profile.packet_bytes,
                                  block=ProbeBlock(kind=Kind.ECHO, client_ns=wall,
                                                   clock_rate=profile.clock_rate))
                try:
                    sock.send(pkt)
                except (BlockingIOError, InterruptedError):
                    pass  # our own buffer is full: counted as loss, as on a real path
                except OSError as exc:  # ICMP unreachable on a connected socket
                    raise ProbeError(f"sending to {host}:{port}: {exc.strerror or exc}") from None
                send_ns[i] = wall
                i += 1
            if progress:
                progress.update(now - start)
            if i < count:
                await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        # drain: answers in flight, then ask for the final counts
        rtts = [r[7] - r[2] for r in rx.rows[-50:]]
        await asyncio.sleep(min(3.0, max(0.3, 4 * (max(rtts) / 1e9 if rtts else 0.3))))
        for attempt in range(5):
            wall = time.time_ns()
            hdr = struct.pack("!BBHII", 0x80, profile.payload_type, (seq0 + count) & 0xFFFF, 0, ssrc)
            try:
                sock.send(build_probe(key, rtp_header=hdr, size=HEADER_SIZE,
                                      block=ProbeBlock(kind=Kind.STATS, client_ns=wall)))
            except OSError:
                pass
            try:
                await asyncio.wait_for(rx.stats_event.wait(), 0.3 * (attempt + 1))
                break
            except TimeoutError:
                continue
    finally:
        if reader is not None:
            reader.close()
        sock.close()
        if progress:
            progress.close()
    answers = np.array(rx.rows, dtype=ANSWER_DTYPE) if rx.rows else np.zeros(0, ANSWER_DTYPE)
    return RunData(profile=profile, ssrc=ssrc, sent=count, send_ns=send_ns, answers=answers,
                   final_fwd_received=rx.stats.fwd_received if rx.stats else None,
                   final_replies=rx.stats.reply_seq if rx.stats else None)


async def probe(host: str, port: int, *, token: str, profile: Profile, duration_s: float,
                thresholds: Thresholds, progress: Progress | None = None) -> ProbeResult:
    run = await run_stream(host, port, token=token, profile=profile, duration_s=duration_s,
                           progress=progress)
    if len(run.answers) == 0 and run.final_fwd_received is None:
        raise ProbeError(f"no answer from a reflector at {host}:{port} "
                         "(is it enabled, is the token right, is UDP to that port open?)")
    data = analyse(run)
    data["thresholds"] = {"max_loss_pct": thresholds.max_loss_pct, "max_jitter_ms": thresholds.max_jitter_ms,
                          "max_rtt_ms": thresholds.max_rtt_ms, "min_mos": thresholds.min_mos}
    res = ProbeResult(probe="rtp", target=f"{host}:{port}", data=data)
    res.checks = checks_for(data, thresholds)
    return res


def render(res: ProbeResult) -> str:
    d = res.data
    p = d["profile"]
    rows = []
    for name in ("forward", "return"):
        r = d[name]
        rows.append([name, r["expected"], r["lost"], r["loss_pct"], r["jitter_ms"], r["max_jitter_ms"],
                     r["reordered"], r["mos"]])
    out = [f"RTP probe to {res.target}: profile {p['name']} ({p['kbps']} kbps, {p['packet_bytes']} B, "
           f"{p['pps']} pkt/s), {d['sent']} packets sent, {d['answered']} answered",
           table(["direction", "packets", "lost", "loss %", "jitter ms", "max jitter ms", "reordered", "MOS"], rows),
           f"RTT ms: mean {fmt(d['rtt_ms']['mean'])}  median {fmt(d['rtt_ms']['median'])}  "
           f"p95 {fmt(d['rtt_ms']['p95'])}  max {fmt(d['rtt_ms']['max'])}",
           "" if d["counts_from_reflector"] else
           "note: no final counts from the reflector; loss split between directions is approximate",
           checks_table(res.checks),
           f"verdict: {'PASS' if res.passed else 'FAIL'}"]
    return "\n".join(x for x in out if x != "")
