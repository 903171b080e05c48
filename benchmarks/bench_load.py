"""Load and scale of the real daemon, driven by `vtcgw-load calls` (issue 9).

The gateway runs pinned to core 0 (``taskset -c 0``), the load generator to core 1,
each its own process (the machine is shared: the event loop thread's run-queue
wait from /proc/<pid>/task/<pid>/schedstat shows how much CPU others took from the
gateway's core during a measurement); figures come from the generator's JSON report (RFC 6076
SRD/SDD/SER/SEER/ISA, receive loss/jitter/MOS), the gateway's quality log
(per-call MOS it measured) and /proc/<gateway pid> (CPU from utime+stime deltas,
VmRSS).

1. ``setup_rate``: short TLS calls (INVITE/200/ACK, 0.5 s hold, BYE; signalling
   only) at rising offered rates until a call fails or the gateway no longer
   keeps up (calls answered per second, connection set-up included, below 90 % of
   the offered rate: the generator's launch rate alone would hide a TLS accept
   queue); reports the highest such rate with zero failures and the highest with
   SRD p99 under 200 ms; each variant of ``SETUP_VARIANTS`` on a fresh gateway: RSA-only
   vs RSA+ECDSA certificates, full vs resumed handshakes, a legacy TLS 1.2 ECDHE-RSA
   client, one TLS connection per call (room systems) vs 50 calls per connection. Each
   step reports both sides' CPU per call and share of a core (gateway from /proc, the
   generator from its report) and ``saturated_first`` says which side ran out first;
   ``tls_handshake_cost`` is the CPU of one handshake alone (server and client), free
   of everything SIP does. Target 500 calls/s.
   The UDP peer reference (SIPp -> gateway vs SIPp -> Kamailio) is bench_sip's.
2. ``concurrent``: 10, 100, 1000 calls (quick: 10, 100) in 10-party meetings,
   G.711 both ways, held together for ``PLATEAU_S``: failures, gateway CPU share
   of its core over the plateau, receive loss/jitter at the generator, median
   gateway MOS (target >= 4.2), and the mix tick duration and lateness from the
   daemon's /metrics histograms (target p99 under 10 ms). ``VTCGW_NO_MIX_ENGINE=1``
   in the environment measures the per-meeting mix path instead of the shared engine.
   ``concurrent_h323``: 100 H.323 calls (Fast Start over TCP) into the same meetings,
   the same figures, on the same gateway after the SIP steps.
3. ``memory``: gateway VmRSS idle and on each plateau; KB per call against idle and
   between steps (target < 200 KB per active audio call).

    python -m benchmarks.bench_load [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
PLATEAU_S = 20.0
SETUP_RATES = (10, 20, 35, 50, 75, 100, 150, 200, 300, 400, 500, 650, 800, 1000)
SRD_P99_LIMIT_MS = 200.0
SETUP_REFERENCE_CPS = 50  # setup-rate variants' per-call CPU is compared at this offered rate
CLK_TCK = os.sysconf("SC_CLK_TCK")
# py-spy (a test extra): VTCGW_PYSPY, else on PATH, else beside this Python
PYSPY = os.environ.get("VTCGW_PYSPY") or shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the gateway with py-spy for `seconds` (None when py-spy is not there)."""
    if not os.access(PYSPY, os.X_OK):
        return None
    return subprocess.Popen([PYSPY, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw",
                             "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _hot_frames(raw: Path, top: int = 12) -> dict[str, Any]:
    """Share of busy samples under each gateway/ frame (inclusive) and the top self frames."""
    total, incl, own = 0, {}, {}
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            if "gateway/" in f and "gateway/cli.py" not in f and "gateway/daemon.py" not in f:
                incl[f] = incl.get(f, 0) + k

    def pct(d: dict[str, int]) -> dict[str, float]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return {f: round(100 * k / total, 1) for f, k in best}

    return {"busy_samples": total, "inclusive_pct": pct(incl), "self_pct": pct(own)}


def _taskset(cpu: int) -> list[str]:
    ok = shutil.which("taskset") and (os.cpu_count() or 1) > cpu
    return ["taskset", "-c", str(cpu)] if ok else []


def _meetings(data: Path, count: int) -> list[str]:
    """Import `count` unmoderated meetings with fixed 10-digit IDs."""
    ids = [f"47{i:08d}" for i in range(1, count + 1)]
    data.parent.mkdir(parents=True, exist_ok=True)
    path = data.parent / "meetings.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meeting_id", "title", "host", "moderated", "region", "host_ids", "passcode_hash"])
        for m in ids:
            w.writerow([m, "load", "", "false", "", "", ""])
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "import", str(path),
                    "--data-dir", str(data)], cwd=ROOT, check=True, capture_output=True)
    return ids


