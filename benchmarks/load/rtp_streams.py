"""The load generator's media core: many G.711 calls as parallel arrays, no sockets.

One row per call holds what its RTP sender needs (SSRC, next sequence number and
timestamp, payload type, destination sockaddr, which local socket it uses) and
how its receive side is recognised (the remote address datagrams come from).
Everything is vectorized over the calls that are due or over a received batch:

* `due(now_ns)` asks the timer wheel which calls must send now and reschedules
  them one ptime later on their nominal cadence (lateness is measured, not hidden);
* `build(ids, out)` writes their RTP packets into a `BatchBuffers` in one pass;
* `ingest(batch, count, socket_index, now_ns)` maps received datagrams to calls by
  (local socket, source address) and appends `PACKET_DTYPE` rows for the quality
  engine; unknown sources and non-RTP datagrams are counted, not kept.

The clock is a parameter everywhere; `rtp_load.RtpLoadEngine` is the I/O adapter.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.load.timer_wheel import TimerWheel
from gateway.quality.records import PACKET_DTYPE
from gateway.rtp.udpbatch import (
    ADDR_DTYPE,
    BatchBuffers,
    packet_records,
    rtp_headers,
    set_addr,
)

G711_FRAME = 160  # samples (and bytes) per 20 ms at 8 kHz
RTP_HEADER = 12
_HDR = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")])
_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


class Match(enum.Enum):
    """How a received datagram finds its call."""

    ADDRESS = "address"  # (local socket, source IPv4 address, port): a gateway's legs
    SSRC = "ssrc"  # our own SSRC coming back: echo peers (SIPp -rtp_echo, `vtcgw-load echo`)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMedia:
    """What signalling settled for one call's audio (from the SDP answer)."""

    call_id: Hashable
    remote: tuple[str, int]  # where to send RTP, and where the peer's RTP comes from
    encoding: str = "PCMU"  # PCMU or PCMA
    ssrc: int | None = None  # None: drawn at random
    ptime_ms: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class SendLateness:
    """How far behind its cadence the generator sent (an overloaded generator shows here)."""

    packets: int
    p50_us: float
    p99_us: float
    max_us: float


def tone_payload(encoding: str, hz: float = 400.0, amplitude: int = 8000) -> np.ndarray:
    """One 20 ms G.711 frame of a tone whose period divides 20 ms (so frames repeat)."""
    from gateway.rtp.codecs import AudioCodec
    from gateway.rtp.types import Codec

    t = np.arange(G711_FRAME) / 8000.0
    pcm = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    pt = _PAYLOAD_TYPES[encoding]
    codec = AudioCodec(Codec(payload_type=pt, name=encoding, clock_rate=8000))
    return np.frombuffer(codec.encode(pcm), np.uint8).copy()


def _grown(old: np.ndarray, cap: int, dtype: Any) -> np.ndarray:
    new = np.zeros(cap, dtype)
    new[: len(old)] = old
    return new


