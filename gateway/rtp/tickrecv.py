"""Tick-driven receive for conference audio: drain every leg's socket once per 20 ms tick.

Instead of an event-loop callback per packet, the mix engine (:mod:`gateway.rtp.mixengine`)
calls :func:`tick_recv` once per tick over all its legs ("slots"), then :func:`tick_pull` for
one frame per slot, and sends every mixed frame with :func:`send_rows`. The three come from
the C accelerator ``gateway._mixrecv`` (native/mixrecv.c, recvmmsg/sendto with the GIL
released) when it was built, else from the Python twins below, which take the same arguments
and give the same results (``HAVE_NATIVE`` says which; both are in ``IMPLEMENTATIONS``).

Per-slot arrays (:class:`SlotArrays` allocates them; row i = slot i):

* ``fds`` int32: the leg's RTP socket, -1 for a free slot (not read).
* ``expect`` uint8 (28): the latched source as a kernel sockaddr slot (family 0: none yet,
  so every datagram takes the Python path, which latches).
* ``pt_mask`` uint8 (128): non-zero at the leg's media payload types (not telephone-event).
* ``ring`` uint8 (R*SLOT), ``ring_ext`` int64 (R), ``ring_len`` int16 (R): the jitter
  buffer's packets, slot ``ext & (R-1)`` holding extended sequence ``ring_ext`` (NONE: empty).
* ``js`` int64 (16, columns ``JS_*``; also the session's DTMF loss-run watch: the last
  newer sequence number and the longest gap since the engine last handed it over) and ``jf`` float64 (2: jitter s, last transit or NaN):
  the :class:`gateway.rtp.jitter.JitterBuffer` state with the same rules (target depth from
  the interarrival jitter, restart on a jump, late and duplicate drops, capacity 50, drain
  beyond twice the target). One difference: two buffered packets R apart share a ring slot
  and the older one is dropped as an overflow (the dict-based buffer could hold both).
* ``logs`` PACKET_DTYPE (K) and ``log_n`` int32: the packet-log rows written since the
  engine last moved them into the leg's :class:`~gateway.quality.records.PacketLog`.
* ``last`` int16 (SLOT): the last decoded frame, for concealment.

``tick_recv`` accepts a datagram only when it is plain RTP (first byte 0x80: version 2, no
padding, extension or CSRC), not RTCP-mux, from ``expect``, with a payload type in
``pt_mask``, a payload of at most SLOT bytes and room left in ``logs``; everything else
(telephone-events, RTCP-mux, strays, first packets before the latch, truncated or odd
datagrams) is left in the fallback rows ``fb_*`` with its slot in ``fb_leg``, for the
leg's ordinary ``receive`` path. A socket is read only while the fallback rows and the
slot's log have room (``complete`` 0 says one filled up; the rest stays queued), so a late
tick never pushes media onto the slow path. Set ``VTCGW_NO_NATIVE=1`` to force the twins.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from gateway.quality.records import PACKET_DTYPE
from gateway.rtp.udpbatch import ADDR_DTYPE, ADDR_SIZE, _unpack_addr, recv_batch

SLOT = 160  # payload bytes per ring slot: 20 ms of G.711
RING = 64  # ring slots per leg (power of two, above the jitter buffer's capacity of 50)
LOG_ROWS = 96  # packet-log rows per leg between two moves into the leg's PacketLog
NJS = 16
NONE = np.iinfo(np.int64).min
(JS_NEXT, JS_HIGHEST, JS_PLAYING, JS_COUNT, JS_LATE, JS_DUP, JS_LOST, JS_UNDERRUNS,
 JS_OVERFLOWS, JS_CONCEALED, JS_RX_PACKETS, JS_RX_BYTES, JS_LAST_ARRIVAL, JS_LAST_LEN,
 JS_PREV_SEQ, JS_MAX_GAP) = range(16)  # fmt: skip
MAX_DROPOUT = 3000  # gateway.rtp.session.MAX_DROPOUT
JF_JITTER, JF_TRANSIT = 0, 1
EMPTY, PACKET, LOST = 0, 1, 2  # tick_pull's kind codes (jitter.Pull)
MIN_DEPTH, MAX_DEPTH, CAPACITY, PTIME_S, CLOCK = 1, 10, 50, 0.02, 8000
FALLBACK_ROWS = 256
FALLBACK_MAXLEN = 2048


class SlotArrays:
    """Every per-slot array for ``n`` slots, plus the fallback rows; grows by doubling."""

    __slots__ = ("fds", "expect", "pt_mask", "ring", "ring_ext", "ring_len", "js", "jf",
                 "logs", "log_n", "last", "pcm", "kind", "active", "law",
                 "fb_buf", "fb_len", "fb_addr", "fb_ts", "fb_leg", "n")  # fmt: skip

    def __init__(self, n: int, ring: int = RING, log_rows: int = LOG_ROWS) -> None:
        self.n = 0
        self._alloc(n, ring, log_rows)
        self.fb_buf = np.zeros((FALLBACK_ROWS, FALLBACK_MAXLEN), np.uint8)
        self.fb_len = np.zeros(FALLBACK_ROWS, np.int32)
        self.fb_addr = np.zeros(FALLBACK_ROWS, ADDR_DTYPE)
        self.fb_ts = np.zeros(FALLBACK_ROWS, np.int64)
        self.fb_leg = np.zeros(FALLBACK_ROWS, np.int32)

    def _alloc(self, n: int, ring: int, log_rows: int) -> None:
        self.n = n
        self.fds = np.full(n, -1, np.int32)
        self.expect = np.zeros((n, ADDR_SIZE), np.uint8)
        self.pt_mask = np.zeros((n, 128), np.uint8)
        self.ring = np.zeros((n, ring * SLOT), np.uint8)
        self.ring_ext = np.full((n, ring), NONE, np.int64)
        self.ring_len = np.zeros((n, ring), np.int16)
        self.js = np.zeros((n, NJS), np.int64)
        self.jf = np.zeros((n, 2), np.float64)
        self.logs = np.zeros((n, log_rows), PACKET_DTYPE)
        self.log_n = np.zeros(n, np.int32)
        self.last = np.zeros((n, SLOT), np.int16)
        self.pcm = np.zeros((n, SLOT), np.int16)
        self.kind = np.zeros(n, np.uint8)
        self.active = np.zeros(n, np.uint8)
        self.law = np.zeros(n, np.uint8)

    def grow(self, n: int) -> None:
        old = {k: getattr(self, k) for k in self.__slots__[:15]}
        k0 = self.n
        self._alloc(n, old["ring_ext"].shape[1], old["logs"].shape[1])
        for k, arr in old.items():
            getattr(self, k)[:k0] = arr

    def reset(self, i: int) -> None:
        """Slot i as a fresh jitter buffer with nothing latched (a leg joining)."""
        self.fds[i] = -1
        self.expect[i] = 0
        self.pt_mask[i] = 0
        self.ring_ext[i] = NONE
        self.ring_len[i] = 0
        self.js[i] = 0
        self.js[i, JS_NEXT] = self.js[i, JS_HIGHEST] = NONE
        self.js[i, JS_LAST_LEN] = SLOT
        self.js[i, JS_PREV_SEQ] = -1
        self.jf[i] = (0.0, math.nan)
        self.log_n[i] = 0
        self.last[i] = 0
        self.active[i] = 0

    def recv_args(self) -> tuple[np.ndarray, ...]:
        return (self.fds, self.expect, self.pt_mask, self.ring, self.ring_ext, self.ring_len,
                self.js, self.jf, self.logs, self.log_n, self.fb_buf, self.fb_len, self.fb_addr,
                self.fb_ts, self.fb_leg)  # fmt: skip

    def pull_args(self, dtab: np.ndarray) -> tuple[np.ndarray, ...]:
        return (self.active, self.js, self.jf, self.ring, self.ring_ext, self.ring_len,
                self.law, dtab, self.last, self.pcm, self.kind)  # fmt: skip


# --------------------------------------------------------------------------- jitter ring


class _Jb:
    """One slot's jitter state as views into the arrays (the twin's working object)."""

    __slots__ = ("ext", "jf", "js", "len", "mask", "ring")

    def __init__(self, a: Any, i: int) -> None:
        self.js, self.jf = a[6][i], a[7][i]
        self.ring, self.ext, self.len = a[3][i], a[4][i], a[5][i]
        self.mask = len(self.ext) - 1


def _restart(b: _Jb) -> None:
    b.ext[:] = NONE
    b.js[JS_COUNT] = 0
    b.js[JS_NEXT] = b.js[JS_HIGHEST] = NONE
    b.js[JS_PLAYING] = 0


def _remove(b: _Jb, e: int) -> None:
    b.ext[e & b.mask] = NONE
    b.js[JS_COUNT] -= 1
    if b.js[JS_NEXT] != NONE and b.js[JS_NEXT] <= e:
        b.js[JS_NEXT] = e + 1


def _target(b: _Jb) -> int:
    want = 1 + math.ceil(2 * float(b.jf[JF_JITTER]) / PTIME_S)
    return max(MIN_DEPTH, min(MAX_DEPTH, want))


def _put(b: _Jb, seq: int, ts: int, payload: bytes, arrival_ns: int) -> None:
    js, jf = b.js, b.jf
    hi, nxt = int(js[JS_HIGHEST]), int(js[JS_NEXT])
    ref = hi if hi != NONE else seq
    e = ref + ((seq - ref + 0x8000) & 0xFFFF) - 0x8000
    transit = arrival_ns / 1e9 - ts / CLOCK
    last = float(jf[JF_TRANSIT])
    if not math.isnan(last):
        d = abs(transit - last)
        if d < 1.0:
            jf[JF_JITTER] += (d - float(jf[JF_JITTER])) / 16
    jf[JF_TRANSIT] = transit
    if nxt != NONE and e < nxt:
        if not js[JS_PLAYING] and nxt - e <= CAPACITY:
            js[JS_NEXT] = e
        elif nxt - e > MAX_DEPTH * 4:
            _restart(b)
            e = seq
        else:
            js[JS_LATE] += 1
            return
    hi = int(js[JS_HIGHEST])
    if hi != NONE and e - hi > MAX_DEPTH * 4 + CAPACITY:
        _restart(b)
        e = seq
    s = e & b.mask
    if b.ext[s] == e:
        js[JS_DUP] += 1
        return
    if b.ext[s] != NONE:  # ring collision: the older packet goes
        js[JS_OVERFLOWS] += 1
        _remove(b, int(b.ext[s]))
    n = len(payload)
    b.ext[s] = e
    b.len[s] = n
    b.ring[s * SLOT : s * SLOT + n] = np.frombuffer(payload, np.uint8)
    js[JS_COUNT] += 1
    if js[JS_HIGHEST] == NONE or e > js[JS_HIGHEST]:
        js[JS_HIGHEST] = e
    if js[JS_NEXT] == NONE or (e < js[JS_NEXT] and not js[JS_PLAYING]):
        js[JS_NEXT] = e
    while js[JS_COUNT] > CAPACITY:
        js[JS_OVERFLOWS] += 1
        _remove(b, int(b.ext[b.ext != NONE].min()))


def jitter_put(a: SlotArrays, i: int, seq: int, ts: int, payload: bytes, arrival_ns: int) -> None:
    """Put one packet into slot i's jitter ring (the Python path's media: first packets)."""
    _put(_Jb(a.recv_args(), i), seq, ts, payload[:SLOT], arrival_ns)


def _pull(b: _Jb) -> tuple[int, int]:
    js = b.js
    target = _target(b)
    if not js[JS_PLAYING]:
        if js[JS_NEXT] == NONE or js[JS_COUNT] < target:
            return EMPTY, 0
        js[JS_PLAYING] = 1
    if js[JS_COUNT] == 0:
        js[JS_PLAYING] = 0
        js[JS_UNDERRUNS] += 1
        return EMPTY, 0
    e = int(js[JS_NEXT])
    s = e & b.mask
    found = b.ext[s] == e
    if found:
        b.ext[s] = NONE
        js[JS_COUNT] -= 1
    js[JS_NEXT] = e + 1
    if not found:
        js[JS_LOST] += 1
        return LOST, 0
    if js[JS_COUNT] > 2 * target + 2:
        n = e + 1
        if b.ext[n & b.mask] == n:
            b.ext[n & b.mask] = NONE
            js[JS_COUNT] -= 1
        js[JS_NEXT] = n + 1
    return PACKET, s


# --------------------------------------------------------------------------- twins

_HDR = struct.Struct("!BBHII")


def _same_addr(a: bytes, e: bytes) -> bool:
    fam = struct.unpack_from("=H", e)[0]
    if fam not in (socket.AF_INET, socket.AF_INET6) or a[:4] != e[:4]:
        return False
    return a[4:8] == e[4:8] if fam == socket.AF_INET else a[8:28] == e[8:28]


def _check_widths(a: tuple[np.ndarray, ...]) -> None:
    n = len(a[0])
    if any(len(x) != n for x in a[1:10]):
        raise ValueError("per-slot arrays must have one row per slot")
    r = a[4].shape[1]
    if (
        a[1].shape[1] != ADDR_SIZE
        or a[2].shape[1] != 128
        or a[3].shape[1] != r * SLOT
        or a[5].shape[1] != r
        or a[6].shape[1] != NJS
        or a[7].shape[1] != 2
        or r & (r - 1)
    ):
        raise ValueError("per-slot arrays have the wrong widths")  # fmt: skip
    if a[8].dtype != PACKET_DTYPE:
        raise TypeError("logs must be a PACKET_DTYPE array")


def _tick_recv_py(fds, expect, pt_mask, ring, ring_ext, ring_len, js, jf, logs, log_n,
                  fb_buf, fb_len, fb_addr, fb_ts, fb_leg, fb_n, clock_offset_ns, now_ns):  # fmt: skip
    a = (fds, expect, pt_mask, ring, ring_ext, ring_len, js, jf, logs, log_n)
    _check_widths(a)
    nfb, maxlen = fb_buf.shape
    if not 0 <= fb_n <= nfb:
        raise ValueError("fb_n out of range")
    k_rows = logs.shape[1]
    n_acc = 0
    complete = 1
    araw = fb_addr.view(np.uint8).reshape(nfb, ADDR_SIZE)
    for i in range(len(fds)):
        fd = int(fds[i])
        if fd < 0:
            continue
        exp = expect[i].tobytes()
        b = None
        while True:
            room = min(nfb - fb_n, k_rows - int(log_n[i]))  # the rest stays queued
            if room <= 0:
                complete = 0
                break
            want = min(room, 64)
            got = recv_batch(fd, fb_buf[fb_n : fb_n + want], fb_len[fb_n : fb_n + want],
                             fb_addr[fb_n : fb_n + want], fb_ts[fb_n : fb_n + want], want)  # fmt: skip
            base = fb_n
            for j in range(got):
                row = base + j
                n = int(fb_len[row])
                p = fb_buf[row]
                t = int(fb_ts[row])
                b0, b1 = int(p[0]), int(p[1])
                ok = (
                    12 <= n <= maxlen
                    and b0 == 0x80
                    and not 192 <= b1 <= 223
                    and pt_mask[i, b1 & 0x7F] != 0
                    and n - 12 <= SLOT
                    and log_n[i] < k_rows
                    and _same_addr(araw[row].tobytes(), exp)
                )
                if not ok:
                    if fb_n != row:
                        fb_buf[fb_n, : min(n, maxlen)] = p[: min(n, maxlen)]
                        araw[fb_n] = araw[row]
                    fb_len[fb_n], fb_ts[fb_n], fb_leg[fb_n] = n, t, i
                    fb_n += 1
                    continue
                arrival = t - clock_offset_ns if t else now_ns
                _, _, seq, ts, ssrc = _HDR.unpack_from(p[:12].tobytes())
                logs[i, log_n[i]] = (arrival, seq, ts, ssrc, b1 & 0x7F, b1 >> 7, n)
                log_n[i] += 1
                js[i, JS_RX_PACKETS] += 1
                js[i, JS_RX_BYTES] += n
                js[i, JS_LAST_ARRIVAL] = arrival
                prev = int(js[i, JS_PREV_SEQ])  # the session's loss-run watch for DTMF
                if prev < 0 or (seq - prev) & 0xFFFF < 0x8000:
                    gap = 0 if prev < 0 else (seq - prev - 1) & 0xFFFF
                    if js[i, JS_MAX_GAP] < gap < MAX_DROPOUT:
                        js[i, JS_MAX_GAP] = gap
                    js[i, JS_PREV_SEQ] = seq
                n_acc += 1
                if b is None:
                    b = _Jb(a, i)
                _put(b, seq, ts, p[12:n].tobytes(), arrival)
            if got < want:
                break
    return fb_n, n_acc, complete


def _tick_pull_py(active, js, jf, ring, ring_ext, ring_len, law, dtab, last, pcm, kind) -> None:
    n = len(active)
    if any(len(x) != n for x in (js, jf, ring, ring_ext, ring_len, law, last, pcm, kind)):
        raise ValueError("per-slot arrays must have one row per slot")
    if dtab.shape[1] != 256 or last.shape[1] != SLOT or pcm.shape[1] != SLOT:
        raise ValueError("per-slot arrays have the wrong widths")
    if bool((law[active != 0] >= len(dtab)).any()):
        raise ValueError("law out of range")
    a = (None, None, None, ring, ring_ext, ring_len, js, jf)
    kind[:] = EMPTY
    pcm[:] = 0
    for i in np.flatnonzero(active).tolist():
        b = _Jb(a, i)
        k, s = _pull(b)
        kind[i] = k
        if k == PACKET:
            m = int(ring_len[i, s])
            dec = dtab[law[i]][ring[i, s * SLOT : s * SLOT + m]]
            pcm[i, :m] = dec
            last[i, :m] = dec
            js[i, JS_LAST_LEN] = m
            js[i, JS_CONCEALED] = 0
        elif k == LOST:
            js[i, JS_CONCEALED] += 1
            c, m = int(js[i, JS_CONCEALED]), int(js[i, JS_LAST_LEN])
            if c <= 3 and m:
                gain = 1.0 - c / 4
                base = np.resize(last[i, :m], SLOT).astype(np.float64)
                pcm[i] = (base * gain).astype(np.int16)


def _send_rows_py(fds, buf, lengths, addrs, count) -> tuple[int, int, int]:
    cap = min(len(fds), len(buf), len(lengths), len(addrs))
    if not 0 <= count <= cap:
        raise ValueError(f"count must be in 0..{cap} (the smallest buffer), got {count}")
    maxlen = buf.shape[1]
    for i in range(count):
        if not 0 <= lengths[i] <= maxlen:
            raise ValueError(f"lengths[{i}]={lengths[i]} is outside 0..{maxlen}")
    flat = memoryview(addrs.view(np.uint8).reshape(-1))
    sent = failed = first = 0
    for i in range(count):
        fd = int(fds[i])
        fam = int(addrs[i]["family"])
        if fd < 0 or fam not in (socket.AF_INET, socket.AF_INET6):
            continue
        dest = _unpack_addr(flat, i * ADDR_SIZE)[1]
        s = socket.socket(fam, socket.SOCK_DGRAM, fileno=fd)
        try:
            s.sendto(buf[i, : lengths[i]].tobytes(), socket.MSG_DONTWAIT, dest)
            sent += 1
        except OSError as exc:
            failed += 1
            if not first and exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                first = exc.errno or errno.EIO
        finally:
            s.detach()
    return sent, failed, first


LEVEL_FLOOR = 30.0**2  # gateway.rtp.mixer.LEVEL_FLOOR


def _mix_tick_py(pcm, kind, rows, grp, starts, talkers, quiet, lobby, extra, own, law, etab,
                 level, sel, meeting, pkt) -> None:  # fmt: skip
    """Twin of native/mixrecv.c ``mix_tick``: the AudioMixer's tick rules, every meeting."""
    nrow, ngrp = len(rows), len(starts)
    if (
        pcm.shape[1] != SLOT
        or len(kind) != len(pcm)
        or len(law) != len(pcm)
        or any(len(x) != nrow for x in (grp, quiet, lobby, own, level, sel, pkt))
        or any(len(x) != ngrp for x in (talkers, extra, meeting))
        or pkt.shape[1] < 12 + SLOT
        or etab.shape[1] != 65536
    ):
        raise ValueError("mix_tick arrays have inconsistent shapes")  # fmt: skip
    if nrow and (
        rows.min() < 0
        or rows.max() >= len(pcm)
        or grp.min() < 0
        or grp.max() >= ngrp
        or law[rows].max() >= len(etab)
    ):
        raise ValueError("rows, grp or law out of range")  # fmt: skip
    if ngrp and (starts.min() < 0 or starts.max() > nrow or np.any(np.diff(starts) < 0)):
        raise ValueError("starts must be ascending offsets into rows")
    if not nrow:
        meeting[:] = extra
        return
    frames = pcm[rows].astype(np.int32)
    f = frames.astype(np.float64)
    lv = np.einsum("ij,ij->i", f, f) / SLOT  # exact sums: int16 squares
    lv[(quiet != 0) | (kind[rows] == EMPTY)] = 0.0
    level[:] = lv
    order = np.lexsort((-lv, grp))
    rank = np.arange(nrow) - starts[grp[order]]
    picked = np.zeros(nrow, bool)
    picked[order] = (rank < talkers[grp[order]]) & (lv[order] >= LEVEL_FLOOR)
    sel[:] = picked
    contrib = frames * picked[:, None]
    ends = np.r_[starts[1:], nrow]
    summed = np.zeros((ngrp, SLOT), np.int64)
    nonempty = ends > starts
    if nonempty.any():
        summed[nonempty] = np.add.reduceat(contrib, starts[nonempty], axis=0)
    meeting[:] = extra + summed
    out = meeting[grp].astype(np.int64) - contrib + own
    lob = lobby != 0
    out[lob] = own[lob]
    np.clip(out, -32768, 32767, out=out)
    pkt[:, 12 : 12 + SLOT] = etab[law[rows][:, None], out + 32768]


class Implementation(NamedTuple):
    tick_recv: Callable[..., tuple[int, int, int]]
    tick_pull: Callable[..., None]
    send_rows: Callable[..., tuple[int, int, int]]
    mix_tick: Callable[..., None]


IMPLEMENTATIONS: dict[str, Implementation] = {
    "python": Implementation(_tick_recv_py, _tick_pull_py, _send_rows_py, _mix_tick_py)
}
try:
    if os.environ.get("VTCGW_NO_NATIVE"):
        raise ImportError("VTCGW_NO_NATIVE is set")
    from gateway import _mixrecv as _native  # type: ignore[attr-defined]

    IMPLEMENTATIONS["native"] = Implementation(
        _native.tick_recv, _native.tick_pull, _native.send_rows, _native.mix_tick
    )
    HAVE_NATIVE = True
except (ImportError, AttributeError):
    HAVE_NATIVE = False

_impl = IMPLEMENTATIONS["native" if HAVE_NATIVE else "python"]
tick_recv = _impl.tick_recv
tick_pull = _impl.tick_pull
send_rows = _impl.send_rows
mix_tick = _impl.mix_tick
