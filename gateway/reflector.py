"""The probe reflector: echoes `vtcprobe` packets so a site can measure its media path.

Off unless enabled. It listens on one UDP port (normally inside the SIP media range,
so the firewall rule that admits media admits it) and answers only packets that
carry a valid tag; everything else is dropped without an answer.

Wire format (all integers big-endian). A probe packet is an RTP packet, so that
middleboxes treat it like media, whose payload starts with a 64-byte probe block::

    RTP fixed header (12)   V=2, PT, seq, ts, SSRC: chosen by the probe
    0  magic        4s  b"VTCP"
    4  version      B   1
    5  kind         B   Kind (request kinds are odd, the answer is kind + 1)
    6  auth_len     H   bytes after the block that the tag also covers (port lists)
    8  client_ns    Q   probe's wall clock at send (Unix ns)
    16 clock_rate   I   probe's RTP clock (informational)
    20 reply_seq    I   reflector: ECHO answers sent so far for this (source, SSRC), this one included
    24 fwd_received I   reflector: packets received so far for this (source, SSRC)
    28 arg          I   request argument (OPEN_PORTS: listen time in ms)
    32 recv_ns      Q   reflector: receive time (kernel timestamp, Unix ns)
    40 send_ns      Q   reflector: time the answer was built (Unix ns)
    48 tag          16s HMAC-SHA256(token, "VTCP-Q"|"VTCP-A" + RTP header + block[0:48] +
                        auth bytes), first 16 bytes; reflector fields are zero in a request
    64 auth bytes, then padding up to the probe's packet size (not covered, echoed as is)

The token itself never travels. The answer is the request rewritten in place, so it
is never larger than what was received. Requests whose `client_ns` is further than
`max_skew_s` from the reflector's clock are refused (a bound on replays).

Kinds:
- ECHO: answered with the timestamps and counters filled in.
- STATS: same answer, without counting the packet (the probe asks for final counts).
- OPEN_PORTS: auth bytes are a list of u16 ports; the reflector binds those inside its
  allowed ranges for `arg` ms (at most `MAX_OPEN_MS`), answers with the list where a
  port it could not open is 0, then answers ECHO on those ports, from those ports, to
  the requesting IP only. What a sampled-port echo proves: a UDP datagram from the
  probe's address reached the gateway host on that port, and the answer from that port
  reached the probe (inbound rule and return path for that 5-tuple). It proves nothing
  about ports that were not sampled, nor about other source addresses.

Rate limits: a token bucket per source IP and one for everything, checked before the
tag is computed; over the limit, packets are dropped without an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import hashlib
import hmac
import socket
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

MAGIC = b"VTCP"
VERSION = 1
RTP_HEADER = 12
BLOCK = struct.Struct("!4sBBHQIIIIQQ16s")
HEADER_SIZE = RTP_HEADER + BLOCK.size  # 76: the smallest probe packet
TAG_SIZE = 16
_TAGGED = RTP_HEADER + BLOCK.size - TAG_SIZE
MAX_PACKET = 1500
MAX_OPEN_PORTS = 32  # per request
MAX_OPEN_MS = 10_000
MAX_TRACKED = 4096  # per-source buckets and per-stream counters kept


class Kind(enum.IntEnum):
    ECHO = 1
    ECHO_REPLY = 2
    STATS = 3
    STATS_REPLY = 4
    OPEN_PORTS = 5
    OPEN_PORTS_REPLY = 6


class Verdict(enum.Enum):
    ANSWERED = "answered"
    RATE_LIMITED = "rate_limited"
    MALFORMED = "malformed"
    BAD_TAG = "bad_tag"
    STALE = "stale"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeBlock:
    """The probe block of one packet (see the module docstring for the layout)."""

    kind: Kind
    auth_len: int = 0
    client_ns: int = 0
    clock_rate: int = 0
    reply_seq: int = 0
    fwd_received: int = 0
    arg: int = 0
    recv_ns: int = 0
    send_ns: int = 0
    tag: bytes = bytes(TAG_SIZE)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ProbeBlock:
        if len(data) < HEADER_SIZE or data[0] >> 6 != 2:
            raise MalformedProbe("too short or not RTP version 2")
        magic, ver, kind, auth_len, *rest = BLOCK.unpack_from(data, RTP_HEADER)
        if magic != MAGIC or ver != VERSION:
            raise MalformedProbe("not a vtcprobe packet")
        try:
            k = Kind(kind)
        except ValueError:
            raise MalformedProbe(f"unknown kind {kind}") from None
        if HEADER_SIZE + auth_len > len(data):
            raise MalformedProbe("auth_len beyond the packet")
        cns, rate, rseq, fwd, arg, rns, sns, tag = rest
        return cls(kind=k, auth_len=auth_len, client_ns=cns, clock_rate=rate, reply_seq=rseq,
                   fwd_received=fwd, arg=arg, recv_ns=rns, send_ns=sns, tag=tag)

    def pack_into(self, buf: bytearray) -> None:
        BLOCK.pack_into(buf, RTP_HEADER, MAGIC, VERSION, int(self.kind), self.auth_len,
                        self.client_ns & (2**64 - 1), self.clock_rate, self.reply_seq & 0xFFFFFFFF,
                        self.fwd_received & 0xFFFFFFFF, self.arg, self.recv_ns & (2**64 - 1),
                        self.send_ns & (2**64 - 1), self.tag)


class MalformedProbe(Exception):
    """Not a well-formed probe packet (dropped without an answer)."""


def compute_tag(key: bytes, packet: bytes | bytearray | memoryview, *, answer: bool) -> bytes:
    """The tag of a packet: over the RTP header, the block before the tag, and the auth bytes."""
    auth_len = struct.unpack_from("!H", packet, RTP_HEADER + 6)[0]
    mac = hmac.new(key, b"VTCP-A" if answer else b"VTCP-Q", hashlib.sha256)
    mac.update(bytes(packet[:_TAGGED]))
    mac.update(bytes(packet[HEADER_SIZE:HEADER_SIZE + auth_len]))
    return mac.digest()[:TAG_SIZE]


def build_probe(key: bytes, *, rtp_header: bytes, block: ProbeBlock, size: int,
                auth: bytes = b"") -> bytes:
    """A signed request of `size` bytes (at least HEADER_SIZE + len(auth))."""
    size = max(size, HEADER_SIZE + len(auth))
    buf = bytearray(size)
    buf[:RTP_HEADER] = rtp_header
    b = ProbeBlock(kind=block.kind, auth_len=len(auth), client_ns=block.client_ns,
                   clock_rate=block.clock_rate, arg=block.arg)
    b.pack_into(buf)
    buf[HEADER_SIZE:HEADER_SIZE + len(auth)] = auth
    buf[_TAGGED:HEADER_SIZE] = compute_tag(key, buf, answer=False)
    return bytes(buf)


def verify_answer(key: bytes, packet: bytes | bytearray | memoryview) -> ProbeBlock | None:
    """The block of a genuine reflector answer, or None."""
    try:
        blk = ProbeBlock.parse(packet)
    except MalformedProbe:
        return None
    if blk.kind % 2 or not hmac.compare_digest(blk.tag, compute_tag(key, packet, answer=True)):
        return None
    return blk


def port_list(auth: bytes) -> list[int]:
    return list(struct.unpack(f"!{len(auth) // 2}H", auth[: len(auth) // 2 * 2]))


# ---------------------------------------------------------------------------- rate limit


class TokenBuckets:
    """Token buckets per key and one overall; `now` is monotonic seconds (passed in)."""

    __slots__ = ("rate", "burst", "total_rate", "total_burst", "_buckets", "_total", "_total_at")

    def __init__(self, *, per_source_pps: float, total_pps: float) -> None:
        self.rate, self.burst = per_source_pps, max(1.0, per_source_pps / 2)
        self.total_rate, self.total_burst = total_pps, max(1.0, total_pps / 2)
        self._buckets: OrderedDict[Any, list[float]] = OrderedDict()
        self._total, self._total_at = self.total_burst, None

    def allow(self, key: Any, now: float) -> bool:
        at = self._total_at if self._total_at is not None else now
        total = min(self.total_burst, self._total + (now - at) * self.total_rate)
        self._total_at = now
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets.popitem(last=False)
            b = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens < 1.0 or total < 1.0:
            b[0], self._total = tokens, total
            return False
        b[0], self._total = tokens - 1.0, total - 1.0
        return True


# ---------------------------------------------------------------------------- sans-I/O core


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenPorts:
    """The adapter should listen on `ports` for `duration_s`, answering only `peer_ip`."""

    ports: tuple[int, ...]
    peer_ip: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: Verdict
    answer: bytes | None = None
    open_ports: OpenPorts | None = None


class ReflectorCore:
    """Answers probe packets. No I/O, no clock: times are passed in.

    `receive_datagram(data, addr, now=, recv_ns=, send_ns=)` returns an `Outcome`;
    `counters` holds one count per `Verdict`.
    """

    def __init__(self, *, token: str | bytes, allowed_ranges: Iterable[tuple[int, int]] = (),
                 per_source_pps: float = 1000.0, total_pps: float = 5000.0,
                 max_skew_s: float | None = 600.0) -> None:
        self.key = token.encode() if isinstance(token, str) else bytes(token)
        if len(self.key) < 8:
            raise ValueError("reflector token must be at least 8 bytes")
        self.allowed_ranges = tuple(allowed_ranges)
        self.limits = TokenBuckets(per_source_pps=per_source_pps, total_pps=total_pps)
        self.max_skew_ns = None if max_skew_s is None else int(max_skew_s * 1e9)
        self.counters: dict[Verdict, int] = dict.fromkeys(Verdict, 0)
        self._streams: OrderedDict[tuple[Any, int], list[int]] = OrderedDict()

    def _count(self, verdict: Verdict, **kw: Any) -> Outcome:
        self.counters[verdict] += 1
        return Outcome(verdict=verdict, **kw)

    def receive_datagram(self, data: bytes | memoryview, addr: tuple[Any, ...], *, now: float,
                         recv_ns: int, send_ns: int, restrict_ip: str | None = None,
                         allow_open: bool = True) -> Outcome:
        if restrict_ip is not None and addr[0] != restrict_ip:
            return self._count(Verdict.NOT_ALLOWED)
        if not self.limits.allow(addr[0], now):
            return self._count(Verdict.RATE_LIMITED)
        if not HEADER_SIZE <= len(data) <= MAX_PACKET:
            return self._count(Verdict.MALFORMED)
        try:
            req = ProbeBlock.parse(data)
        except MalformedProbe:
            return self._count(Verdict.MALFORMED)
        if req.kind % 2 == 0:
            return self._count(Verdict.MALFORMED)
        if not hmac.compare_digest(req.tag, compute_tag(self.key, data, answer=False)):
            return self._count(Verdict.BAD_TAG)
        if self.max_skew_ns is not None and abs(req.client_ns - send_ns) > self.max_skew_ns:
            return self._count(Verdict.STALE)
        buf = bytearray(data)
        opened: OpenPorts | None = None
        if req.kind is Kind.OPEN_PORTS:
            if not allow_open:
                return self._count(Verdict.NOT_ALLOWED)
            wanted = port_list(bytes(buf[HEADER_SIZE:HEADER_SIZE + req.auth_len]))[:MAX_OPEN_PORTS]
            ok = tuple(p for p in wanted if self._allowed(p))
            answer_ports = [p if p in ok else 0 for p in wanted]
            answer_ports += [0] * (req.auth_len // 2 - len(answer_ports))
            buf[HEADER_SIZE:HEADER_SIZE + 2 * len(answer_ports)] = struct.pack(
                f"!{len(answer_ports)}H", *answer_ports)
            opened = OpenPorts(ports=ok, peer_ip=str(addr[0]),
                               duration_s=min(req.arg, MAX_OPEN_MS) / 1000.0)
        ssrc = struct.unpack_from("!I", buf, 8)[0]
        key = (addr, ssrc)
        st = self._streams.get(key)
        if st is None:
            if len(self._streams) >= MAX_TRACKED:
                self._streams.popitem(last=False)
            st = self._streams[key] = [0, 0]  # received, replies
        if req.kind is Kind.ECHO:
            st[0] += 1
            st[1] += 1
        ans = ProbeBlock(kind=Kind(req.kind + 1), auth_len=req.auth_len, client_ns=req.client_ns,
                         clock_rate=req.clock_rate, reply_seq=st[1], fwd_received=st[0],
                         arg=req.arg, recv_ns=recv_ns, send_ns=send_ns)
        ans.pack_into(buf)
        buf[_TAGGED:HEADER_SIZE] = compute_tag(self.key, buf, answer=True)
        assert len(buf) == len(data)  # never more bytes than received
        return self._count(Verdict.ANSWERED, answer=bytes(buf), open_ports=opened)

    def confirm_open(self, answer: bytes, opened: Iterable[int]) -> bytes:
        """The OPEN_PORTS answer with ports the adapter could not bind set to 0, re-tagged."""
        buf = bytearray(answer)
        blk = ProbeBlock.parse(buf)
        ok = set(opened)
        ports = [p if p in ok else 0 for p in port_list(bytes(buf[HEADER_SIZE:HEADER_SIZE + blk.auth_len]))]
        buf[HEADER_SIZE:HEADER_SIZE + 2 * len(ports)] = struct.pack(f"!{len(ports)}H", *ports)
        buf[_TAGGED:HEADER_SIZE] = compute_tag(self.key, buf, answer=True)
        return bytes(buf)

    def _allowed(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.allowed_ranges)


# ---------------------------------------------------------------------------- asyncio adapter


class Reflector:
    """The reflector on a real UDP socket. `await start()` returns the bound port."""

    def __init__(self, *, host: str, port: int, token: str | bytes,
                 allowed_ranges: Iterable[tuple[int, int]] = (), per_source_pps: float = 1000.0,
                 total_pps: float = 5000.0, max_skew_s: float | None = 600.0,
                 max_open_ports: int = 64) -> None:
        self.host, self.port = host, port
        self.core = ReflectorCore(token=token, allowed_ranges=allowed_ranges,
                                  per_source_pps=per_source_pps, total_pps=total_pps,
                                  max_skew_s=max_skew_s)
        self.max_open_ports = max_open_ports
        self._main: Any = None
        self._sock: socket.socket | None = None
        self._extra: dict[int, tuple[socket.socket, Any, asyncio.TimerHandle, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> int:
        from gateway.rtp.udpbatch import BatchBuffers, add_batch_reader, enable_timestamps

        self._loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
            enable_timestamps(sock)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._out = BatchBuffers(64, MAX_PACKET)
        self._main = add_batch_reader(self._loop, sock, self._make_handler(sock, None, True),
                                      buffers=BatchBuffers(64, 2048))
        self.port = sock.getsockname()[1]
        return self.port

    def _make_handler(self, sock: socket.socket, restrict_ip: str | None,
                      allow_open: bool) -> Callable[[Any, int], None]:
        from gateway.rtp.udpbatch import get_addr

        core = self.core

        def on_batch(b: Any, n: int) -> None:
            now, wall = time.monotonic(), time.time_ns()
            out, k = self._out, 0
            for i in range(n):
                size = int(b.lengths[i])
                if size > b.maxlen:
                    continue
                addr = get_addr(b.addrs, i)
                res = core.receive_datagram(memoryview(b.buf[i, :size]), addr, now=now,
                                            recv_ns=int(b.ts_ns[i]) or wall, send_ns=wall,
                                            restrict_ip=restrict_ip, allow_open=allow_open)
                if res.answer is None:
                    continue
                answer = res.answer
                if res.open_ports is not None:
                    answer = core.confirm_open(answer, self._open(res.open_ports))
                out.buf[k, :size] = memoryview(answer)
                out.lengths[k] = size
                out.addrs[k] = b.addrs[i]
                k += 1
            if k:
                try:
                    out.send(sock, k)
                except OSError:
                    pass  # the peer went away or the buffer is full: probes tolerate loss

        return on_batch

    def _open(self, req: OpenPorts) -> list[int]:
        """Bind the requested ports; returns those now listening for this peer."""
        from gateway.rtp.udpbatch import BatchBuffers, add_batch_reader, enable_timestamps

        assert self._loop is not None
        opened = []
        for p in req.ports:
            if p in self._extra:
                if self._extra[p][3] == req.peer_ip:
                    opened.append(p)
                continue
            if len(self._extra) >= self.max_open_ports:
                continue
            fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            try:
                s.bind((self.host, p))
                enable_timestamps(s)
            except OSError:  # in use by a call, or not ours to bind: the probe sees no answer
                s.close()
                continue
            reader = add_batch_reader(self._loop, s, self._make_handler(s, req.peer_ip, False),
                                      buffers=BatchBuffers(8, 2048))
            timer = self._loop.call_later(req.duration_s, self._close_port, p)
            self._extra[p] = (s, reader, timer, req.peer_ip)
            opened.append(p)
        return opened

    def _close_port(self, port: int) -> None:
        entry = self._extra.pop(port, None)
        if entry is not None:
            s, reader, timer, _ = entry
            timer.cancel()
            reader.close()
            s.close()

    @property
    def open_ports(self) -> tuple[int, ...]:
        return tuple(self._extra)

    async def close(self) -> None:
        for p in list(self._extra):
            self._close_port(p)
        if self._main is not None:
            self._main.close()
            self._main = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _parse_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


async def _serve(args: argparse.Namespace) -> None:
    r = Reflector(host=args.host, port=args.port, token=args.token,
                  allowed_ranges=[_parse_range(x) for x in args.range],
                  per_source_pps=args.per_source_pps, total_pps=args.total_pps)
    port = await r.start()
    print(f'{{"event": "ready", "reflector": {port}}}', flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await r.close()


def main(argv: list[str] | None = None) -> int:
    """Standalone reflector (for hosts without the gateway, and tests)."""
    ap = argparse.ArgumentParser(prog="python -m gateway.reflector")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", required=True)
    ap.add_argument("--range", action="append", default=[], help="LOW-HIGH ports OPEN_PORTS may bind")
    ap.add_argument("--per-source-pps", type=float, default=1000.0)
    ap.add_argument("--total-pps", type=float, default=5000.0)
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:
        print(f"reflector: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
