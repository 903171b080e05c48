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
   SRD p99 under 200 ms; once with one TLS connection per call (room systems) and once with 50
   calls per connection, to show what the handshakes cost, each on a fresh
   gateway. Target 500 calls/s.
   The UDP peer reference (SIPp -> gateway vs SIPp -> Kamailio) is bench_sip's.
2. ``concurrent``: 10, 100, 1000 calls (quick: 10, 100) in 10-party meetings,
   G.711 both ways, held together for ``PLATEAU_S``: failures, gateway CPU share
   of its core over the plateau, receive loss/jitter at the generator, median
   gateway MOS (target >= 4.2). The daemon exposes no mix tick duration: the
   generator's receive jitter of the mixed stream is the proxy here.
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
SETUP_RATES = (10, 20, 35, 50, 75, 100, 150, 200, 300, 400, 500, 650)
SRD_P99_LIMIT_MS = 200.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# py-spy, if installed outside the project venv (`pip install --target /tmp/pyspy py-spy`)
PYSPY = os.environ.get("VTCGW_PYSPY", "/tmp/pyspy/bin/py-spy")


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


def _failures(report: dict[str, Any]) -> int:
    sip = report["sip"]
    return (report["calls"] - sip["answered"]) + (sip["bye_ok"] < sip["answered"]) + report["stuck_calls"]


def setup_rate(gw: Gateway, meetings: list[str], quick: bool, per_conn: int) -> dict[str, Any]:
    steps = []
    best: dict[str, Any] | None = None
    rates = SETUP_RATES[:4] if quick else SETUP_RATES
    best_srd: dict[str, Any] | None = None
    for rate in rates:
        seconds = 2.0 if quick else 4.0
        calls = int(rate * seconds)
        load = os.getloadavg()[0]
        r = _load(gw, "--calls", str(calls), "--rate", str(rate), "--hold", "0.5", "--no-rtp",
                  "--meeting", ",".join(meetings), "--meeting-size", "10",
                  "--calls-per-connection", str(per_conn), timeout=120 + seconds)
        sip = r["sip"]
        step = {"offered_cps": rate, "answered_cps": r["answered_rate_cps"],
                "launched_cps": r["launch_rate_cps"], "calls": calls,
                "setup_with_connect_ms": r["setup_with_connect_ms"],
                "failed": _failures(r), "srd_ms": sip["srd_ms"], "sdd_ms": sip["sdd_ms"],
                "final_status": sip["final_status"], "ser": sip["ser"], "isa": sip["isa"],
                "handshake_ms": r["connections"]["handshake_ms"],
                "generator_cpu_s": r["generator_cpu_s"], "wall_s": r["wall_s"],
                "load_average_1m": load}
        steps.append(step)
        print(f"  setup {per_conn}/conn {rate}/s: {json.dumps(step)}", file=sys.stderr)
        srd_p99 = sip["srd_ms"]["p99"] or 0.0
        kept_up = (r["answered_rate_cps"] or 0) >= 0.9 * rate
        step["kept_up"] = kept_up
        if step["failed"] or not kept_up or srd_p99 > 10 * SRD_P99_LIMIT_MS:
            break
        best = step
        if srd_p99 <= SRD_P99_LIMIT_MS:
            best_srd = step
        time.sleep(2.0)
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
        "failed": last["failed"]}
    return out


def concurrent(gw: Gateway, meetings: list[str], n: int, idle_rss_kb: int,
               profile: bool = False) -> dict[str, Any]:
    ramp_cps = min(50.0, max(10.0, n / 5))
    ramp_s = n / ramp_cps
    hold = ramp_s + PLATEAU_S + 1.0
    result: dict[str, Any] = {}
    samples: dict[str, Any] = {}

    def sample() -> None:  # CPU over the plateau (every call up), RSS in the middle of it
        time.sleep(ramp_s + 3.0)
        c0, t0, (r0, w0) = gw.cpu_s(), time.monotonic(), gw.loop_thread_s()
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

    th = threading.Thread(target=sample)
    th.start()
    r = _load(gw, "--calls", str(n), "--rate", str(ramp_cps), "--hold", str(hold),
              "--meeting", ",".join(meetings), "--meeting-size", "10", "--sockets", "4",
              "--quality-log", str(gw.data / "quality.jsonl"), timeout=hold + ramp_s + 180)
    th.join()
    rx = r.get("rtp_received", {})
    q = r.get("gateway_quality", {})
    rss = samples.get("rss_kb", 0)
    result = {
        "calls": n, "ramp_cps": ramp_cps, "plateau_s": PLATEAU_S,
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
    }
    if (spy := samples.get("spy")) is not None:
        spy.wait(60)
        result["gateway_profile"] = _hot_frames(gw.data.parent / f"spy-{n}.txt")
    print(f"  concurrent {n}: {json.dumps(result)}", file=sys.stderr)
    return result


def run(quick: bool, parts: tuple[str, ...] = ("concurrent", "setup")) -> dict[str, Any]:
    sizes = (10, 100) if quick else (10, 100, 1000)
    out: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="vtcgw-bench-load-") as tmp:
        if "concurrent" in parts:
            _run_concurrent(out, Path(tmp), sizes)
        if "setup" in parts:
            _run_setup(out, Path(tmp), quick)
    out["setup_rate_udp_reference"] = "see the 'sip' benchmark (SIPp -> gateway vs Kamailio)"
    out["mix_tick"] = ("not exposed by the daemon: needs a tick-duration histogram "
                       "(Conference.tick wall time and lateness vs its 20 ms deadline) in /metrics")
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


def _run_setup(out: dict[str, Any], tmp: Path, quick: bool) -> None:
    if True:
        for per_conn in (1, 50):  # a fresh gateway for each: nothing left over from before
            data = tmp / f"setup-{per_conn}" / "data"
            meetings = _meetings(data, 100)
            gw = Gateway(data)
            try:
                time.sleep(1.0)
                out[f"setup_rate_tls_{per_conn}_calls_per_connection"] = setup_rate(
                    gw, meetings, quick, per_conn)
            finally:
                gw.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=["concurrent", "setup"],
                   default=["concurrent", "setup"])
    a = p.parse_args(argv)
    print(json.dumps(run(a.quick, tuple(a.only)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