class RtpStreams:
    """Sender and receiver state of many calls, addressed by a dense call index."""

    def __init__(
        self,
        *,
        capacity: int = 256,
        tick_ns: int = 1_000_000,
        match: Match | str = Match.ADDRESS,
        seed: int | None = None,
        start_ns: int = 0,
    ) -> None:
        self.match = Match(match)
        self._rng = np.random.default_rng(seed)
        self.wheel = TimerWheel(tick_ns=tick_ns, n_slots=64, start_ns=start_ns)
        self._index: dict[Hashable, int] = {}
        self.call_ids: list[Hashable] = []
        self._alloc(capacity)
        self._n = 0
        self._lookup_keys = np.zeros(0, np.uint64)
        self._lookup_idx = np.zeros(0, np.int64)
        self._lookup_dirty = False
        self._payloads = {name: tone_payload(name) for name in _PAYLOAD_TYPES}
        self._rows = np.zeros(1024, PACKET_DTYPE)
        self._row_call = np.zeros(1024, np.int64)
        self._nrows = 0
        self._late_ns: list[np.ndarray] = []
        self.sent = 0
        self.stray = 0  # datagrams from no known call, or not RTP

    def _alloc(self, cap: int) -> None:
        """(Re)allocate the per-call columns with room for `cap` calls, keeping the rows."""
        e = np.zeros(0, np.int64)
        self.active = _grown(getattr(self, "active", e), cap, np.bool_)
        self.ssrc = _grown(getattr(self, "ssrc", e), cap, np.uint32)
        self.seq = _grown(getattr(self, "seq", e), cap, np.uint16)
        self.rtp_ts = _grown(getattr(self, "rtp_ts", e), cap, np.uint32)
        self.pt = _grown(getattr(self, "pt", e), cap, np.uint8)
        self.period_ns = _grown(getattr(self, "period_ns", e), cap, np.int64)
        self.sock = _grown(getattr(self, "sock", e), cap, np.int64)
        # socket << 48 | ipv4 << 16 | port of the remote ("address"), or the SSRC ("ssrc")
        self.key = _grown(getattr(self, "key", e), cap, np.uint64)
        self.packets_sent = _grown(getattr(self, "packets_sent", e), cap, np.int64)
        self.dst = _grown(getattr(self, "dst", np.zeros(0, ADDR_DTYPE)), cap, ADDR_DTYPE)

    def __len__(self) -> int:
        return int(self.active[: self._n].sum())

    def index_of(self, call_id: Hashable) -> int:
        return self._index[call_id]

    # --- calls -------------------------------------------------------------------------
    def add_call(
        self, media: CallMedia, *, socket_index: int, now_ns: int, first_send_ns: int | None = None
    ) -> int:
        """Start sending for a call (first packet at first_send_ns, default now)."""
        if media.call_id in self._index:
            raise ValueError(f"call {media.call_id!r} is already running")
        if media.encoding not in _PAYLOAD_TYPES:
            raise ValueError(f"encoding must be one of {sorted(_PAYLOAD_TYPES)}")
        i = self._n
        if i == len(self.active):
            self._alloc(2 * len(self.active))
        self._n += 1
        self._index[media.call_id] = i
        self.call_ids.append(media.call_id)
        self.active[i] = True
        self.ssrc[i] = media.ssrc if media.ssrc is not None else self._rng.integers(1, 2**32)
        self.seq[i] = self._rng.integers(0, 2**16)
        self.rtp_ts[i] = self._rng.integers(0, 2**32)
        self.pt[i] = _PAYLOAD_TYPES[media.encoding]
        self.period_ns[i] = media.ptime_ms * 1_000_000
        self.sock[i] = socket_index
        set_addr(self.dst, i, media.remote)
        if self.match is Match.SSRC:
            if np.any(self.active[:i] & (self.ssrc[:i] == self.ssrc[i])):
                self.ssrc[i] ^= np.uint32(0x5A5A5A5A)  # vanishingly rare; keep keys unique
            self.key[i] = np.uint64(self.ssrc[i])
        else:
            ip = int.from_bytes(socket.inet_aton(media.remote[0]), "big")
            self.key[i] = np.uint64((socket_index << 48) | (ip << 16) | media.remote[1])
        self._lookup_dirty = True
        when = now_ns if first_send_ns is None else first_send_ns
        self.wheel.schedule(np.array([i]), np.array([when]))
        return i

    def remove_call(self, call_id: Hashable) -> None:
        """Stop sending and receiving for a call; its rows already taken stay valid."""
        i = self._index.pop(call_id)
        self.active[i] = False
        self.wheel.cancel(np.array([i]))
        self._lookup_dirty = True

    # --- sending -----------------------------------------------------------------------
    def due(self, now_ns: int) -> np.ndarray:
        """Indices of the calls that must send now; each is rescheduled one ptime later."""
        ids, due = self.wheel.advance(now_ns)
        if len(ids) == 0:
            return ids
        live = self.active[ids]
        ids, due = ids[live], due[live]
        self._late_ns.append(now_ns - due)
        nxt = due + self.period_ns[ids]
        # a generator more than a ptime behind skips ahead rather than bursting
        nxt = np.where(nxt < now_ns, now_ns + self.period_ns[ids], nxt)
        self.wheel.schedule(ids, nxt)
        return ids

    def build(self, ids: np.ndarray, out: BatchBuffers) -> int:
        """Write the next RTP packet of each call in ids into rows 0.. of out."""
        k = len(ids)
        if k > out.capacity:
            raise ValueError("more calls due than rows in the batch")
        if out.maxlen < RTP_HEADER + G711_FRAME:
            raise ValueError("batch rows are too short for a G.711 packet")
        h = out.buf[:k, :RTP_HEADER].view(_HDR)[:, 0]
        h["b0"] = 0x80
        first = self.packets_sent[ids] == 0
        h["b1"] = self.pt[ids] | (first.astype(np.uint8) << 7)  # marker on the first packet
        h["seq"] = self.seq[ids]
        h["ts"] = self.rtp_ts[ids]
        h["ssrc"] = self.ssrc[ids]
        for name, pt in _PAYLOAD_TYPES.items():
            rows = self.pt[ids] == pt
            if rows.any():
                out.buf[:k, RTP_HEADER : RTP_HEADER + G711_FRAME][rows] = self._payloads[name]
        out.lengths[:k] = RTP_HEADER + G711_FRAME
        out.addrs[:k] = self.dst[ids]
        self.seq[ids] += np.uint16(1)
        self.rtp_ts[ids] += np.uint32(G711_FRAME)
        self.packets_sent[ids] += 1
        self.sent += k
        return k

    def lateness(self) -> SendLateness:
        late = np.concatenate(self._late_ns) if self._late_ns else np.zeros(0, np.int64)
        if len(late) == 0:
            return SendLateness(packets=0, p50_us=0.0, p99_us=0.0, max_us=0.0)
        p50, p99 = np.percentile(late, [50, 99]) / 1000.0
        return SendLateness(
            packets=len(late),
            p50_us=float(p50),
            p99_us=float(p99),
            max_us=float(late.max()) / 1000.0,
        )

    # --- receiving ---------------------------------------------------------------------
    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lookup_dirty:
            live = np.flatnonzero(self.active[: self._n])
            order = np.argsort(self.key[live], kind="stable")
            self._lookup_keys = self.key[live][order]
            self._lookup_idx = live[order]
            self._lookup_dirty = False
        return self._lookup_keys, self._lookup_idx

    def ingest(self, batch: BatchBuffers, count: int, *, socket_index: int, now_ns: int) -> int:
        """Attribute a received batch to calls; returns how many rows were kept."""
        if count == 0:
            return 0
        h = rtp_headers(batch.buf, batch.lengths, count)
        if self.match is Match.SSRC:
            src = h.ssrc.astype(np.uint64)
        else:
            a = batch.addrs[:count]
            src = (
                (np.uint64(socket_index) << np.uint64(48))
                | (a["addr4"].astype(np.uint64) << np.uint64(16))
                | a["port"].astype(np.uint64)
            )
        keys, idx = self._lookup()
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, src), len(keys) - 1)
            known = keys[pos] == src
        else:
            pos, known = np.zeros(count, np.int64), np.zeros(count, bool)
        recs = packet_records(batch, count, fallback_arrival_ns=now_ns, headers=h, keep=known)
        calls = idx[pos[known & h.valid]] if len(keys) else np.zeros(0, np.int64)
        self.stray += count - len(recs)
        n = len(recs)
        if self._nrows + n > len(self._rows):
            cap = max(2 * len(self._rows), self._nrows + n)
            self._rows = np.resize(self._rows, cap)
            self._row_call = np.resize(self._row_call, cap)
        self._rows[self._nrows : self._nrows + n] = recs
        self._row_call[self._nrows : self._nrows + n] = calls
        self._nrows += n
        return n

    def take_records(self) -> tuple[np.ndarray, np.ndarray]:
        """(PACKET_DTYPE rows, call index per row) received since the last take."""
        rows = self._rows[: self._nrows].copy()
        calls = self._row_call[: self._nrows].copy()
        self._nrows = 0
        return rows, calls
