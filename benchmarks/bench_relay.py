"""Two-party RTP relay throughput: the gateway's media plane vs rtpengine, same blaster, same run.

Setup (INTEROP.md gotcha 5): many streams at realistic per-stream rates, not one flood.
- ``calls`` two-party calls (default 500), one direction each: a blaster sends 172-byte PCMU
  RTP from one socket to every call's A-leg; the relay forwards to the B-leg's SDP address,
  one sink socket. Per-stream rate = offered rate / calls (50-350 pps).
- The relay under test is pinned to CPU 0 (``taskset``), the blaster + sink (sendmmsg /
  recvmmsg through ``gateway.rtp.udpbatch``) to CPU 1.
- Offered rate steps up; each step reports sent, received, loss and the relay's CPU share
  (from /proc/PID/stat). The figure is the loss-free ceiling (loss <= 0.1 % and the blaster
  really sent >= 97 % of the offer), reported for both relays and as a ratio.
- Burst cost (robust on a shared machine): the relay is stopped (SIGSTOP), 40 packets are
  queued on every stream, it is resumed, and its CPU time until the sink goes quiet is divided
  by the packets delivered: microseconds of CPU per forwarded packet, and its inverse.
- Added latency (issue 9: p99 under 1 ms): after the sweep, at 10k pps (200 streams x 50
  pps) and at 80 % of our relay's loss-free ceiling (rtpengine too if that is within its own
  ceiling), every packet carries its send time (CLOCK_REALTIME ns taken just before its
  sendmmsg; 0.5 ms pacing, at most 16 packets per call) and the sink subtracts it from its
  kernel receive timestamp (SO_TIMESTAMPNS). Twinned packets are also sent, in the same
  sendmmsg just before, straight to a second sink socket: relayed receive time - twin's
  receive time is the packet's own time in the relay. The direct path (blaster -> sink),
  our relay and rtpengine run in turn at the same load, each relay once under the normal
  scheduler and once as SCHED_FIFO (a stand-in for a core of its own); see ``LATENCY_NOTE``.
  rtpengine is restarted before these runs: the sweep's overload steps make it drop its
  streams for good.
- rtpengine: userspace only (``--table=-1``), one thread, calls set up over the ng
  protocol (bencoded offer/answer over UDP).
- Our relay runs three ways, each in its own process: ``gateway`` (the default: every
  relayed leg on the relay hub, one epoll reader and one native call per wake-up,
  gateway.rtp.relayhub), ``gateway_per_leg`` (the same plane with ``VTCGW_NO_RELAY_HUB=1``:
  one recvmmsg batch reader per leg, the relay before the hub) and ``gateway_recvfrom`` (no
  batch I/O). Each relay process tunes the collector as the daemon does
  (gateway.daemon.tune_runtime). ``cpu_us_per_packet`` in every step and latency run is the
  relay's CPU time over the packets delivered.

    python -m benchmarks.bench_relay [--quick] [--relays gateway,gateway_per_leg,rtpengine]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gateway.rtp import udpbatch as ub

ROOT = Path(__file__).resolve().parent.parent
PKT = 172  # 12-byte header + 160 bytes of PCMU
RELAY_CPU, LOAD_CPU = 0, 1
# latency runs: payload bytes 12-19 carry the send time, 20-27 the packet's index in the step
STAMP = slice(12, 28)
LATENCY_SLOT = 0.0005  # the latency runs send every 0.5 ms: 5 packets per sendmmsg at 10k pps
LATENCY_ROWS = 16  # and at most 16 per sendmmsg, so one stamp is close to each packet's send
TWIN_PPS = 10_000  # twins (copies sent straight to the sink) per second, at most
LATENCY_PATHS = ("direct_no_relay", "gateway", "gateway_per_leg", "rtpengine")
# (name, batch I/O, relay hub)
GATEWAYS = (
    ("gateway", True, True),
    ("gateway_per_leg", True, False),
    ("gateway_recvfrom", False, False),
)
ALL_RELAYS = (*(g[0] for g in GATEWAYS), "rtpengine")
LATENCY_NOTE = (
    "one_way_us: sink kernel receive time (SO_TIMESTAMPNS) - the sender's CLOCK_REALTIME stamp "
    "taken just before the sendmmsg (<= 16 packets) that carried the packet; it includes the "
    "sender's own send time and any preemption of the sender on the shared load core. "
    "added_us.difference_of_percentiles = percentile(relayed one_way) - percentile(direct "
    "one_way), two different packet sets: a difference of percentiles, NOT the percentile of "
    "per-packet differences. added_us.per_packet_vs_twin IS a percentile of per-packet "
    "differences: each twinned packet's receive time minus that of its twin, a copy sent "
    "just before it in the same sendmmsg straight to a second sink socket (so it is off by "
    "one packet's loopback send, a few us, on the high side)."
)


# ----- bencode (rtpengine ng protocol) ------------------------------------------------------
def bencode(v) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdecode(data: bytes, pos: int = 0):
    c = data[pos : pos + 1]
    if c == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1
    if c == b"l" or c == b"d":
        pos += 1
        items = []
        while data[pos : pos + 1] != b"e":
            item, pos = bdecode(data, pos)
            items.append(item)
        if c == b"l":
            return items, pos + 1
        return {items[i].decode(): items[i + 1] for i in range(0, len(items), 2)}, pos + 1
    colon = data.index(b":", pos)
    n = int(data[pos:colon])
    return data[colon + 1 : colon + 1 + n], colon + 1 + n


def _sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


def _sdp_port(sdp: bytes) -> int:
    for line in sdp.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise ValueError("no m=audio in rtpengine's SDP")


def _terminate(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Rtpengine:
    def __init__(self, port_min: int, port_max: int) -> None:
        self.ng_port = _free_udp()
        exe = shutil.which("rtpengine") or "/usr/bin/rtpengine"
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(RELAY_CPU),
                exe,
                "--config-file=none",
                "--table=-1",
                "--interface=127.0.0.1",
                f"--listen-ng=127.0.0.1:{self.ng_port}",
                f"--port-min={port_min}",
                f"--port-max={port_max}",
                "--foreground",
                "--log-stderr",
                "--log-level=3",
                "--num-threads=1",
                "--timeout=3600",  # streams idle while other relays are measured stay up
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)
        self._n = 0
        for _ in range(50):
            try:
                if self.command({"command": "ping"}).get("result") == b"pong":
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rtpengine did not answer ng ping")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def command(self, msg: dict) -> dict:
        self._n += 1
        cookie = b"c%d" % self._n
        self.sock.sendto(cookie + b" " + bencode(msg), ("127.0.0.1", self.ng_port))
        while True:
            data = self.sock.recv(65535)
            if data.startswith(cookie + b" "):
                return bdecode(data[len(cookie) + 1 :])[0]

    def setup_calls(self, n: int, blaster_port: int, sink_port: int) -> list[int]:
        ports = []
        for i in range(n):
            cid, ft, tt = f"bench-{i}", f"a{i}", f"b{i}"
            r = self.command(
                {
                    "command": "offer",
                    "call-id": cid,
                    "from-tag": ft,
                    "sdp": _sdp(blaster_port),
                    "ICE": "remove",
                }
            )
            if r.get("result") != b"ok":
                raise RuntimeError(f"rtpengine offer failed: {r}")
            r = self.command(
                {
                    "command": "answer",
                    "call-id": cid,
                    "from-tag": ft,
                    "to-tag": tt,
                    "sdp": _sdp(sink_port),
                    "ICE": "remove",
                }
            )
            if r.get("result") != b"ok":
                raise RuntimeError(f"rtpengine answer failed: {r}")
            ports.append(_sdp_port(r["sdp"]))  # where A sends, to reach B
        return ports

    def stop(self) -> None:
        self.sock.close()
        _terminate(self.proc)


class GatewayRelay:
    """The media plane in its own process (uvloop), pinned to the relay CPU."""

    def __init__(
        self, calls: int, blaster_port: int, sink_port: int, low: int, batch: bool, hub: bool
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("VTCGW_NO_RELAY_HUB", None)
        if not hub:
            env["VTCGW_NO_RELAY_HUB"] = "1"
        # the process's own counters at exit (the hub's wake-ups: packets per wake-up)
        self.report_path = Path(f"/tmp/vtcgw-bench-relay-{os.getpid()}-{low}.json")
        env["VTCGW_RELAY_REPORT"] = str(self.report_path)
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(RELAY_CPU),
                sys.executable,
                "-m",
                "benchmarks.bench_relay",
                "--serve",
                str(calls),
                str(blaster_port),
                str(sink_port),
                str(low),
                str(int(batch)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("gateway relay process died during setup")
        info = json.loads(line)
        self.ports: list[int] = info["ports"]
        self.batch = info["batch"]
        self.hub = info["hub"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        _terminate(self.proc)

    def report(self) -> dict | None:
        """What the process counted (after stop), with the hub's packets per wake-up."""
        try:
            rep = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return None
        finally:
            self.report_path.unlink(missing_ok=True)
        hub = rep.get("hub")
        if hub and hub["wakeups"]:
            hub["packets_per_wakeup"] = round(hub["accepted"] / hub["wakeups"], 2)
        return rep


