"""`vtcprobe pcap FILE`: every RTP stream of a capture, as tshark's `rtp,streams` plus MOS.

Discovery and figures come from the quality engine (gateway.quality.pcap finds the
RTP streams without being told ports, learns dynamic payload types from SIP/SDP in
the capture or infers the clock; gateway.quality.engine computes RFC 3550 loss and
jitter and the E-model MOS). `--clock-rate PT=RATE` overrides a payload type's clock.

Differences from tshark that remain (QUALITY.md 3.4): loss follows RFC 3550 A.1/A.3
(highest sequence, probation) where tshark uses the last sequence seen; both agree on
clean and pure-loss streams.

For plots and the HTML report the streams can carry time series: the engine is fed
the capture in time bins and read after each (jitter at the end of the bin, packets
lost during the bin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gateway.quality.engine import QualityEngine
from gateway.quality.pcap import CaptureError, read_rtp
from probes.common import Check, Op, ProbeError, table

VIDEO_CLOCK = 90000
MAX_BINS = 120


def parse_clock_rates(items: list[str]) -> dict[int, int]:
    out = {}
    for item in items:
        pt, sep, rate = item.partition("=")
        if not sep or not pt.strip().isdigit() or not rate.strip().isdigit():
            raise ProbeError(f"--clock-rate wants PT=RATE (e.g. 96=90000), not {item!r}")
        if not 0 <= int(pt) <= 127 or int(rate) <= 0:
            raise ProbeError(f"--clock-rate {item!r}: payload type 0-127 and a positive rate")
        out[int(pt)] = int(rate)
    return out


def analyse(path: str | Path, *, clock_rates: dict[int, int] | None = None, min_packets: int = 5,
            series: bool | None = None, max_loss_pct: float = 1.0, max_jitter_ms: float = 30.0,
            min_mos: float = 3.6) -> list[dict[str, Any]]:
    """Streams of a capture as JSON-able dicts, each with its checks and verdict."""
    clock_rates = clock_rates or {}
    try:
        cap = read_rtp(path, min_packets=min_packets)
    except FileNotFoundError:
        raise ProbeError(f"{path}: no such file") from None
    except (CaptureError, OSError) as exc:
        raise ProbeError(f"{path}: {exc}") from None
    except (ValueError, IndexError) as exc:  # a truncated or corrupt file
        raise ProbeError(f"{path}: unreadable capture ({exc})") from None
    eng = QualityEngine()
    rates = []
    for info in cap.streams:
        rate = clock_rates.get(info.payload_type, info.clock_rate)
        rates.append(rate)
        eng.stream_id(info.index, clock_rate=rate or None, encoding=info.encoding or None)
    want_series = series if series is not None else len(cap.streams) <= 20
    per_stream: list[dict[str, list[float]]] = [{"t_s": [], "jitter_ms": [], "lost": [], "expected": []}
                                                for _ in cap.streams]
    if want_series and len(cap.rows):
        t = cap.rows["arrival_ns"]
        t0, t1 = int(t[0]), int(t[-1])
        span_s = max((t1 - t0) / 1e9, 1e-3)
        bin_s = max(1.0, float(np.ceil(span_s / MAX_BINS)))
        edges = t0 + (np.arange(1, int(np.ceil(span_s / bin_s)) + 1) * bin_s * 1e9).astype(np.int64)
        cuts = np.searchsorted(t, edges, side="right")
        cuts[-1] = len(t)
        start = 0
        seen = np.zeros(len(cap.streams), bool)
        for b, cut in enumerate(cuts.tolist()):
            if cut > start:
                chunk = slice(start, cut)
                eng.update(cap.rows[chunk], keys=cap.stream[chunk])
                seen[np.unique(cap.stream[chunk])] = True
                start = cut
            for i in np.flatnonzero(seen).tolist():
                s = eng.summary(i)
                d = per_stream[i]
                d["t_s"].append(round((b + 1) * bin_s, 3))
                d["jitter_ms"].append(round(s.jitter_us / 1000.0, 3))
                d["lost"].append(max(s.lost, 0))
                d["expected"].append(s.expected)
    else:
        eng.update(cap.rows, keys=cap.stream)
    t_first = int(cap.rows["arrival_ns"][0]) if len(cap.rows) else 0
    out = []
    for info, rate in zip(cap.streams, rates, strict=False):
        s = eng.summary(info.index)
        rows = cap.rows[cap.stream == info.index]
        lost_pct = 100.0 * s.lost / s.expected if s.expected else 0.0
        audio = bool(rate) and rate != VIDEO_CLOCK and info.encoding.upper() not in ("TELEPHONE-EVENT", "H264", "VP8")
        st: dict[str, Any] = {
            "ssrc": f"0x{info.ssrc:08X}",
            "ssrc_int": info.ssrc,
            "src": f"{info.src}:{info.sport}" if ":" not in info.src else f"[{info.src}]:{info.sport}",
            "dst": f"{info.dst}:{info.dport}" if ":" not in info.dst else f"[{info.dst}]:{info.dport}",
            "src_ip": info.src, "src_port": info.sport, "dst_ip": info.dst, "dst_port": info.dport,
            "payload_type": info.payload_type,
            "encoding": info.encoding or None,
            "clock_rate": rate,
            "clock_source": "option" if info.payload_type in clock_rates else info.clock_source,
            "start_s": round((int(rows["arrival_ns"][0]) - t_first) / 1e9, 6) if len(rows) else 0.0,
            "start_unix": round(int(rows["arrival_ns"][0]) / 1e9, 6) if len(rows) else None,
            "end_s": round((int(rows["arrival_ns"][-1]) - t_first) / 1e9, 6) if len(rows) else 0.0,
            "packets": s.packets,
            "expected": s.expected,
            "lost": s.lost,
            "lost_pct": round(lost_pct, 3),
            "duplicates": s.duplicates,
            "reordered": s.reordered,
            "max_delta_ms": round(s.max_delta_ms, 3),
            "jitter_ms": round(s.jitter_us / 1000.0, 3),
            "mean_jitter_ms": round(s.mean_jitter_ms, 3),
            "max_jitter_ms": round(s.max_jitter_ms, 3),
            "burst_ratio": round(s.burst_ratio, 3),
            "mos": round(s.mos.value, 2) if s.mos is not None and audio else None,
            "audio": audio,
        }
        checks = [Check(name="loss", value=st["lost_pct"], limit=max_loss_pct, unit="%")]
        if rate:
            checks.append(Check(name="max jitter", value=st["max_jitter_ms"], limit=max_jitter_ms, unit="ms"))
        if st["mos"] is not None:
            checks.append(Check(name="MOS", value=st["mos"], limit=min_mos, op=Op.MIN))
        st["checks"] = [c.to_json() for c in checks]
        st["verdict"] = "pass" if all(c.ok for c in checks) else "fail"
        if want_series:
            st["series"] = per_stream[info.index]
        out.append(st)
    return out


def render(path: str, streams: list[dict[str, Any]]) -> str:
    rows = [[s["src_ip"], s["src_port"], s["dst_ip"], s["dst_port"], s["ssrc"],
             s["encoding"] or f"PT{s['payload_type']}", s["packets"], f"{s['lost']} ({s['lost_pct']:.1f}%)",
             s["max_delta_ms"], s["max_jitter_ms"], s["mean_jitter_ms"], s["mos"],
             "PASS" if s["verdict"] == "pass" else "FAIL"] for s in streams]
    head = ["Src IP addr", "Port", "Dest IP addr", "Port", "SSRC", "Payload", "Pkts", "Lost",
            "Max Delta(ms)", "Max Jitter(ms)", "Mean Jitter(ms)", "MOS", "Result"]
    failed = sum(s["verdict"] != "pass" for s in streams)
    return "\n".join([f"RTP streams in {path}: {len(streams)}",
                      table(head, rows, right={1, 3, 6, 7, 8, 9, 10, 11}),
                      f"verdict: {'PASS' if not failed else f'FAIL ({failed} of {len(streams)} streams)'}"])


def plot_streams(streams: list[dict[str, Any]], out: str | Path, *, title: str = "") -> None:
    """Jitter and loss over time per stream (needs the streams' series)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for s in streams:
        ser = s.get("series")
        if not ser or not ser["t_s"]:
            continue
        label = f"{s['ssrc']} {s['src']}->{s['dst']}"
        ax1.plot(ser["t_s"], ser["jitter_ms"], label=label)
        lost = np.diff(np.asarray([0] + ser["lost"], float))
        exp = np.diff(np.asarray([0] + ser["expected"], float))
        pct = np.where(exp > 0, 100.0 * np.clip(lost, 0, None) / np.where(exp > 0, exp, 1), 0.0)
        ax2.plot(ser["t_s"], pct, label=label)
    ax1.set_ylabel("jitter (ms, RFC 3550)")
    ax2.set_ylabel("loss per interval (%)")
    ax2.set_xlabel("time (s)")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    if len(streams) <= 12:
        ax1.legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "RTP streams")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
