"""Loss-free packet rate of a one-core UDP echo relay: native batches vs the alternatives.

Each relay runs in its own process pinned to CPU 0 and echoes every datagram back
to its source (what an RTP relay does per packet: receive, pick the destination,
send). A blaster process pinned to CPU 1 offers a fixed rate of 172-byte G.711-sized
datagrams from several connected sockets with `send_batch` (sendmmsg, so it is not
the bottleneck) and counts what comes back with `recv_batch`. For each relay the
offered rate is raised until packets go missing, then bisected; a rate is loss-free
when at most 0.01 % of the datagrams are lost (a lossy trial is repeated once, since
other processes share this machine). The relay's CPU time per packet at a fixed
10k packets/s, which every relay sustains, is reported too: it is steadier than the
ceiling on a shared machine.

Relays compared in the same run:
  native           recv_batch/send_batch from gateway._udpbatch in a poll() loop
  python_fallback  the pure-Python twins of the same functions, same loop
  native_reader    native batches driven by add_batch_reader on uvloop (the gateway's way)
  asyncio          a plain asyncio DatagramProtocol echo on the default loop (the peer)
  uvloop           the same DatagramProtocol on uvloop (the peer)

`run(quick)` returns a dict (also printed as JSON by `python -m benchmarks.bench_udpbatch`);
ratios are against the asyncio and uvloop relays measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PAYLOAD = 172  # 12-byte RTP header + 160 bytes of 20 ms G.711
RCVBUF = 1 << 20
LOSS_TOLERANCE = 1e-4
FIXED_RATE = 10_000  # every relay keeps up with this: the CPU cost per packet is compared here
MODES = ("native", "python_fallback", "native_reader", "asyncio", "uvloop")
ROOT = Path(__file__).resolve().parent.parent


def _pin(cpu: int) -> None:
    if cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def udp_drops(ports: set[int]) -> int:
    """The kernel's receive-drop counters (/proc/net/udp) summed over local ports."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) in ports:
            total += int(f[-1])
    return total


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- relay process


def _relay(mode: str, cpu: int) -> None:
    from gateway.rtp import udpbatch

    _pin(cpu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    print(sock.getsockname()[1], flush=True)

    if mode in ("native", "python_fallback"):
        impl = udpbatch.IMPLEMENTATIONS["native" if mode == "native" else "python"]
        recv, send = impl.recv_batch, impl.send_batch
        b = udpbatch.BatchBuffers(64, 2048)
        fd: Any = sock.fileno() if mode == "native" else sock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            poller.poll()
            while n := recv(fd, b.buf, b.lengths, b.addrs, None, 64):
                send(fd, b.buf, b.lengths, b.addrs, n)
                if n < 64:
                    break  # the queue is drained: skip the empty recvmmsg
    elif mode == "native_reader":
        import uvloop

        send = udpbatch.send_batch

        async def main() -> None:
            def echo(b: udpbatch.BatchBuffers, n: int) -> None:
                send(sock.fileno(), b.buf, b.lengths, b.addrs, n)

            udpbatch.add_batch_reader(
                asyncio.get_running_loop(), sock, echo, buffers=udpbatch.BatchBuffers(64, 2048)
            )
            await asyncio.Event().wait()

        uvloop.run(main())
    else:

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(data, addr)

        async def main() -> None:
            await asyncio.get_running_loop().create_datagram_endpoint(Echo, sock=sock)
            await asyncio.Event().wait()

        if mode == "uvloop":
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())


# --------------------------------------------------------------------------- blaster process


def _blast(port: int, rate: int, seconds: float, nsock: int, cpu: int) -> dict[str, Any]:
    from gateway.rtp.udpbatch import IMPLEMENTATIONS, BatchBuffers

    _pin(cpu)
    impl = IMPLEMENTATIONS["native"]
    socks = []
    for _ in range(nsock):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * RCVBUF)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    fds = [s.fileno() for s in socks]
    batch = 64
    tx = BatchBuffers(batch, PAYLOAD)
    tx.buf[:, 0] = 0x80
    tx.lengths[:] = PAYLOAD
    rx = BatchBuffers(batch, 2048)
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)

    def drain() -> int:
        got = 0
        for fd in fds:
            while n := impl.recv_batch(fd, rx.buf, rx.lengths, None, None, batch):
                got += n
        return got

    sent = received = 0
    i = 0
    start = time.perf_counter()
    while (now := time.perf_counter() - start) < seconds:
        due = int(rate * now) - sent
        while due > 0:
            k = min(due, batch)
            n = impl.send_batch(fds[i % nsock], tx.buf, tx.lengths, None, k)
            i += 1
            sent += n
            due -= n
            if n < k:
                break
        received += drain()
        poller.poll(1)
    elapsed = time.perf_counter() - start
    deadline = time.perf_counter() + 0.5
    while received < sent and time.perf_counter() < deadline:
        poller.poll(20)
        received += drain()
    sink_drops = udp_drops({s.getsockname()[1] for s in socks})
    for s in socks:
        s.close()
    return {
        "offered_pps": rate,
        "sent": sent,
        "received": received,
        "achieved_pps": round(sent / elapsed),
        "sink_drops": sink_drops,
    }


