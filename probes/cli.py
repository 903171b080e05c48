"""`vtcprobe`: probes a network engineer runs to prove a site's path to the gateway.

    vtcprobe ports HOST [--reflector-port P --token T]   TCP 5061/1720, TLS policy, UDP media ranges
    vtcprobe rtp HOST[:PORT] --token T [--profile audio]  synthetic RTP both ways via the reflector
    vtcprobe call 'sip:ID@HOST;transport=tls'             a real SIP call through pjsua2
    vtcprobe pcap FILE [--plot out.png]                   every RTP stream of a capture
    vtcprobe report RUN.json ... -o report.html           one HTML page from runs' JSON

Every subcommand prints a table, or JSON with --json (to stdout, or to --json FILE).
Exit status: 0 every check passed, 1 a threshold failed, 2 usage error or the probe
could not run (one line on stderr). A progress bar goes to stderr on a terminal.
The reflector token may come from $VTCPROBE_TOKEN instead of --token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, NoReturn

from probes.common import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, ProbeError, ProbeResult, Progress


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: {message}\n")


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit() or not 1 <= int(lo) <= int(hi) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW-HIGH")
    return int(lo), int(hi)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vtcprobe", description="path probes for the vtcgw gateway")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to stdout, or to FILE")

    sp = sub.add_parser("ports", help="TCP signalling ports, TLS policy, UDP media ranges")
    sp.add_argument("host")
    sp.add_argument("--sip-tls-port", type=int, default=5061)
    sp.add_argument("--h323-port", type=int, default=1720)
    sp.add_argument("--sip-tcp-port", type=int, nargs="?", const=5060, default=None,
                    help="also check SIP over TCP (default port 5060)")
    sp.add_argument("--server-name", help="name to check the certificate against (default HOST)")
    sp.add_argument("--ca-file", help="CA bundle for the trust check (default: system store)")
    sp.add_argument("--min-cert-days", type=int, default=14)
    sp.add_argument("--timeout", type=_positive, default=3.0)
    sp.add_argument("--reflector-port", type=int, help="the gateway's reflector_port: test UDP media ranges")
    sp.add_argument("--token", default=os.environ.get("VTCPROBE_TOKEN"))
    sp.add_argument("--media-range", type=_range, action="append", metavar="LOW-HIGH",
                    help="SIP media range (default 10000-60000); repeat for more")
    sp.add_argument("--h323-media-range", type=_range, default=(5100, 6200), metavar="LOW-HIGH")
    sp.add_argument("--no-h323-media", action="store_true")
    sp.add_argument("--samples", type=int, default=8, help="ports sampled per range (max 32)")
    sp.add_argument("--seed", type=int)
    common(sp)

    sp = sub.add_parser("rtp", help="synthetic RTP through the gateway's reflector, both directions")
    sp.add_argument("target", help="HOST or HOST:PORT of the reflector")
    sp.add_argument("--port", type=int, help="reflector port (if not in TARGET)")
    sp.add_argument("--token", default=os.environ.get("VTCPROBE_TOKEN"))
    sp.add_argument("--profile", default="audio", help="audio, video, video-hd or screen")
    sp.add_argument("--rate-kbps", type=_positive, help="custom bit rate (RTP bytes)")
    sp.add_argument("--packet-size", type=int, help="custom RTP packet size in bytes")
    sp.add_argument("--duration", type=_positive, default=10.0, help="seconds (default 10)")
    sp.add_argument("--max-loss", type=float, help="%% per direction (profile default)")
    sp.add_argument("--max-jitter-ms", type=float)
    sp.add_argument("--max-rtt-ms", type=float)
    sp.add_argument("--min-mos", type=float)
    common(sp)

    sp = sub.add_parser("call", help="a real SIP call through pjsua2")
    sp.add_argument("uri", help="e.g. 'sip:1234567890@gw.example.com;transport=tls'")
    sp.add_argument("--duration", type=_positive, default=10.0, help="seconds to stay in the call")
    sp.add_argument("--meeting-id", help="key this meeting ID (then #) after --dtmf-at seconds")
    sp.add_argument("--passcode", help="key this passcode (then #) after the meeting ID")
    sp.add_argument("--dtmf-at", type=float, default=2.0)
    sp.add_argument("--dtmf-method", choices=("rfc4733", "info"), default="rfc4733")
    sp.add_argument("--capture", choices=("auto", "on", "off"), default="auto",
                    help="capture the call's RTP with dumpcap for our own figures")
    sp.add_argument("--max-loss", type=float, default=1.0)
    sp.add_argument("--max-jitter-ms", type=float, default=30.0)
    sp.add_argument("--min-mos", type=float, default=3.6)
    sp.add_argument("--no-expect-audio", action="store_true", help="do not fail when nothing was heard")
    sp.add_argument("--keep", metavar="DIR", help="keep tone, recording and capture in DIR")
    common(sp)

    sp = sub.add_parser("pcap", help="every RTP stream of a pcap/pcapng file")
    sp.add_argument("file")
    sp.add_argument("--clock-rate", action="append", default=[], metavar="PT=RATE")
    sp.add_argument("--plot", metavar="OUT.png", help="jitter and loss over time per stream")
    sp.add_argument("--min-packets", type=int, default=5)
    sp.add_argument("--max-loss", type=float, default=1.0)
    sp.add_argument("--max-jitter-ms", type=float, default=30.0)
    sp.add_argument("--min-mos", type=float, default=3.6)
    sp.add_argument("--series", action=argparse.BooleanOptionalAction, default=None,
                    help="time series in the JSON (default: on up to 20 streams)")
    common(sp)

    sp = sub.add_parser("report", help="one HTML page from probe runs' JSON")
    sp.add_argument("inputs", nargs="+", metavar="RUN.json")
    sp.add_argument("-o", "--output", default="vtcprobe-report.html")
    sp.add_argument("--title", default="vtcprobe report")
    return p


def _emit_json(dest: str, obj: Any) -> None:
    text = json.dumps(obj, indent=2)
    if dest == "-":
        print(text)
    else:
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def _finish(args: argparse.Namespace, res: ProbeResult, render: Any) -> int:
    if args.json:
        _emit_json(args.json, res.to_json())
        if args.json != "-":
            print(render(res))
    else:
        print(render(res))
    return res.exit_status


def _split_target(target: str, port: int | None) -> tuple[str, int]:
    host, p = target, port
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        if rest.startswith(":"):
            p = int(rest[1:])
    elif target.count(":") == 1:
        host, _, ps = target.partition(":")
        if not ps.isdigit():
            raise ProbeError(f"{target!r}: port must be a number")
        p = int(ps)
    if p is None:
        raise ProbeError("the reflector port is needed: HOST:PORT or --port (the gateway's reflector_port)")
    if not 1 <= p <= 65535:
        raise ProbeError(f"port {p} is not 1-65535")
    return host, p


async def _run(args: argparse.Namespace) -> int:
    if args.command == "ports":
        from probes import ports

        ranges: list[tuple[str, int, int]] = [("sip-media", lo, hi) for lo, hi in (args.media_range or [(10000, 60000)])]
        if not args.no_h323_media:
            ranges.append(("h323-media", *args.h323_media_range))
        opts = ports.PortsOptions(host=args.host, sip_tls_port=args.sip_tls_port, h323_port=args.h323_port,
                                  sip_tcp_port=args.sip_tcp_port, server_name=args.server_name,
                                  ca_file=args.ca_file, timeout_s=args.timeout, min_cert_days=args.min_cert_days,
                                  reflector_port=args.reflector_port, token=args.token,
                                  media_ranges=tuple(ranges), samples=args.samples, seed=args.seed)
        res = await ports.probe(opts, Progress("udp ports", 1.0))
        return _finish(args, res, ports.render)
    if args.command == "rtp":
        from probes import rtp

        host, port = _split_target(args.target, args.port)
        if not args.token:
            raise ProbeError("--token is needed (the gateway's reflector_token, or $VTCPROBE_TOKEN)")
        base = rtp.PROFILES.get(args.profile)
        if base is None:
            raise ProbeError(f"unknown profile {args.profile!r}: one of {', '.join(rtp.PROFILES)}")
        prof = rtp.custom_profile(base, kbps=args.rate_kbps, packet_bytes=args.packet_size)
        th = rtp.Thresholds(
            max_loss_pct=args.max_loss if args.max_loss is not None else prof.max_loss_pct,
            max_jitter_ms=args.max_jitter_ms if args.max_jitter_ms is not None else prof.max_jitter_ms,
            max_rtt_ms=args.max_rtt_ms if args.max_rtt_ms is not None else prof.max_rtt_ms,
            min_mos=args.min_mos if args.min_mos is not None else prof.min_mos)
        res = await rtp.probe(host, port, token=args.token, profile=prof, duration_s=args.duration,
                              thresholds=th, progress=Progress(f"rtp {prof.name}", args.duration))
        return _finish(args, res, rtp.render)
    if args.command == "call":
        from probes import call

        opts = call.CallOptions(uri=args.uri, duration_s=args.duration, meeting_id=args.meeting_id,
                                passcode=args.passcode, dtmf_at_s=args.dtmf_at, dtmf_method=args.dtmf_method,
                                capture=args.capture, max_loss_pct=args.max_loss,
                                max_jitter_ms=args.max_jitter_ms, min_mos=args.min_mos,
                                expect_audio=not args.no_expect_audio, keep_dir=args.keep)
        res = await call.probe(opts, Progress("call", args.duration + 5))
        return _finish(args, res, call.render)
    if args.command == "pcap":
        from probes import pcap

        rates = pcap.parse_clock_rates(args.clock_rate)
        series = True if args.plot else args.series
        streams = await asyncio.to_thread(
            pcap.analyse, args.file, clock_rates=rates, min_packets=args.min_packets, series=series,
            max_loss_pct=args.max_loss, max_jitter_ms=args.max_jitter_ms, min_mos=args.min_mos)
        if args.plot:
            pcap.plot_streams(streams, args.plot, title=os.path.basename(args.file))
        if args.json:
            _emit_json(args.json, streams)
        if not args.json or args.json != "-":
            print(pcap.render(args.file, streams))
        if not streams:
            return EXIT_FAIL
        return EXIT_PASS if all(s["verdict"] == "pass" for s in streams) else EXIT_FAIL
    if args.command == "report":
        from probes import report

        ok = report.write_report(args.inputs, args.output, title=args.title)
        print(f"wrote {args.output} ({'all passed' if ok else 'some checks failed'})")
        return EXIT_PASS if ok else EXIT_FAIL
    raise ProbeError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ProbeError as exc:
        print(f"vtcprobe: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vtcprobe: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback (VTCPROBE_DEBUG=1 shows it)
        if os.environ.get("VTCPROBE_DEBUG"):
            raise
        print(f"vtcprobe: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