def serve(calls: int, blaster_port: int, sink_port: int, low: int, batch: int) -> None:
    import logging

    import structlog
    import uvloop

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    from gateway.rtp.plane import MediaPlane
    from gateway.rtp.ports import PortRange
    from gateway.rtp.types import Codec, LegConfig, MediaKind, Pool

    pcmu = Codec(payload_type=0, name="PCMU", clock_rate=8000)

    async def main() -> None:
        span = 4 * calls + 200
        plane = MediaPlane(
            PortRange(low=low, high=low + span),
            PortRange(low=low, high=low + span),
            "127.0.0.1",
            "127.0.0.1",
            media_timeout_s=3600,
            use_batch=bool(batch),
        )
        await plane.start()
        ports = []
        for i in range(calls):
            a = plane.open_leg(f"a{i}", MediaKind.AUDIO, Pool.SIP)
            b = plane.open_leg(f"b{i}", MediaKind.AUDIO, Pool.SIP)
            a.configure(
                LegConfig(
                    kind=MediaKind.AUDIO,
                    remote_rtp=("127.0.0.1", blaster_port),
                    remote_rtcp=None,
                    codecs=(pcmu,),
                )
            )
            b.configure(
                LegConfig(
                    kind=MediaKind.AUDIO,
                    remote_rtp=("127.0.0.1", sink_port),
                    remote_rtcp=None,
                    codecs=(pcmu,),
                )
            )
            plane.relay(a, b)
            ports.append(a.local_rtp_port)
        import numpy as np

        from gateway.quality.records import PACKET_DTYPE

        warm = np.zeros(4, PACKET_DTYPE)
        warm["seq"] = np.arange(4)
        plane._quality_pending(-1, warm, 8000, "PCMU")  # import-time work before measuring
        plane.quality_flush()
        plane.quality.summary(-1)
        from gateway.daemon import tune_runtime

        tune_runtime()  # as the daemon does once started
        hub = plane._relay_hub
        info = {"ports": ports, "batch": plane.use_batch, "hub": hub is not None}
        print(json.dumps(info), flush=True)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nobody reads the pipe after this line
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        report = os.environ.get("VTCGW_RELAY_REPORT")
        if report:
            legs = list(plane.legs.values())
            Path(report).write_text(
                json.dumps(
                    {
                        "rx_packets": sum(leg.session.rx_packets for leg in legs),
                        "tx_packets": sum(leg.session.tx_packets for leg in legs),
                        "send_failures": sum(leg.send_failures for leg in legs),
                        "stray": sum(leg.session.stray_dropped for leg in legs),
                        "malformed": sum(leg.session.malformed_dropped for leg in legs),
                        "hub": None
                        if hub is None
                        else {
                            "wakeups": hub.wakeups,
                            "calls": hub.calls,
                            "accepted": hub.accepted,
                            "fallback": hub.fallback,
                        },
                    }
                )
            )
        await plane.close()

    uvloop.run(main())