# --------------------------------------------------------------------------- driver


def _python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_udpbatch", *args]


def _trial(relay_pid: int, port: int, rate: int, seconds: float) -> dict[str, Any]:
    cpu0, drops0 = _cpu_seconds(relay_pid), udp_drops({port})
    out = subprocess.run(
        _python_cmd("blast", str(port), str(rate), str(seconds)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    res = json.loads(out)
    used = _cpu_seconds(relay_pid) - cpu0
    res["relay_cpu"] = round(used / seconds, 3)
    res["relay_us_per_packet"] = round(used / max(1, res["received"]) * 1e6, 2)
    res["relay_drops"] = udp_drops({port}) - drops0
    sent = max(1, res["sent"])
    res["loss"] = round(1 - res["received"] / sent, 6)
    # Where the loss happened decides whose limit this is: datagrams the relay's
    # socket dropped are the relay's; a blaster that could not keep its rate or
    # whose own sockets overflowed makes the trial a lower bound for the relay.
    res["relay_lossy"] = res["relay_drops"] > LOSS_TOLERANCE * sent or (
        res["loss"] > LOSS_TOLERANCE and res["sink_drops"] <= LOSS_TOLERANCE * sent
    )
    res["blaster_limited"] = not res["relay_lossy"] and (
        res["achieved_pps"] < 0.97 * rate or res["loss"] > LOSS_TOLERANCE
    )
    return res


def _retrying_trial(relay_pid: int, port: int, rate: int, seconds: float) -> dict[str, Any]:
    """A trial, repeated once if it lost packets (other processes share these cores)."""
    r = _trial(relay_pid, port, rate, seconds)
    if r["relay_lossy"] or r["blaster_limited"]:
        again = _trial(relay_pid, port, rate, seconds)
        again["retried"] = True
        if not (again["relay_lossy"] or again["blaster_limited"]):
            return again
    return r


def _backlog_cost(relay_pid: int, port: int, rounds: int, per_round: int = 1000) -> dict[str, Any]:
    """Relay CPU per packet when it finds a backlog: the relay is stopped (SIGSTOP), its
    queue filled with per_round datagrams, then resumed (SIGCONT) until every echo is
    back. CPU time, not wall time, so other processes on the machine barely move it;
    batches are full here, which is where recvmmsg/sendmmsg pay off."""
    from gateway.rtp.udpbatch import IMPLEMENTATIONS, BatchBuffers

    impl = IMPLEMENTATIONS["native"]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * RCVBUF)
        tx.bind(("127.0.0.1", 0))
        tx.connect(("127.0.0.1", port))
        tx.setblocking(False)
        out = BatchBuffers(64, PAYLOAD)
        out.buf[:, 0] = 0x80
        out.lengths[:] = PAYLOAD
        back = BatchBuffers(256, 2048)
        poller = select.poll()
        poller.register(tx.fileno(), select.POLLIN)
        drops0 = udp_drops({port})
        used = 0.0
        sent = received = 0
        for _ in range(rounds):
            os.kill(relay_pid, signal.SIGSTOP)
            try:
                n = 0  # the relay is stopped: this queues up to ~per_round datagrams for it
                while n < per_round:
                    n += impl.send_batch(
                        tx.fileno(), out.buf, out.lengths, None, min(64, per_round - n)
                    )
                sent += n
                cpu0 = _cpu_seconds(relay_pid)
            finally:
                os.kill(relay_pid, signal.SIGCONT)
            deadline = time.monotonic() + 5
            while received < sent and time.monotonic() < deadline:
                poller.poll(100)
                while got := impl.recv_batch(tx.fileno(), back.buf, back.lengths, None, None, 256):
                    received += got
            used += _cpu_seconds(relay_pid) - cpu0
        return {
            "cpu_us_per_packet": round(used / max(1, received) * 1e6, 2),
            "packets": received,
            "relay_drops": udp_drops({port}) - drops0,
            "lost": sent - received,
        }
    finally:
        tx.close()


def _backlog_phase(quick: bool) -> dict[str, Any]:
    """Backlog cost of every relay, measured in interleaved passes (all relays running,
    idle until fed); the minimum per relay is kept, as interference only adds."""
    relays = {
        m: subprocess.Popen(_python_cmd("relay", m), cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for m in MODES
    }
    try:
        ports = {m: int(p.stdout.readline()) for m, p in relays.items()}  # type: ignore[union-attr]
        passes: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for _ in range(3 if quick else 5):
            for m in MODES:
                passes[m].append(_backlog_cost(relays[m].pid, ports[m], rounds=10))
        best = {m: min(r["cpu_us_per_packet"] for r in runs) for m, runs in passes.items()}
        return {
            "cpu_us_per_packet_min": best,
            "all_passes_us": {
                m: [r["cpu_us_per_packet"] for r in runs] for m, runs in passes.items()
            },
            "relay_drops": {m: sum(r["relay_drops"] for r in runs) for m, runs in passes.items()},
        }
    finally:
        for p in relays.values():
            p.kill()
            p.wait()


def _ceiling(mode: str, quick: bool) -> dict[str, Any]:
    seconds = 1.0 if quick else 3.0
    relay = subprocess.Popen(
        _python_cmd("relay", mode), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert relay.stdout is not None
        port = int(relay.stdout.readline())
        fixed = _trial(relay.pid, port, FIXED_RATE, seconds)
        trials = [fixed]
        ok, bad, limited = 0, None, False
        rate = 10_000
        while rate <= 1_600_000:  # doubling until the first lossy (or blaster-limited) rate
            r = _retrying_trial(relay.pid, port, rate, seconds)
            trials.append(r)
            if r["relay_lossy"]:
                bad = rate
                break
            if r["blaster_limited"]:
                limited = True
                break
            ok = rate
            rate *= 2
        for _ in range(0 if limited else 2 if quick else 4):  # bisect last good .. first bad
            if bad is None:
                break
            mid = (ok + bad) // 2
            r = _retrying_trial(relay.pid, port, mid, seconds)
            trials.append(r)
            if r["blaster_limited"]:
                limited = True
                break
            if r["relay_lossy"]:
                bad = mid
            else:
                ok = mid
        at_ok = [t for t in trials if t["offered_pps"] == ok]
        return {
            "cpu_us_per_packet": fixed["relay_us_per_packet"],
            "loss_free_pps": ok,
            "relay_cpu_at_loss_free": at_ok[-1]["relay_cpu"] if at_ok else None,
            "cpu_us_per_packet_at_loss_free": at_ok[-1]["relay_us_per_packet"] if at_ok else None,
            "first_lossy_pps": bad,
            # True: the blaster (not this relay) ran out first, so loss_free_pps is a floor
            "blaster_limited": limited,
            "trials": trials,
        }
    finally:
        relay.kill()
        relay.wait()


def run(quick: bool = True) -> dict[str, Any]:
    """Measure every relay mode; figures are ratios against asyncio/uvloop from this run."""
    from gateway.rtp.udpbatch import HAVE_NATIVE

    if not HAVE_NATIVE:
        raise RuntimeError("gateway._udpbatch is not built: the blaster needs sendmmsg")
    load_before = os.getloadavg()
    backlog = _backlog_phase(quick)
    modes = {m: _ceiling(m, quick) for m in MODES}
    pps = {m: r["loss_free_pps"] for m, r in modes.items()}
    cpu = {m: r["cpu_us_per_packet"] for m, r in modes.items()}
    bcpu = backlog["cpu_us_per_packet_min"]
    return {
        "benchmark": "udpbatch_echo_relay",
        "quick": quick,
        "cpus": os.cpu_count(),
        # other work on the machine moves the ceilings (a relay that is not scheduled
        # drops packets); cpu_us_per_packet is the steadier figure
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "payload_bytes": PAYLOAD,
        "loss_tolerance": LOSS_TOLERANCE,
        "loss_free_pps": pps,
        "ratio_vs_asyncio": {m: round(v / max(1, pps["asyncio"]), 2) for m, v in pps.items()},
        "ratio_vs_uvloop": {m: round(v / max(1, pps["uvloop"]), 2) for m, v in pps.items()},
        "fixed_rate_pps": FIXED_RATE,
        "cpu_us_per_packet": cpu,
        "cpu_ratio_vs_uvloop": {m: round(v / max(1e-9, cpu["uvloop"]), 2) for m, v in cpu.items()},
        "backlog_cpu_us_per_packet": bcpu,
        "backlog_cpu_ratio_vs_uvloop": {
            m: round(v / max(1e-9, bcpu["uvloop"]), 2) for m, v in bcpu.items()
        },
        "backlog_cpu_ratio_vs_asyncio": {
            m: round(v / max(1e-9, bcpu["asyncio"]), 2) for m, v in bcpu.items()
        },
        "backlog": backlog,
        "modes": modes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("relay")
    r.add_argument("mode", choices=MODES)
    r.add_argument("--cpu", type=int, default=0)
    b = sub.add_parser("blast")
    b.add_argument("port", type=int)
    b.add_argument("rate", type=int)
    b.add_argument("seconds", type=float)
    b.add_argument("--sockets", type=int, default=8)
    b.add_argument("--cpu", type=int, default=1)
    p.add_argument("--full", action="store_true", help="3 s trials and a finer bisection")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args(argv)
    if a.cmd == "relay":
        _relay(a.mode, a.cpu)
        return 0
    if a.cmd == "blast":
        print(json.dumps(_blast(a.port, a.rate, a.seconds, a.sockets, a.cpu)))
        return 0
    res = run(quick=not a.full)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
