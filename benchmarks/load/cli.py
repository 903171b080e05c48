"""`vtcgw-load`: the load generator's command line.

Subcommands:

* ``rtp``  : N calls of 20 ms G.711 against an RTP echo target (SIPp -rtp_echo, an
  rtpengine loop, or ``vtcgw-load echo``) for S seconds; prints a JSON report.
  ``--self-echo`` starts a local echo process for the run and stops it by PID.
* ``echo`` : a batched UDP echo (recv_batch -> send_batch back to the source).
* ``calls``: N SIP calls (TLS, TCP or UDP), or H.323 calls (``--protocol h323``), to a gateway with G.711 both ways, meetings
  of K parties, optional keyed meeting IDs and moderator passcodes; reports RFC 6076
  figures (SRD, SDD, SER, SEER, ISA), the generator's receive statistics and the
  gateway's per-call MOS from its quality log. ``--json`` for the full report.
  All calls come from one address: raise the gateway's per-source limit for load
  (``VTCGW_SIP_RATE_LIMIT``, default 50 new requests/s, then 503).
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def echo(
    port: int, host: str = "127.0.0.1", seconds: float | None = None, ready: bool = False
) -> int:
    from gateway.rtp.udpbatch import BatchBuffers

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((host, port))
        s.setblocking(False)
        if ready:
            print(s.getsockname()[1], flush=True)
        b = BatchBuffers(64, 2048)
        poller = select.poll()
        poller.register(s.fileno(), select.POLLIN)
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            poller.poll(100)
            while n := b.recv(s.fileno()):
                b.send(s.fileno(), n)
                if n < b.capacity:
                    break
    return 0


def rtp(args: argparse.Namespace) -> int:
    from benchmarks.load.rtp_load import RtpLoadEngine
    from benchmarks.load.rtp_streams import CallMedia, Match

    proc = None
    try:
        if args.self_echo:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.load.cli", "echo", "--port", "0", "--ready"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            target = ("127.0.0.1", int(proc.stdout.readline()))
        else:
            target = args.target
        with RtpLoadEngine(sockets=args.sockets, match=Match.SSRC, seed=args.seed) as engine:
            # the first packets go out once every call is set up (setup takes a while
            # for thousands of calls; sending late from the start would skew lateness)
            start = time.monotonic_ns() + 200_000_000 + 400_000 * args.calls
            ramp_ns = int(args.ramp * 1e9)
            for i in range(args.calls):
                # spread first packets over one ptime so calls do not send in lockstep
                first = (
                    start
                    + (i * 20_000_000) // max(1, args.calls)
                    + (i * ramp_ns) // max(1, args.calls)
                )
                engine.start_call(
                    CallMedia(call_id=f"call-{i}", remote=target, encoding=args.codec),
                    socket_index=i % args.sockets,
                    first_send_ns=first,
                )
            cpu0 = time.process_time()
            engine.run(args.seconds + (start - time.monotonic_ns()) / 1e9)
            cpu = time.process_time() - cpu0
            engine.settle()
            report = engine.report()
            report["generator_cpu_s"] = round(cpu, 3)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    report["target"] = f"{target[0]}:{target[1]}"
    report["seconds"] = args.seconds
    print(json.dumps(report, indent=2))
    return 0


def calls(args: argparse.Namespace) -> int:
    import asyncio

    from benchmarks.load.calls import Dial, DigitPath, LoadPlan, run_calls
    from benchmarks.load.uac import SipTransport

    transport = SipTransport(args.transport)
    per_conn = args.calls_per_connection or (1 if transport.reliable else args.calls)
    meetings = tuple(m for m in args.meeting.split(",") if m) or ("meeting",)
    plan = LoadPlan(
        target=args.target,
        transport=transport,
        calls=args.calls,
        rate_cps=args.rate,
        hold_s=args.hold,
        meeting_ids=meetings,
        meeting_size=args.meeting_size,
        dial=Dial(args.dial),
        moderator_passcode=args.passcode or "",
        digit_path=DigitPath(args.dtmf),
        calls_per_connection=per_conn,
        rtp=not args.no_rtp,
        rtp_sockets=args.sockets,
        quality_log=args.quality_log,
        tls_resume=args.tls_resume,
        tls_legacy_rsa=args.tls_legacy_rsa,
    )
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    if args.protocol == "h323":
        from benchmarks.load.h323_calls import run_h323_calls

        report = runner(run_h323_calls(plan))
    else:
        report = runner(run_calls(plan))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
    return 0 if report["sip"]["ser"] == 1.0 else 1


def summary(report: dict) -> str:
    """A few human lines from a `calls` report."""
    sip = report["sip"]
    srd, sdd = sip["srd_ms"], sip["sdd_ms"]
    lines = [
        f"{report['calls']} calls over {report['transport']} to {report['target']}: "
        f"{sip['answered']} answered, status {sip['final_status']}",
        f"rate offered {report['offered_rate_cps']}/s launched {report['launch_rate_cps']}/s "
        f"answered {report['answered_rate_cps']}/s; connections {report['connections']['opened']} "
        f"(handshake ms p50 {report['connections'].get('handshake_ms', {}).get('p50')})",
        f"SER {sip['ser']}  SEER {sip['seer']}  ISA {sip['isa']}",
        f"SRD ms p50 {srd['p50']} p99 {srd['p99']} max {srd['max']}; "
        f"SDD ms p50 {sdd['p50']} p99 {sdd['p99']}",
    ]
    if rx := report.get("rtp_received"):
        lines.append(
            f"RTP received {rx['packets_received']} of sent {rx['packets_sent']}; loss % mean "
            f"{rx['loss_pct']['mean']:.3f}; jitter ms p50 {rx['jitter_ms']['p50']:.2f}; "
            f"MOS p50 {rx['mos']['p50']:.2f} min {rx['mos']['min']:.2f}"
        )
    if q := report.get("gateway_quality"):
        lines.append(f"gateway quality log: {q}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vtcgw-load", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rtp", help="G.711 calls against an RTP echo target")
    r.add_argument("--calls", type=_positive, default=100)
    r.add_argument("--seconds", type=float, default=10.0)
    r.add_argument(
        "--target", type=_hostport, default=("127.0.0.1", 6000), help="HOST:PORT of an RTP echo"
    )
    r.add_argument("--self-echo", action="store_true", help="start a local echo for the run")
    r.add_argument("--sockets", type=_positive, default=4)
    r.add_argument("--codec", choices=["PCMU", "PCMA"], default="PCMU")
    r.add_argument("--ramp", type=float, default=0.0, help="seconds over which calls start")
    r.add_argument("--seed", type=int, default=None)
    e = sub.add_parser("echo", help="a batched UDP echo")
    e.add_argument("--port", type=int, default=6000)
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--seconds", type=float, default=None)
    e.add_argument("--ready", action="store_true", help="print the bound port when ready")
    c = sub.add_parser("calls", help="SIP calls with G.711 media to a gateway")
    c.add_argument("--target", type=_hostport, required=True,
                   help="HOST:PORT of the gateway (its SIP port, or H.225.0 port with --protocol h323)")
    c.add_argument("--protocol", choices=["sip", "h323"], default="sip",
                   help="h323: Fast Start Setup over TCP, digits as H.245 UserInputIndication "
                        "(--transport and --dtmf do not apply)")
    c.add_argument("--transport", choices=["tls", "tcp", "udp"], default="tls")
    c.add_argument("--calls", type=_positive, default=10)
    c.add_argument("--rate", type=float, default=10.0, help="calls started per second")
    c.add_argument("--hold", type=float, default=5.0, help="seconds each answered call lasts")
    c.add_argument("--meeting", default="meeting",
                   help="meeting ID(s), comma-separated; calls fill them in turn")
    c.add_argument("--meeting-size", type=_positive, default=10, help="parties per meeting")
    c.add_argument("--dial", choices=["uri", "keypad"], default="uri",
                   help="meeting ID in the request-URI, or keyed by DTMF (SIP INFO)")
    c.add_argument("--dtmf", choices=["info", "rfc4733"], default="rfc4733",
                   help="how digits are keyed: RFC 4733 telephone-events or SIP INFO")
    c.add_argument("--passcode", default="", help="moderator passcode keyed by each meeting's first caller")
    c.add_argument("--calls-per-connection", type=int, default=0,
                   help="calls sharing one connection (default: TLS/TCP 1, UDP all)")
    c.add_argument("--sockets", type=_positive, default=4, help="RTP sockets")
    c.add_argument("--no-rtp", action="store_true", help="signalling only")
    c.add_argument("--quality-log", type=Path, default=None, help="the gateway's quality.jsonl")
    c.add_argument("--tls-resume", action="store_true",
                   help="offer the last TLS session on each new connection (session resumption, "
                        "as reconnecting devices do); default: every connection a full handshake")
    c.add_argument("--tls-legacy-rsa", action="store_true",
                   help="TLS 1.2 with ECDHE-RSA suites only, like room systems that cannot verify ECDSA")
    c.add_argument("--json", action="store_true", help="print the full JSON report")
    a = p.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the sender takes the GIL back from the stats thread fast
    if a.cmd == "echo":
        return echo(a.port, a.host, a.seconds, a.ready)
    if a.cmd == "calls":
        return calls(a)
    return rtp(a)


if __name__ == "__main__":
    sys.exit(main())
