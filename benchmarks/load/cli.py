"""`vtcgw-load`: the load generator's command line.

Subcommands so far (the SIP side comes later):

* ``rtp``  : N calls of 20 ms G.711 against an RTP echo target (SIPp -rtp_echo, an
  rtpengine loop, or ``vtcgw-load echo``) for S seconds; prints a JSON report.
  ``--self-echo`` starts a local echo process for the run and stops it by PID.
* ``echo`` : a batched UDP echo (recv_batch -> send_batch back to the source).
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
    a = p.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the sender takes the GIL back from the stats thread fast
    if a.cmd == "echo":
        return echo(a.port, a.host, a.seconds, a.ready)
    return rtp(a)


if __name__ == "__main__":
    sys.exit(main())
