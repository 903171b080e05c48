"""SIP call set-up rate: SIPp uac -> gateway, against SIPp uac -> Kamailio -> SIPp uas.

    python -m benchmarks.bench_sip [--quick] [--out bench_sip.json]

What is measured (per transport, UDP and TCP):
- the highest offered rate (calls/s, stepped) at which every call succeeded: INVITE, 200,
  ACK, a short pause, BYE, 200 (SIPp's built-in ``uac`` scenario, SIPp SDP, no RTP sent);
- RFC 6076 section 4.2 Session Request Delay at that rate: INVITE sent -> 200 received as
  SIPp sees it (its response time 1), p50 and p99 from ``-trace_rtt``;
- the same load through Kamailio 5.6 as a transaction-stateful proxy (one worker, record-route)
  to a SIPp uas: the reference. ``ratio`` = gateway figure / Kamailio figure.

The gateway runs in its own process (uvloop, one event loop = one core) with the real media
plane: each call allocates and releases an audio leg (two UDP sockets) from a wide port range
with a short quarantine, so ports are never the bottleneck. ``run(quick)`` returns the dict it
prints; nothing here asserts a speed. ``gateway_signalling_only`` repeats the gateway run with a
stub media plane (no sockets bound per call) to show what the SIP layer alone costs.
A step "holds" when no call failed and at least 90% of the offered rate was carried.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


# ---- the gateway under test, as a child process ---------------------------------------------
class _AcceptAll:
    """A CallApplication that admits everything and does nothing else."""

    def admit(self, call: Any) -> Any:
        from gateway.calls import Admission

        return Admission.ACCEPT

    def call_connected(self, call: Any, control: Any) -> None:
        pass

    def digit(self, call_id: str, digit: str, source: Any) -> None:
        pass

    def call_ended(self, call_id: str, reason: str) -> None:
        pass


class _StubLeg:
    """A media leg that binds nothing: isolates the signalling cost (``media="none"``)."""

    def __init__(self, port: int) -> None:
        self.local_rtp_port, self.local_rtcp_port = port, port + 1
        self.on_dtmf = self.on_timeout = self.on_keyframe_request_fallback = None

    def configure(self, cfg: Any) -> None:
        pass

    def request_keyframe(self) -> None:
        pass

    def close(self) -> None:
        pass


class _StubPlane:
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def open_leg(self, call_id: str, kind: Any, pool: Any) -> _StubLeg:
        return _StubLeg(40000)


async def _serve(udp_port: int, tcp_port: int, media: str = "real") -> None:
    from gateway.rtp.plane import MediaPlane
    from gateway.rtp.ports import PortRange
    from gateway.sip.metrics import CountingMetrics
    from gateway.sip.service import SipService
    from gateway.sip.settings import SipSettings

    plane: Any = _StubPlane()
    if media == "real":
        plane = MediaPlane(
            PortRange(low=10000, high=59000),
            PortRange(low=59002, high=59200),
            "127.0.0.1",
            "127.0.0.1",
            quarantine_s=0.5,
        )
    await plane.start()
    metrics = CountingMetrics()
    settings = SipSettings(
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
        tls_port=None,
        udp_port=udp_port,
        tcp_port=tcp_port,
        rate_limit_per_source=None,
    )
    svc = SipService(settings, _AcceptAll(), plane, metrics=metrics)
    ports = await svc.start()
    from gateway.daemon import tune_runtime

    tune_runtime()  # as the daemon does once started
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: print(json.dumps(dict(metrics.counts)), flush=True)
    )
    await stop.wait()
    await svc.close()
    await plane.close()


# ---- helpers ----------------------------------------------------------------------------------
def _free(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _taskset(cpu: int) -> list[str]:
    return (
        ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _start_gateway(udp: int, tcp: int, media: str = "real") -> subprocess.Popen[bytes]:
    code = (
        "import asyncio, uvloop, benchmarks.bench_sip as b; "
        f"uvloop.run(b._serve({udp}, {tcp}, {media!r}))"
    )
    proc = subprocess.Popen(
        [*_taskset(1), sys.executable, "-c", code],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the bound ports: it is listening
    if not line:
        raise RuntimeError("gateway did not start")
    return proc


KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
memdbg=5
memlog=5
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:{ctl}")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        # SIPp's uac sends in-dialog requests straight to us without Route: on to the uas
        $du = "sip:127.0.0.1:{uas};transport={proto}";
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $du = "sip:127.0.0.1:{uas};transport={proto}";
    t_relay();
}}
"""