class Gateway:
    """The daemon on ephemeral ports, pinned to core 0; stopped by PID."""

    def __init__(self, data: Path, quality_interval_s: float = 2.0) -> None:
        self.data = data
        self.log = data.parent / "daemon.log"
        cmd = [*_taskset(0), sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data),
               "--bind-host", "127.0.0.1", "--sip-tls-port", "0", "--sip-tcp-port", "0",
               "--sip-udp-port", "0", "--h323-port", "0", "--api-port", "0", "--api-token", TOKEN,
               "--media-range", "10000-59999", "--h323-media-range", "60000-60999",
               "--log-format", "json", "--log-level", "warning", "--drain-s", "1"]
        # every load call comes from 127.0.0.1: lift the per-source limit (default 50 new
        # requests/s, then 503) so that the gateway itself is what is measured
        env = {**os.environ, "VTCGW_QUALITY_INTERVAL_S": str(quality_interval_s),
               "VTCGW_SIP_RATE_LIMIT": "100000"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log.open("wb"),
                                     env=env, cwd=ROOT)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"daemon not ready: {self.log.read_text()[-2000:]}")
        self.ports = {k: v for k, v in json.loads(line).items() if isinstance(v, int) and k != "pid"}
        self.pid = self.proc.pid

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def loop_thread_s(self) -> tuple[float, float]:
        """(on-CPU, waiting for a CPU) seconds of the main (event loop) thread: the wait shows
        how much other processes on the gateway's core took from it."""
        run_ns, wait_ns, _ = Path(f"/proc/{self.pid}/task/{self.pid}/schedstat").read_text().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9

    def tick_histogram(self) -> dict[str, dict[float, float]] | None:
        """Cumulative buckets of the mix tick histograms from /metrics (le -> count); None
        when the daemon does not answer in time (an overloaded loop)."""
        try:
            return self._tick_histogram()
        except OSError:
            return None

    def _tick_histogram(self) -> dict[str, dict[float, float]]:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['api']}/metrics",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        out: dict[str, dict[float, float]] = {"ConferenceTickSeconds": {},
                                              "ConferenceTickLatenessSeconds": {}}
        with urllib.request.urlopen(req, timeout=20) as resp:
            for line in resp.read().decode().splitlines():
                for name, buckets in out.items():
                    if line.startswith(name + "_bucket{"):
                        le = line.split('le="', 1)[1].split('"', 1)[0]
                        buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        return out

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _load(gw: Gateway, *args: str, timeout: float) -> dict[str, Any]:
    """One `vtcgw-load calls` run on core 1; its JSON report."""
    cmd = [*_taskset(1), sys.executable, "-m", "benchmarks.load.cli", "calls", "--target",
           f"127.0.0.1:{gw.ports['sip_tls']}", "--json", *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if not out.stdout.strip():
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def _quantiles_ms(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """p50/p99 upper bounds (the histogram bucket they fall in, ms) of the ticks in between."""
    les = sorted(after)
    delta = [after[le] - before.get(le, 0.0) for le in les]
    total = delta[-1] if delta else 0.0
    out: dict[str, Any] = {"ticks": int(total)}
    for q in (0.5, 0.99):
        le = next((le for le, c in zip(les, delta, strict=True) if total and c >= q * total), None)
        out[f"p{int(q * 100)}_le_ms"] = None if le is None else (
            "inf" if le == float("inf") else round(le * 1000, 2))
    return out


def _failures(report: dict[str, Any]) -> int:
    sip = report["sip"]
    return (report["calls"] - sip["answered"]) + (sip["bye_ok"] < sip["answered"]) + report["stuck_calls"]


def setup_rate(gw: Gateway, meetings: list[str], quick: bool, per_conn: int,
               client_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Rising offered rates on one gateway until a call fails or it no longer keeps up.
    Each step also reports who was busy: the gateway's CPU over the generator's run
    (its process, from /proc) and the generator's own (its report), as a share of a core
    and in ms per call, so a ceiling set by the generator is not read as the gateway's."""
    steps = []
    best: dict[str, Any] | None = None
    rates = SETUP_RATES[:4] if quick else SETUP_RATES
    best_srd: dict[str, Any] | None = None
    for rate in rates:
        seconds = 2.0 if quick else 3.0
        calls = int(rate * seconds)
        load = os.getloadavg()[0]
        c0, (_, w0) = gw.cpu_s(), gw.loop_thread_s()
        r = _load(gw, "--calls", str(calls), "--rate", str(rate), "--hold", "0.5", "--no-rtp",
                  "--meeting", ",".join(meetings), "--meeting-size", "10",
                  "--calls-per-connection", str(per_conn), *client_args, timeout=120 + seconds)
        gw_cpu, wait = gw.cpu_s() - c0, gw.loop_thread_s()[1] - w0
        sip = r["sip"]
        wall = r["wall_s"] or 1e-9
        conns = r["connections"]
        step = {"offered_cps": rate, "answered_cps": r["answered_rate_cps"],
                "launched_cps": r["launch_rate_cps"], "calls": calls,
                "setup_with_connect_ms": r["setup_with_connect_ms"],
                "failed": _failures(r), "srd_ms": sip["srd_ms"], "sdd_ms": sip["sdd_ms"],
                "final_status": sip["final_status"], "ser": sip["ser"], "isa": sip["isa"],
                "handshake_ms": conns["handshake_ms"], "connections": conns["opened"],
                "tls_resumed": conns.get("resumed"), "tls": conns.get("tls"),
                # the gateway idles while the generator starts: its CPU over the generator's
                # run is its busy share during the calls
                "gateway_cpu_ms_per_call": round(1000 * gw_cpu / calls, 3),
                "gateway_cpu_share": round(gw_cpu / wall, 3),
                "gateway_loop_runqueue_wait_share": round(wait / wall, 3),
                "generator_cpu_ms_per_call": round(1000 * r["generator_cpu_s"] / calls, 3),
                "generator_cpu_share": round(r["generator_cpu_s"] / wall, 3),
                "generator_cpu_s": r["generator_cpu_s"], "wall_s": r["wall_s"],
                "load_average_1m": load}
        steps.append(step)
        print(f"  setup {per_conn}/conn {' '.join(client_args)} {rate}/s: {json.dumps(step)}", file=sys.stderr)
        srd_p99 = sip["srd_ms"]["p99"] or 0.0
        kept_up = (r["answered_rate_cps"] or 0) >= 0.9 * rate
        step["kept_up"] = kept_up
        if step["failed"] or not kept_up or srd_p99 > 10 * SRD_P99_LIMIT_MS:
            break
        best = step
        if srd_p99 <= SRD_P99_LIMIT_MS:
            best_srd = step
        time.sleep(1.0)
    out: dict[str, Any] = {"calls_per_connection": per_conn, "steps": steps}
    if best:
        out |= {"max_cps_zero_failures": best["answered_cps"], "srd_p50_ms": best["srd_ms"]["p50"],
                "srd_p99_ms": best["srd_ms"]["p99"], "target_cps": 500,
                "target_met": (best["answered_cps"] or 0) >= 500}
    if best_srd:
        out["max_cps_srd_p99_under_200ms"] = best_srd["answered_cps"]
    last = steps[-1]
    out["first_step_not_kept"] = None if best is last else {
        "offered_cps": last["offered_cps"], "answered_cps": last["answered_cps"],
        "failed": last["failed"], "gateway_cpu_share": last["gateway_cpu_share"],
        "generator_cpu_share": last["generator_cpu_share"]}
    # per-call CPU: fixed costs (idle ticks, the generator's start) weigh less as the rate
    # rises, so variants are compared at one rate every variant keeps up with
    # (SETUP_REFERENCE_CPS) and at the highest rate kept
    ref = next((st for st in steps if st["offered_cps"] == SETUP_REFERENCE_CPS and st.get("kept_up")), None)
    top = best or steps[-1]
    gw_ms, gen_ms = top["gateway_cpu_ms_per_call"], top["generator_cpu_ms_per_call"]
    out |= {f"gateway_cpu_ms_per_call_at_{SETUP_REFERENCE_CPS}cps": ref and ref["gateway_cpu_ms_per_call"],
            f"generator_cpu_ms_per_call_at_{SETUP_REFERENCE_CPS}cps": ref and ref["generator_cpu_ms_per_call"],
            "gateway_cpu_ms_per_call_at_max": gw_ms, "generator_cpu_ms_per_call_at_max": gen_ms,
            "gateway_cpu_share_at_max": top["gateway_cpu_share"],
            "generator_cpu_share_at_max": top["generator_cpu_share"],
            # others' processes on the gateway's core: its event loop waited this share of the time
            "gateway_runqueue_wait_share_at_max": top["gateway_loop_runqueue_wait_share"],
            # one core each: the rate at which each would be saturated by its own per-call cost
            "gateway_core_bound_cps": round(1000 / gw_ms, 1) if gw_ms else None,
            "generator_core_bound_cps": round(1000 / gen_ms, 1) if gen_ms else None}
    out["saturated_first"] = ("generator" if out["generator_core_bound_cps"] and out["gateway_core_bound_cps"]
                              and out["generator_core_bound_cps"] < out["gateway_core_bound_cps"] else "gateway")
    return out


def concurrent(gw: Gateway, meetings: list[str], n: int, idle_rss_kb: int,
               profile: bool = False, protocol: str = "sip") -> dict[str, Any]:
    ramp_cps = min(50.0, max(10.0, n / 5))
    ramp_s = n / ramp_cps
    hold = ramp_s + PLATEAU_S + 1.0
    result: dict[str, Any] = {}
    samples: dict[str, Any] = {}

    def sample() -> None:  # CPU over the plateau (every call up), RSS in the middle of it
        time.sleep(ramp_s + 3.0)
        c0, t0, (r0, w0) = gw.cpu_s(), time.monotonic(), gw.loop_thread_s()
        h0 = gw.tick_histogram()
        if profile:
            samples["spy"] = _profile(gw.pid, PLATEAU_S - 6.0, gw.data.parent / f"spy-{n}.txt")
        time.sleep(PLATEAU_S / 2)
        samples["rss_kb"] = gw.rss_kb()
        time.sleep(PLATEAU_S / 2 - 3.0)
        dt = time.monotonic() - t0
        samples["cpu_share"] = (gw.cpu_s() - c0) / dt
        r1, w1 = gw.loop_thread_s()
        samples["loop_run"], samples["loop_wait"] = (r1 - r0) / dt, (w1 - w0) / dt
        samples["load"] = os.getloadavg()[0]
        h1 = gw.tick_histogram()
        if h0 is not None and h1 is not None:
            samples["tick"] = {k: _quantiles_ms(h0[k], h1[k]) for k in h1}
        else:
            samples["tick"] = {k: "no /metrics answer within 20 s" for k in
                               ("ConferenceTickSeconds", "ConferenceTickLatenessSeconds")}

    th = threading.Thread(target=sample)
    th.start()
    h323 = ("--protocol", "h323", "--target", f"127.0.0.1:{gw.ports['h323']}") if protocol == "h323" else ()
    r = _load(gw, *h323, "--calls", str(n), "--rate", str(ramp_cps), "--hold", str(hold),
              "--meeting", ",".join(meetings), "--meeting-size", "10", "--sockets", "4",
              "--quality-log", str(gw.data / "quality.jsonl"), timeout=hold + ramp_s + 180)
    th.join()
    rx = r.get("rtp_received", {})
    q = r.get("gateway_quality", {})
    rss = samples.get("rss_kb", 0)
    result = {
        "protocol": protocol, "calls": n, "ramp_cps": ramp_cps, "plateau_s": PLATEAU_S,
        "failed_calls": _failures(r), "ser": r["sip"]["ser"],
        "srd_ms_p99": r["sip"]["srd_ms"]["p99"],
        "gateway_cpu_pct_of_core": round(100 * samples.get("cpu_share", 0.0), 1),
        "gateway_loop_thread_on_cpu_pct": round(100 * samples.get("loop_run", 0.0), 1),
        "gateway_loop_thread_runqueue_wait_pct": round(100 * samples.get("loop_wait", 0.0), 1),
        "load_average_1m": samples.get("load"),
        "gateway_rss_mb": round(rss / 1024, 1),
        "rss_kb_per_call_vs_idle": round((rss - idle_rss_kb) / n, 1),
        "rx_loss_pct_mean": rx.get("loss_pct", {}).get("mean"),
        "rx_loss_pct_max": rx.get("loss_pct", {}).get("max"),
        "rx_jitter_ms_p50": rx.get("jitter_ms", {}).get("p50"),
        "rx_jitter_ms_p95": rx.get("jitter_ms", {}).get("p95"),
        "rx_mos_p50": rx.get("mos", {}).get("p50"),
        "rx_mos_min": rx.get("mos", {}).get("min"),
        "generator_send_lateness_us_p99": rx.get("send_lateness_us", {}).get("p99"),
        "generator_send_shortfall": rx.get("send_shortfall"),
        "gateway_mos_p50": q.get("p50"), "gateway_mos_min": q.get("min"),
        "gateway_mos_calls": q.get("calls_with_mos"),
        "mos_target_met": (q.get("p50") or 0) >= 4.2,
        "sip": r["sip"], "stuck_calls": r["stuck_calls"], "wall_s": r["wall_s"],
        "connections": r["connections"],
        "generator_cpu_s": r["generator_cpu_s"],
        # one observation per engine tick (all G.711 meetings mixed together) or, on the
        # per-meeting path (VTCGW_NO_MIX_ENGINE=1), one per meeting tick; bucket upper bounds
        "mix_tick_ms": samples.get("tick", {}).get("ConferenceTickSeconds"),
        "mix_tick_lateness_ms": samples.get("tick", {}).get("ConferenceTickLatenessSeconds"),
    }
    if (spy := samples.get("spy")) is not None:
        spy.wait(60)
        result["gateway_profile"] = _hot_frames(gw.data.parent / f"spy-{n}.txt")
    print(f"  concurrent {protocol} {n}: {json.dumps(result)}", file=sys.stderr)
    return result


def run(quick: bool, parts: tuple[str, ...] = ("concurrent", "setup"),
        sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    sizes = sizes or ((10, 100) if quick else (10, 100, 1000))
    out: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="vtcgw-bench-load-") as tmp:
        if "concurrent" in parts:
            _run_concurrent(out, Path(tmp), sizes)
        if "setup" in parts:
            _run_setup(out, Path(tmp), quick)
    out["setup_rate_udp_reference"] = "see the 'sip' benchmark (SIPp -> gateway vs Kamailio)"
    out["mix_tick"] = ("ConferenceTickSeconds / ConferenceTickLatenessSeconds from /metrics over "
                       "the plateau (bucket upper bounds): see each concurrent step's mix_tick_ms")
    out["load_average_at_end"] = os.getloadavg()
    return out


def _run_concurrent(out: dict[str, Any], tmp: Path, sizes: tuple[int, ...]) -> None:
    if True:
        data = tmp / "concurrent" / "data"
        meetings = _meetings(data, 100)
        gw = Gateway(data)
        try:
            time.sleep(1.0)
            idle_rss = gw.rss_kb()
            out["gateway_idle_rss_mb"] = round(idle_rss / 1024, 1)
            out["concurrent"] = [concurrent(gw, meetings, n, idle_rss, profile=n == sizes[-1])
                                 for n in sizes]
            # the same meetings over H.323 (Fast Start, H.245 digits): what a room system on
            # H.323 costs beside one on SIP/TLS, at the middle size
            out["concurrent_h323"] = concurrent(gw, meetings, min(100, sizes[-1]), idle_rss, protocol="h323")
        finally:
            gw.stop()
        c = out["concurrent"]
        steps = []
        for a, b in zip(c, c[1:], strict=False):
            db = (b["gateway_rss_mb"] - a["gateway_rss_mb"]) * 1024
            steps.append({"from": a["calls"], "to": b["calls"],
                          "rss_kb_per_added_call": round(db / (b["calls"] - a["calls"]), 1),
                          "cpu_pct_per_added_call": round(
                              (b["gateway_cpu_pct_of_core"] - a["gateway_cpu_pct_of_core"])
                              / (b["calls"] - a["calls"]), 3)})
        out["memory_cpu_growth"] = steps
        out["memory_target_kb_per_call"] = 200


# (label, gateway certificates, generator TLS options, calls per connection). "rsa": the
# data dir holds only the RSA pair (an install from before dual certificates: what every
# client got then); "dual": first start wrote both and this generator (OpenSSL, ECDSA
# capable) gets the ECDSA one; "legacy-rsa": TLS 1.2 ECDHE-RSA only, like old room
# systems, against the dual gateway. "resume": every new connection offers the last
# session ticket (devices that reconnect); without it each connection is a full handshake.
SETUP_VARIANTS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("rsa_full_1_per_conn", "rsa", (), 1),
    ("ecdsa_full_1_per_conn", "dual", (), 1),
    ("rsa_resumed_1_per_conn", "rsa", ("--tls-resume",), 1),
    ("ecdsa_resumed_1_per_conn", "dual", ("--tls-resume",), 1),
    ("legacy_rsa_tls12_full_1_per_conn", "dual", ("--tls-legacy-rsa",), 1),
    ("rsa_50_per_conn", "rsa", (), 50),
    ("ecdsa_50_per_conn", "dual", (), 50),
)
SETUP_VARIANTS_QUICK = ("rsa_full_1_per_conn", "ecdsa_full_1_per_conn", "ecdsa_resumed_1_per_conn",
                        "ecdsa_50_per_conn")


def _run_setup(out: dict[str, Any], tmp: Path, quick: bool) -> None:
    from gateway.tlsconf import ensure_self_signed

    results: dict[str, Any] = {}
    for label, certs, client_args, per_conn in SETUP_VARIANTS:
        if quick and label not in SETUP_VARIANTS_QUICK:
            continue
        data = tmp / f"setup-{label}" / "data"  # a fresh gateway for each: nothing left over
        meetings = _meetings(data, 100)
        if certs == "rsa":
            ensure_self_signed(data / "tls" / "cert.pem", data / "tls" / "key.pem")
        gw = Gateway(data)
        try:
            time.sleep(1.0)
            r = setup_rate(gw, meetings, quick, per_conn, client_args)
        finally:
            gw.stop()
        results[label] = {"gateway_certificates": certs, "generator_tls": list(client_args) or ["default"]} | r
    out["setup_rate_tls"] = results
    ref = f"_at_{SETUP_REFERENCE_CPS}cps"
    out["setup_rate_summary"] = {
        label: {k: r.get(k) for k in ("max_cps_zero_failures", "srd_p99_ms", "gateway_cpu_ms_per_call" + ref,
                                      "generator_cpu_ms_per_call" + ref, "gateway_cpu_ms_per_call_at_max",
                                      "gateway_cpu_share_at_max", "generator_cpu_share_at_max",
                                      "gateway_runqueue_wait_share_at_max", "gateway_core_bound_cps",
                                      "generator_core_bound_cps", "saturated_first")}
        | {"tls": r["steps"][0].get("tls"), "resumed_share": round(
            (r["steps"][0].get("tls_resumed") or 0) / max(1, r["steps"][0]["connections"]), 3)}
        for label, r in results.items()}
    print(f"  setup summary: {json.dumps(out['setup_rate_summary'], indent=1)}", file=sys.stderr)
    out["tls_handshake_cost"] = tls_handshake_cost(tmp, quick)


def tls_handshake_cost(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """Server and client CPU per TLS handshake alone (benchmarks.load.tls_handshakes: the
    gateway's TLS context on a uvloop server pinned to core 0, the client on core 1): RSA
    only vs RSA+ECDSA, full vs resumed, TLS 1.3 / 1.2 / legacy ECDHE-RSA clients."""
    from gateway.tlsconf import ensure_generated_pairs

    certs = tmp / "handshake-certs"
    ensure_generated_pairs(certs / "cert.pem", certs / "key.pem")
    n = "200" if quick else "1000"
    clients = (("tls13", ()), ("tls13_resumed", ("--resume",)), ("tls12", ("--tls12",)),
               ("tls12_resumed", ("--tls12", "--resume")), ("legacy_rsa_tls12", ("--legacy-rsa",)),
               ("legacy_rsa_tls12_resumed", ("--legacy-rsa", "--resume")))
    rows = []
    for server_certs in ("rsa", "dual"):
        srv = subprocess.Popen([*_taskset(0), sys.executable, "-m", "benchmarks.load.tls_handshakes", "serve",
                                str(certs), server_certs], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout is not None
            port = srv.stdout.readline().strip()
            for label, args in clients:
                r = subprocess.run([*_taskset(1), sys.executable, "-m", "benchmarks.load.tls_handshakes", "drive",
                                    port, "-n", n, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
                row = {"server_certs": server_certs, "client": label, **json.loads(r.stdout)}
                rows.append(row)
                print(f"  handshake {json.dumps(row)}", file=sys.stderr)
        finally:
            srv.kill()
            srv.wait()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=["concurrent", "setup"],
                   default=["concurrent", "setup"])
    p.add_argument("--sizes", type=int, nargs="+", help="concurrent call counts (default 10 100 [1000])")
    a = p.parse_args(argv)
    print(json.dumps(run(a.quick, tuple(a.only), tuple(a.sizes) if a.sizes else None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