# ----- load generator ------------------------------------------------------------------------
def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux; need CAP_NET_ADMIN, else capped by rmem_max


def _big_buffer(sock: socket.socket, force: int, plain: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, 16 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, 16 << 20)


class Blaster:
    ROWS = 4096

    def __init__(self) -> None:
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        _big_buffer(self.tx, SO_SNDBUFFORCE, socket.SO_SNDBUF)
        self.tx.setblocking(False)
        self.rx = _sink_socket()
        self.twin = _sink_socket()  # latency runs: same-packet copies that skip the relay
        self.twin_dst = np.zeros(1, dtype=ub.ADDR_DTYPE)
        ub.set_addr(self.twin_dst, 0, ("127.0.0.1", self.twin.getsockname()[1]))
        self.out = ub.BatchBuffers(self.ROWS, PKT)
        self.pairs = ub.BatchBuffers(2 * LATENCY_ROWS, PKT)
        self.inb = ub.BatchBuffers(256, 2048)
        self.out.lengths[:] = PKT
        self.pairs.lengths[:] = PKT
        self.tag = 0
        # set by latency(): per drained batch, (send stamp, index) rows and kernel receive times
        self.trace: list[tuple[np.ndarray, np.ndarray]] | None = None
        self.twin_trace: list[tuple[np.ndarray, np.ndarray]] = []
        self.twin_every = 1  # streams i with i % twin_every == 0 get twins

    @property
    def tx_port(self) -> int:
        return self.tx.getsockname()[1]

    @property
    def rx_port(self) -> int:
        return self.rx.getsockname()[1]

    def drain(self) -> int:
        if self.trace is not None:
            self._drain(self.twin, self.twin_trace)
        return self._drain(self.rx, self.trace)

    def _drain(self, sock: socket.socket, trace: list | None) -> int:
        got = 0
        b = self.inb
        while True:
            n = ub.recv_batch(sock, b.buf, b.lengths, None, b.ts_ns, b.capacity)
            # PT 0 without marker (not keep-alives, not RTCP), and this step's SSRC tag only:
            # a relay that fell behind in an earlier step must not be credited to this one
            mine = (b.buf[:n, 1] == 0) & (b.buf[:n, 8] == self.tag)
            got += int(np.count_nonzero(mine))
            if trace is not None:
                trace.append((b.buf[:n, STAMP][mine].view("<i8"), b.ts_ns[:n][mine]))
            if n < b.capacity:
                return got

    def step(
        self, ports: list[int], rate: int, seconds: float, relay_pid: int, slot: float = 0.002
    ) -> dict:
        streams = len(ports)
        dst = np.zeros(streams, dtype=ub.ADDR_DTYPE)
        for i, p in enumerate(ports):
            ub.set_addr(dst, i, ("127.0.0.1", p))
        template = np.zeros((streams, PKT), dtype=np.uint8)
        template[:, 0] = 0x80
        template[:, 1] = 0
        self.tag = (self.tag + 1) & 0xFF
        ssrc = np.arange(streams, dtype=np.uint32) + (self.tag << 24)
        template[:, 8:12] = ssrc.astype(">u4").view(np.uint8).reshape(streams, 4)
        template[:, 12:] = 0xFF
        dst_rows = np.zeros(self.ROWS, dtype=ub.ADDR_DTYPE)
        self.drain()
        sent = received = 0
        g = 0
        cpu0 = _cpu_ticks(relay_pid)
        t0 = time.perf_counter()
        end = t0 + seconds
        next_t = t0
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if now < next_t:
                received += self.drain()
                time.sleep(max(0.0, min(next_t - now, 0.0005)))
                continue
            due = int((now - t0) * rate) - sent
            next_t += slot
            while due > 0:
                count = min(due, self.ROWS if self.trace is None else LATENCY_ROWS)
                idx = g + np.arange(count)
                stream = idx % streams
                seq = (idx // streams) & 0xFFFF
                ts = ((idx // streams) * 160).astype(np.uint32)
                buf = self.out.buf
                buf[:count] = template[stream]
                buf[:count, 2:4] = seq.astype(">u2").view(np.uint8).reshape(count, 2)
                buf[:count, 4:8] = ts.astype(">u4").view(np.uint8).reshape(count, 4)
                dst_rows[:count] = dst[stream]
                if self.trace is None:
                    n = ub.send_batch(self.tx, buf, self.out.lengths, dst_rows, count)
                else:
                    n = self._send_traced(idx, stream % self.twin_every == 0, dst_rows)
                g += n
                sent += n
                due -= n
                if n < count:
                    break  # socket buffer full: the blaster is the limit, not the relay
            received += self.drain()
        elapsed = time.perf_counter() - t0
        settle = time.perf_counter() + 1.0  # a relay that fell behind still delivers late
        while time.perf_counter() < settle:
            received += self.drain()
            time.sleep(0.01)
        cpu = (_cpu_ticks(relay_pid) - cpu0) / os.sysconf("SC_CLK_TCK") / elapsed
        loss = 1 - received / sent if sent else 1.0
        return {
            "offered_pps": rate,
            "sent_pps": round(sent / elapsed),
            "received": received,
            "sent": sent,
            "loss_pct": round(100 * loss, 3),
            "relay_cpu": round(cpu, 3),
            "pps_per_cpu_second": round(received / elapsed / cpu) if cpu > 0 else None,
            "cpu_us_per_packet": round(1e6 * cpu * elapsed / received, 2) if received else None,
        }

    def _send_traced(self, idx: np.ndarray, twinned: np.ndarray, dst_rows: np.ndarray) -> int:
        """Send rows 0..len(idx)-1 of ``out`` stamped, each twinned row preceded by its twin
        (same bytes, to the twin sink) in the same sendmmsg; returns the originals sent."""
        count = len(idx)
        order = np.repeat(np.arange(count), 1 + twinned)
        is_twin = np.r_[True, order[1:] != order[:-1]] & twinned[order]
        m = len(order)
        rows = self.out.buf[:count, STAMP].view("<i8")
        rows[:, 1] = idx
        rows[:, 0] = time.time_ns()  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
        self.pairs.buf[:m] = self.out.buf[order]
        dst = self.pairs.addrs[:m]
        dst[:] = dst_rows[order]
        dst[is_twin] = self.twin_dst[0]
        n = ub.send_batch(self.tx, self.pairs.buf, self.pairs.lengths, dst, m)
        return int(np.count_nonzero(~is_twin[:n]))

    def latency(self, ports: list[int], rate: int, seconds: float, relay_pid: int) -> dict:
        """One paced step of stamped packets (see the module doc), in microseconds:
        ``one_way``: sink kernel receive time - send stamp, every packet delivered;
        ``vs_twin``: per packet, its receive time - its twin's (sent just before it in the
        same sendmmsg, straight to a second sink socket), for the twinned streams."""
        self.trace, self.twin_trace = [], []
        self.twin_every = max(1, -(-rate // TWIN_PPS))
        try:
            r = self.step(ports, rate, seconds, relay_pid, slot=LATENCY_SLOT)
            got = _concat(self.trace)
            twins = _concat(self.twin_trace)
        finally:
            self.trace = None
        keys = ("offered_pps", "sent", "received", "loss_pct", "relay_cpu", "cpu_us_per_packet")
        out = {k: r[k] for k in keys}
        out |= {"streams": len(ports), "twinned_streams": len(ports[:: self.twin_every])}
        _, i, j = np.intersect1d(got[0][:, 1], twins[0][:, 1], return_indices=True)
        out["one_way_us"] = _percentiles(got[1] - got[0][:, 0])
        out["vs_twin_us"] = _percentiles(got[1][i] - twins[1][j])
        # the sender's pacing: gaps between its sendmmsg calls (a stalled sender sends a burst)
        gaps = _percentiles(np.diff(np.unique(np.r_[got[0][:, 0], twins[0][:, 0]])))
        out["sender_gap_us"] = {k: gaps.get(k) for k in ("p50", "p99", "max")}
        return out

    def burst_cost(self, ports: list[int], per_stream: int, pid: int) -> dict:
        """CPU cost per forwarded packet, independent of who else uses the relay's core:
        stop the relay, queue ``per_stream`` packets on every stream, resume it, and divide
        the CPU time it spends until the sink stops receiving by the packets delivered."""
        streams = len(ports)
        self.drain()
        self.tag = (self.tag + 1) & 0xFF
        count = streams * per_stream
        dst = np.zeros(streams, dtype=ub.ADDR_DTYPE)
        for i, p in enumerate(ports):
            ub.set_addr(dst, i, ("127.0.0.1", p))
        os.kill(pid, signal.SIGSTOP)
        try:
            sent = 0
            while sent < count:
                n = min(self.ROWS, count - sent)
                idx = sent + np.arange(n)
                stream = idx % streams
                seq = (idx // streams) & 0xFFFF
                buf = self.out.buf
                buf[:n, 0], buf[:n, 1] = 0x80, 0
                buf[:n, 2:4] = seq.astype(">u2").view(np.uint8).reshape(n, 2)
                buf[:n, 4:8] = (
                    (seq.astype(np.uint32) * 160).astype(">u4").view(np.uint8).reshape(n, 4)
                )
                ssrc = stream.astype(np.uint32) + (self.tag << 24)
                buf[:n, 8:12] = ssrc.astype(">u4").view(np.uint8).reshape(n, 4)
                buf[:n, 12:] = 0xFF
                rows = np.zeros(n, dtype=ub.ADDR_DTYPE)
                rows[:] = dst[stream]
                k = ub.send_batch(self.tx, buf, self.out.lengths, rows, n)
                sent += k
                if k < n:
                    time.sleep(0.001)  # our send buffer is full: let the kernel move it
            time.sleep(0.05)
            cpu0 = _cpu_ticks(pid)
        finally:
            os.kill(pid, signal.SIGCONT)
        # on a busy machine the resumed relay may wait for the CPU: allow 3 s for the first
        # packet, then stop after 1 s of silence
        received, quiet_since = 0, time.perf_counter() + 2.0
        while time.perf_counter() - quiet_since < 1.0 and received < sent:
            got = self.drain()
            if got:
                received += got
                quiet_since = time.perf_counter()
            else:
                time.sleep(0.002)
        cpu_s = (_cpu_ticks(pid) - cpu0) / os.sysconf("SC_CLK_TCK")
        return {
            "queued": sent,
            "delivered": received,
            "relay_cpu_s": round(cpu_s, 3),
            "us_per_packet": round(1e6 * cpu_s / received, 2) if received else None,
        }

    def close(self) -> None:
        self.tx.close()
        self.rx.close()
        self.twin.close()


def _sink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ub.enable_timestamps(sock)
    return sock


def _concat(trace: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(stamp, index) rows and receive times of a trace, as two arrays."""
    return (
        np.concatenate([t[0] for t in trace]) if trace else np.empty((0, 2), np.int64),
        np.concatenate([t[1] for t in trace]) if trace else np.empty(0, np.int64),
    )


def _percentiles(delays_ns: np.ndarray) -> dict:
    if not delays_ns.size:
        return {"samples": 0}
    p50, p99, p999 = np.percentile(delays_ns / 1e3, [50, 99, 99.9])
    return {
        "samples": int(delays_ns.size),
        "p50": round(float(p50), 1),
        "p99": round(float(p99), 1),
        "p99_9": round(float(p999), 1),
        "max": round(float(delays_ns.max() / 1e3), 1),
    }


def _summarize(steps: list[dict]) -> dict:
    ceiling = 0
    for r in steps:
        if r["loss_pct"] <= 0.1 and r["sent_pps"] >= 0.97 * r["offered_pps"]:
            ceiling = max(ceiling, r["offered_pps"])
    clean = [r for r in steps if r["loss_pct"] <= 0.1 and r["pps_per_cpu_second"]]
    # CPU efficiency is robust to other processes sharing the relay's core; the ceiling is not
    best_eff = max((r["pps_per_cpu_second"] for r in clean), default=None)
    return {
        "loss_free_ceiling_pps": ceiling,
        "best_loss_free_pps_per_cpu_second": best_eff,
        "steps": steps,
    }


def _added_latency(paths: dict[str, dict]) -> dict:
    """Each relay's added latency both ways (``LATENCY_NOTE``), and ours against rtpengine's."""
    out: dict = {"paths": paths}
    direct = paths["direct_no_relay"]["one_way_us"]
    keys = ("p50", "p99", "p99_9")
    for name, path in paths.items():
        one_way, twin = path["one_way_us"], path["vs_twin_us"]
        if name == "direct_no_relay" or "p99" not in one_way or "p99" not in direct:
            continue
        out[f"{name}_added_us"] = {
            "difference_of_percentiles": {k: round(one_way[k] - direct[k], 1) for k in keys},
            "per_packet_vs_twin": {k: twin.get(k) for k in keys},
        }
    re_ = out.get("rtpengine_added_us")
    for name in ("gateway", "gateway_per_leg"):
        gw = out.get(f"{name}_added_us")
        if gw and re_:
            out[f"ratio_{name}_to_rtpengine_added"] = {
                how: {k: _ratio(gw[how][k], re_[how][k]) for k in keys} for how in gw
            }
    # one line per relay: per-packet added latency (vs twin) and CPU per packet
    out["summary"] = {
        name: {
            **{k: out[f"{name}_added_us"]["per_packet_vs_twin"][k] for k in keys},
            "cpu_us_per_packet": paths[name].get("cpu_us_per_packet"),
            "loss_pct": paths[name].get("loss_pct"),
        }
        for name in paths
        if f"{name}_added_us" in out
    }
    gw = out.get("gateway_added_us")
    if gw and gw["per_packet_vs_twin"]["p99"] is not None:
        out["gateway_p99_added_under_1ms"] = gw["per_packet_vs_twin"]["p99"] < 1000
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _sched_fifo(pid: int, on: bool) -> None:
    """Every thread of pid to SCHED_FIFO priority 10 (on) or back to SCHED_OTHER."""
    policy, prio = (os.SCHED_FIFO, 10) if on else (os.SCHED_OTHER, 0)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(prio))
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


def latency(blaster: Blaster, relays: dict, rate: int, streams: int, seconds: float) -> dict:
    """Direct, our relay and rtpengine in turn at one paced load (see the module doc), twice:
    the relays under the normal scheduler, sharing their core with whatever else runs
    (``shared_cpu``), then as SCHED_FIFO (``relay_sched_fifo``: a stand-in for a core of their
    own; each relay is set back to SCHED_OTHER right after its run)."""
    out: dict = {"offered_pps": rate, "streams": streams}
    for mode in ("shared_cpu", "relay_sched_fifo"):
        paths = {}
        try:
            for name, (ports, pid) in relays.items():
                if name not in LATENCY_PATHS:
                    continue
                fifo = mode == "relay_sched_fifo" and name != "direct_no_relay"
                try:
                    if fifo:
                        _sched_fifo(pid, True)
                    paths[name] = blaster.latency(ports[:streams], rate, seconds, pid)
                finally:
                    if fifo:
                        _sched_fifo(pid, False)
        except PermissionError:
            out[mode] = {"skipped": "SCHED_FIFO needs CAP_SYS_NICE"}
            continue
        out[mode] = _added_latency(paths)
    return out


def run(quick: bool, only: tuple[str, ...] = ALL_RELAYS) -> dict:
    """All relays stay up; each offered rate is measured on each relay in turn, so the
    machine's background load hits them alike. A relay leaves the sweep after two lossy steps."""
    calls = 200 if quick else 500
    seconds = 1.0 if quick else 2.0
    rates = (
        [20_000, 60_000, 100_000]
        if quick
        else [25_000, 50_000, 75_000, 100_000, 125_000, 150_000, 175_000, 200_000]
    )
    load_before = os.getloadavg()
    mine = os.sched_getaffinity(0)
    if os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {LOAD_CPU})
    blaster = Blaster()
    out: dict = {
        "benchmark": "relay",
        "calls": calls,
        "packet_bytes": PKT,
        "step_seconds": seconds,
        "relay_cpu": RELAY_CPU,
        "load_cpu": LOAD_CPU,
        "load_average_before": load_before,
    }
    relays: dict[str, tuple[list[int], int]] = {
        "direct_no_relay": ([blaster.rx_port] * calls, os.getpid())
    }
    stoppers = []
    reports: dict[str, GatewayRelay] = {}
    try:
        span = 4 * calls + 400
        if "rtpengine" not in only or "gateway" not in only:
            raise ValueError("the run needs gateway and rtpengine (ceiling, ratios)")
        for i, (name, batch, hub) in enumerate(GATEWAYS):
            if name not in only:
                continue
            gw = GatewayRelay(
                calls, blaster.tx_port, blaster.rx_port, low=20000 + i * span, batch=batch,
                hub=hub,
            )  # fmt: skip
            stoppers.append(gw.stop)
            reports[name] = gw
            out[f"{name}_batch_io"] = gw.batch
            out[f"{name}_relay_hub"] = gw.hub
            relays[name] = (gw.ports, gw.pid)

        def fresh_rtpengine() -> Rtpengine:
            rte = Rtpengine(20000 + 3 * span, 20000 + 4 * span)
            stoppers.append(rte.stop)
            relays["rtpengine"] = (rte.setup_calls(calls, blaster.tx_port, blaster.rx_port), rte.pid)
            return rte

        rte = fresh_rtpengine()
        for _name, (ports, pid) in relays.items():  # warm-up: imports, first RTCP round
            blaster.step(ports, 5_000, 1.0 if quick else 4.0, pid)
        per_stream = 40  # below rtpengine's 50-queued-packets flood guard (gotcha 5)
        for name, (ports, pid) in relays.items():
            if name == "direct_no_relay":
                continue
            runs = [blaster.burst_cost(ports, per_stream, pid) for _ in range(2 if quick else 5)]
            costs = sorted(r["us_per_packet"] for r in runs if r["us_per_packet"])
            out[f"{name}_burst"] = {
                "runs": runs,
                "median_us_per_packet": costs[len(costs) // 2] if costs else None,
                "pps_per_core": round(1e6 / costs[len(costs) // 2]) if costs else None,
            }
        steps: dict[str, list[dict]] = {name: [] for name in relays}
        lossy = dict.fromkeys(relays, 0)
        for rate in rates:
            for name, (ports, pid) in relays.items():
                if lossy[name] >= 2:
                    continue
                r = blaster.step(ports, rate, seconds, pid)
                steps[name].append(r)
                ok = r["loss_pct"] <= 0.1 and r["sent_pps"] >= 0.97 * rate
                lossy[name] = 0 if ok else lossy[name] + 1
        for name in relays:
            out[name] = _summarize(steps[name])
        # an overloaded step makes rtpengine drop its streams for good (its flood guard; it
        # forwards nothing afterwards): the latency runs get a fresh one, warmed up
        stoppers.remove(rte.stop)
        rte.stop()
        rte = fresh_rtpengine()
        blaster.step(relays["rtpengine"][0], 5_000, 1.0, rte.pid)
        lat_s = 2.0 if quick else 5.0
        out["latency"] = {"note": LATENCY_NOTE}
        out["latency"]["sub_saturation"] = latency(blaster, relays, 10_000, 200, lat_s)
        high = int(round(0.8 * out["gateway"]["loss_free_ceiling_pps"], -3))
        if high > 10_000:
            # rtpengine only where it ran loss-free in the sweep: past that it drops the streams
            fits = high <= out["rtpengine"]["loss_free_ceiling_pps"]
            lat = latency(
                blaster, relays if fits else {k: v for k, v in relays.items() if k != "rtpengine"},
                high, calls, lat_s,
            )  # fmt: skip
            if not fits:
                lat["rtpengine_skipped"] = "offered rate above its loss-free ceiling in the sweep"
            out["latency"]["at_80pct_of_gateway_ceiling"] = lat
    finally:
        for stop in stoppers:
            stop()
        blaster.close()
        os.sched_setaffinity(0, mine)
        for name, gw in reports.items():
            out[f"{name}_process_counters"] = gw.report()
    r = out["rtpengine"]["loss_free_ceiling_pps"]
    re_eff = out["rtpengine"]["best_loss_free_pps_per_cpu_second"]
    ours = [n for n, _b, _h in GATEWAYS if n in out]
    for name in ours:
        g = out[name]["loss_free_ceiling_pps"]
        out[f"ratio_{name}_to_rtpengine_ceiling"] = round(g / r, 3) if r else None
        eff = out[name]["best_loss_free_pps_per_cpu_second"]
        out[f"ratio_{name}_to_rtpengine_per_cpu"] = (
            round(eff / re_eff, 3) if eff and re_eff else None
        )
    re_b = out["rtpengine_burst"]["pps_per_core"]
    for name in ours:
        g_b = out[f"{name}_burst"]["pps_per_core"]
        out[f"ratio_{name}_to_rtpengine_burst_pps_per_core"] = (
            round(g_b / re_b, 3) if g_b and re_b else None
        )
    out["load_average_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--relays",
        default=",".join(ALL_RELAYS),
        help="comma-separated subset of %(default)s (gateway and rtpengine are required)",
    )
    ap.add_argument(
        "--serve",
        nargs=5,
        type=int,
        metavar=("CALLS", "BLASTER", "SINK", "LOW", "BATCH"),
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    print(json.dumps(run(args.quick, tuple(args.relays.split(","))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