def _start_kamailio(tmp: Path, port: int, uas_port: int, proto: str) -> subprocess.Popen[bytes]:
    cfg = tmp / f"kamailio-{proto}.cfg"
    cfg.write_text(
        KAMAILIO_CFG.format(
            port=port,
            uas=uas_port,
            proto=proto,
            modules=KAMAILIO_MODULES,
            ctl=tmp / f"kamctl-{proto}",
        )
    )
    kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
    proc = subprocess.Popen(
        [
            *_taskset(1),
            kam,
            "-f",
            str(cfg),
            "-DD",
            "-E",
            "-m",
            "256",
            "-M",
            "16",
            "-P",
            str(tmp / f"kam-{proto}.pid"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait for the listener
        if kind == socket.SOCK_STREAM:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
                return proc
        else:
            time.sleep(0.5)
            return proc
        time.sleep(0.05)
    return proc


def _start_uas(tmp: Path, port: int, proto: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *_taskset(0),
            "sipp",
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(_free()),
            "-cp",
            str(_free()),
            "-t",
            "t1" if proto == "tcp" else "u1",
            "-nostdin",
        ],
        cwd=str(tmp),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sipp_load(
    tmp: Path, target: str, proto: str, rate: int, seconds: float, tag: str
) -> dict[str, Any]:
    """One SIPp uac run at ``rate`` calls/s for ``seconds``; returns counts and SRD percentiles."""
    calls = int(rate * seconds)
    run_dir = tmp / f"{tag}-{proto}-{rate}"
    run_dir.mkdir()
    args = [
        *_taskset(0),
        "sipp",
        target,
        "-sn",
        "uac",
        "-s",
        "1234567890",
        "-i",
        "127.0.0.1",
        "-p",
        str(_free(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)),
        "-mp",
        str(_free()),
        "-cp",
        str(_free()),
        "-t",
        "t1" if proto == "tcp" else "u1",
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-d",
        "50",
        "-l",
        str(max(100, rate)),
        "-timeout",
        f"{int(seconds + 30)}s",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_stat",
        "-nostdin",
        "-max_socket",
        "5000",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        args,
        cwd=str(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=seconds + 60,
        check=False,
    )
    elapsed = time.monotonic() - t0
    out = proc.stdout.decode("utf-8", "replace")
    ok = _stat(out, "Successful call")
    failed = _stat(out, "Failed call")
    rtts: list[float] = []
    for f in run_dir.glob("*_rtt.csv"):
        for line in f.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                with contextlib.suppress(ValueError):
                    rtts.append(float(parts[1]))  # Date_ms;response_time_ms;rtd_no
    retrans = sum(
        int(ln.split()[3])
        for ln in out.splitlines()
        if ("---------->" in ln) and len(ln.split()) >= 4 and ln.split()[3].isdigit()
    )
    rtts.sort()
    return {
        "offered_cps": rate,
        "calls": calls,
        "successful": ok,
        "failed": failed if failed >= 0 else calls - ok,
        "achieved_cps": _call_rate(out) or round(ok / max(elapsed, 1e-9), 1),
        "retransmissions": retrans,
        "srd_p50_ms": round(_pct(rtts, 50), 3) if rtts else None,
        "srd_p99_ms": round(_pct(rtts, 99), 3) if rtts else None,
        "sipp_rc": proc.returncode,
    }


def _call_rate(out: str) -> float:
    """SIPp's cumulative "Call Rate" (calls/s over the run, without its start-up)."""
    rate = 0.0
    for line in out.splitlines():
        if line.strip().startswith("Call Rate"):
            cells = [c.strip() for c in line.split("|")]
            with contextlib.suppress(ValueError, IndexError):
                rate = float(cells[2].split()[0])
    return rate


def _stat(out: str, name: str) -> int:
    for line in out.splitlines():
        if line.strip().startswith(name):
            cells = [c.strip() for c in line.split("|")]
            with contextlib.suppress(ValueError, IndexError):
                return int(cells[2])
    return -1


def _pct(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]
        if p < 100
        else values[-1]
    )


def _ramp(
    tmp: Path,
    target: str,
    proto: str,
    rates: list[int],
    seconds: float,
    tag: str,
    restart: Any = None,
) -> dict[str, Any]:
    steps = []
    best: dict[str, Any] | None = None
    if restart is not None:
        restart()
    _sipp_load(tmp, target, proto, 50, 1.0, f"{tag}-warmup")  # first calls pay imports/allocation
    for rate in rates:
        held = False
        for _attempt in range(2):  # one retry: the machine is shared, a blip is not a ceiling
            if restart is not None:
                restart()
            r = _sipp_load(tmp, target, proto, rate, seconds, f"{tag}-{_attempt}")
            steps.append(r)
            # a step holds when every call succeeded and the offered rate was really carried
            held = r["failed"] == 0 and r["successful"] == r["calls"] and r["achieved_cps"] >= 0.9 * rate
            if held:
                best = r
                break
        if not held:
            break
    return {"best": best, "steps": steps}


def run(quick: bool = False) -> dict[str, Any]:
    full = [100, 200, 300, 400, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
    rates = [100, 250, 500, 1000] if quick else full
    seconds = 2.0 if quick else 3.0
    result: dict[str, Any] = {
        "quick": quick,
        "seconds_per_step": seconds,
        "cpus": os.cpu_count(),
        "pinned": bool(_taskset(0)),
        "loadavg_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_sip_") as tmpdir:
        tmp = Path(tmpdir)
        for proto in ("udp", "tcp"):
            entry: dict[str, Any] = {}
            for media, key in (("real", "gateway"), ("none", "gateway_signalling_only")):
                udp, tcp = _free(), _free(socket.SOCK_STREAM)
                gw = _start_gateway(udp, tcp, media)
                try:
                    port = udp if proto == "udp" else tcp
                    target = f"127.0.0.1:{port}"
                    entry[key] = _ramp(tmp, target, proto, rates, seconds, f"gw-{media}")
                finally:
                    _kill(gw)
            uas_port = _free(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
            kam_port = _free(socket.SOCK_STREAM)
            procs: list[subprocess.Popen[bytes]] = []

            def restart_uas(procs: list = procs, uas_port: int = uas_port, proto: str = proto) -> None:
                # a fresh uas per step (INTEROP.md gotcha 4)
                while procs:
                    _kill(procs.pop())
                procs.append(_start_uas(tmp, uas_port, proto))
                time.sleep(0.3)

            kam = _start_kamailio(tmp, kam_port, uas_port, proto)
            try:
                entry["kamailio"] = _ramp(
                    tmp, f"127.0.0.1:{kam_port}", proto, rates, seconds, "kam", restart=restart_uas
                )
            finally:
                _kill(kam)
                for p in procs:
                    _kill(p)
            k = entry["kamailio"]["best"]
            for key in ("gateway", "gateway_signalling_only"):
                g = entry[key]["best"]
                if g and k:
                    entry[f"{key}_ratio_cps"] = round(g["achieved_cps"] / k["achieved_cps"], 3)
                    if g["srd_p50_ms"] and k["srd_p50_ms"]:  # SIPp reports whole milliseconds
                        entry[f"{key}_ratio_srd_p50"] = round(g["srd_p50_ms"] / k["srd_p50_ms"], 3)
                        entry[f"{key}_ratio_srd_p99"] = round(g["srd_p99_ms"] / k["srd_p99_ms"], 3)
            result[proto] = entry
    result["loadavg_after"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    res = run(args.quick)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
