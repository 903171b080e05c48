"""The load generator's RTP engine: sockets and clocks around `rtp_streams.RtpStreams`.

One process sends and receives 20 ms G.711 for hundreds to thousands of calls over
a few local UDP sockets, with `send_batch`/`recv_batch` (sendmmsg/recvmmsg when the
native module is built). The SIP side of the load generator drives it through:

    engine = RtpLoadEngine(host="127.0.0.1", sockets=4)
    idx, (host, port) = engine.assign_socket()                # our m= line's port
    engine.start_call(CallMedia(call_id=..., remote=(rhost, rport)), socket_index=idx)
    engine.stop_call(call_id)          # on BYE
    engine.step(now_ns)                # send what is due, drain the sockets
    engine.run(seconds) / engine.attach(loop) + engine.detach()      # drivers
    engine.flush_stats(); engine.summary(call_id); engine.report()   # figures

Receive statistics are kept off the send/receive path: the packets only append
`PACKET_DTYPE` rows; `flush_stats` (every second while running, and on demand)
hands them to a stats thread that feeds the project's `QualityEngine`, keyed by
call id (its update costs ~10 us per stream, i.e. tens of ms per flush with
thousands of calls, which must not delay the 20 ms send cadence; a load process
should also lower `sys.setswitchinterval` so the sender gets the GIL back fast).
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Hashable
from typing import Any

import numpy as np

from benchmarks.load.rtp_streams import G711_FRAME, RTP_HEADER, CallMedia, Match, RtpStreams
from gateway.quality.engine import QualityEngine, StreamSummary
from gateway.rtp.udpbatch import (
    HAVE_NATIVE,
    BatchBuffers,
    add_batch_reader,
    enable_timestamps,
    send_batch,
)

RCVBUF = 4 << 20
STATS_EVERY_NS = 1_000_000_000


class _StatsThread:
    """Feeds a QualityEngine from a queue of (rows, stream ids) on its own thread."""

    def __init__(self, quality: QualityEngine) -> None:
        self.quality = quality
        self.lock = threading.Lock()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="rtp-load-stats", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._q.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            rows, sids = item
            with self.lock:
                self.quality.update(rows, keys=sids)

    def submit(self, rows: np.ndarray, sids: np.ndarray) -> None:
        self._q.put((rows, sids))

    def sync(self) -> None:
        """Return once everything submitted so far is in the engine."""
        if self._thread.is_alive():
            done = threading.Event()
            self._q.put(done)
            done.wait()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


class RtpLoadEngine:
    """Many G.711 calls on a few sockets; monotonic clock for sending, kernel time for arrival."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        sockets: int = 1,
        ports: list[int] | None = None,
        batch: int = 256,
        match: Match | str = Match.ADDRESS,
        seed: int | None = None,
    ) -> None:
        if sockets <= 0:
            raise ValueError("sockets must be positive")
        if ports is not None and len(ports) != sockets:
            raise ValueError("give one port per socket (0 for any)")
        self.streams = RtpStreams(match=match, seed=seed, start_ns=time.monotonic_ns())
        self.quality = QualityEngine()
        self._sid = np.zeros(256, np.int64)
        self._tx = BatchBuffers(batch, RTP_HEADER + G711_FRAME)
        self._rx = BatchBuffers(batch, 2048)
        self._next_socket = 0
        self._last_stats_ns = 0
        self._readers: list[Any] = []
        self._timer: Any = None
        self._loop: Any = None
        self.send_shortfall = 0  # packets the kernel refused (EAGAIN): generator-side loss
        self.socks: list[socket.socket] = []
        try:
            for i in range(sockets):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                s.bind((host, ports[i] if ports else 0))
                s.setblocking(False)
                enable_timestamps(s.fileno())
        except BaseException:
            for s in self.socks:
                s.close()
            raise
        self._stats = _StatsThread(self.quality)  # last: nothing can fail after it starts

    # --- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self.detach()
        self._stats.stop()
        for s in self.socks:
            s.close()

    def __enter__(self) -> RtpLoadEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def local_address(self, socket_index: int = 0) -> tuple[str, int]:
        return self.socks[socket_index].getsockname()

    # --- calls -------------------------------------------------------------------------
    def assign_socket(self) -> tuple[int, tuple[str, int]]:
        """Pick the socket for a new call (round robin) before its SDP offer is written:
        (socket index for start_call, (host, port) for the m= line)."""
        i = self._next_socket
        self._next_socket = (self._next_socket + 1) % len(self.socks)
        return i, self.local_address(i)

    def start_call(
        self, media: CallMedia, *, socket_index: int | None = None, first_send_ns: int | None = None
    ) -> int:
        """Start a call's media (first packet at first_send_ns on the monotonic clock,
        default now); returns the socket index it uses (its SDP port)."""
        if socket_index is None:
            socket_index, _ = self.assign_socket()
        i = self.streams.add_call(
            media,
            socket_index=socket_index,
            now_ns=time.monotonic_ns(),
            first_send_ns=first_send_ns,
        )
        if i >= len(self._sid):
            self._sid = np.resize(self._sid, 2 * (i + 1))
        with self._stats.lock:
            self._sid[i] = self.quality.stream_id(
                media.call_id, encoding=media.encoding, clock_rate=8000
            )
        return socket_index

    def stop_call(self, call_id: Hashable) -> None:
        self.streams.remove_call(call_id)

    # --- the packet path ---------------------------------------------------------------
    def send_due(self, now_ns: int) -> int:
        ids = self.streams.due(now_ns)
        if len(ids) == 0:
            return 0
        sent = 0
        for sock_index in np.unique(self.streams.sock[ids]).tolist():
            mine = ids[self.streams.sock[ids] == sock_index]
            fd = self.socks[sock_index].fileno()
            for lo in range(0, len(mine), self._tx.capacity):
                k = self.streams.build(mine[lo : lo + self._tx.capacity], self._tx)
                n = send_batch(fd, self._tx.buf, self._tx.lengths, self._tx.addrs, k)
                self.send_shortfall += k - n
                sent += n
        return sent

    def receive(self, socket_index: int) -> int:
        rx = self._rx
        got = 0
        while True:
            n = rx.recv(self.socks[socket_index].fileno())
            if n:
                self.streams.ingest(rx, n, socket_index=socket_index, now_ns=time.time_ns())
            got += n
            if n < rx.capacity:
                return got

    def drain(self) -> int:
        """Receive whatever is queued on every socket, sending nothing."""
        return sum(self.receive(i) for i in range(len(self.socks)))

    def step(self, now_ns: int) -> int:
        """Send what is due at now_ns (monotonic), then drain every socket."""
        sent = self.send_due(now_ns)
        self.drain()
        if now_ns - self._last_stats_ns >= STATS_EVERY_NS:
            self.flush_stats()
            self._last_stats_ns = now_ns
        return sent

    # --- drivers -----------------------------------------------------------------------
    def run(self, seconds: float) -> None:
        """Drive the engine on this thread for `seconds` (a dedicated load process)."""
        poller = select.poll()
        for s in self.socks:
            poller.register(s.fileno(), select.POLLIN)
        end = time.monotonic_ns() + int(seconds * 1e9)
        while (now := time.monotonic_ns()) < end:
            self.step(now)
            nxt = self.streams.wheel.next_due_ns()
            wait_ms = 10 if nxt is None else max(0, (nxt - time.monotonic_ns()) // 1_000_000)
            poller.poll(min(wait_ms, 10))
        self.flush_stats()

    def settle(self, seconds: float = 0.2, quiet_ms: int = 50) -> None:
        """After sending stops: keep receiving until quiet for quiet_ms (or seconds pass),
        so packets still in flight are not counted as lost."""
        poller = select.poll()
        for s in self.socks:
            poller.register(s.fileno(), select.POLLIN)
        end = time.monotonic() + seconds
        while time.monotonic() < end and poller.poll(quiet_ms):
            self.drain()
        self.flush_stats()

    def attach(self, loop: Any) -> None:
        """Run on an asyncio loop (the SIP engine's): readers per socket, a timer per tick."""
        self._loop = loop
        for i, s in enumerate(self.socks):

            def on_batch(b: BatchBuffers, n: int, i: int = i) -> None:
                self.streams.ingest(b, n, socket_index=i, now_ns=time.time_ns())

            self._readers.append(
                add_batch_reader(
                    loop, s, on_batch, buffers=BatchBuffers(self._rx.capacity, self._rx.maxlen)
                )
            )
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic_ns()
        self.send_due(now)
        if now - self._last_stats_ns >= STATS_EVERY_NS:
            self.flush_stats()
            self._last_stats_ns = now
        nxt = self.streams.wheel.next_due_ns()
        delay = 0.01 if nxt is None else max(0.0, (nxt - time.monotonic_ns()) / 1e9)
        self._timer = self._loop.call_later(min(delay, 0.01), self._tick)

    def detach(self) -> None:
        for r in self._readers:
            r.close()
        self._readers.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- figures -----------------------------------------------------------------------
    def flush_stats(self) -> None:
        """Hand the rows received so far to the stats thread (returns at once)."""
        rows, calls = self.streams.take_records()
        if len(rows):
            self._stats.submit(rows, self._sid[calls])

    def summary(self, call_id: Hashable) -> StreamSummary:
        """Receive figures of one call, including every row flushed so far."""
        self._stats.sync()
        with self._stats.lock:
            return self.quality.summary(call_id)

    def report(self) -> dict[str, Any]:
        """Totals and per-call distributions (calls that received nothing count as 100 % lost)."""
        self.flush_stats()
        self._stats.sync()
        with self._stats.lock:
            per_call = [self.quality.summary(cid) for cid in self.streams.call_ids]
        loss = np.array([s.fraction_lost if s.expected else 1.0 for s in per_call] or [0.0])
        jit = np.array([s.jitter_us / 1000.0 for s in per_call] or [0.0])
        mos = np.array([s.mos.value if s.mos else 0.0 for s in per_call] or [0.0])
        late = self.streams.lateness()
        return {
            "native": HAVE_NATIVE,
            "calls": len(self.streams.call_ids),
            "packets_sent": self.streams.sent,
            "send_shortfall": self.send_shortfall,
            "packets_received": int(sum(s.packets for s in per_call)),
            "stray_datagrams": self.streams.stray,
            "send_lateness_us": {"p50": late.p50_us, "p99": late.p99_us, "max": late.max_us},
            "loss_pct": {"mean": float(loss.mean() * 100), "max": float(loss.max() * 100)},
            "jitter_ms": {
                "p50": float(np.percentile(jit, 50)),
                "p95": float(np.percentile(jit, 95)),
                "max": float(jit.max()),
            },
            "mos": {"min": float(mos.min()), "p50": float(np.percentile(mos, 50))},
        }
