"""The relay hub: every relayed leg's RTP socket drained and forwarded with one wake-up.

At tens of packets per second per stream, each socket wake-up carries one packet; reading
each relayed leg on its own event-loop reader paid the loop's callback, the leg's Python
batch path and a native call per packet. The hub instead keeps the RTP sockets of all
relayed legs (:meth:`MediaPlane.relay`) in one private epoll set, whose fd is the one
reader on the loop. Its callback makes one native call, :func:`hub_relay`
(native/relayhub.c, GIL released), that reads every ready socket with recvmmsg, and for
plain media from the leg's latched source writes one PACKET_DTYPE row into the leg's log
region and sends the datagram to the peer with sendmmsg; it loops until no socket is
ready or a budget is reached.

What the hub does not accept (first packets before latching, telephone-events, RTCP-mux,
wrong sources, SRTP legs, legs not expecting media) comes back as fallback rows and goes
through the leg's ordinary ``receive`` (latching, DTMF, RTCP, stray counts) exactly as
before; after that the leg's table row is brought up to date (a new latch, say).

Per-leg state the C side reads lives in one table row per slot (``HUB_DTYPE``), written
only by :meth:`RelayHub.sync` from the legs' sessions: after a leg's fallback rows (a new
latch), and when a leg's session configuration changed (re-INVITE: destination, hold,
payload types, SRTP; checked each ``FOLD_S``). The C side's per-slot counters (deltas),
log rows and DTMF loss-run tracking are folded into the legs' sessions each ``FOLD_S``
(a 1/``FOLD_PHASES`` share of the slots per tick, so no tick pauses the loop for long),
before a leg leaves the hub, and when someone reads ``leg.stats()``
(:meth:`RelayHub.sync_leg`): the quality engine, RTCP reports and the media timeout see
the same figures as with per-leg reading, at most ``FOLD_S`` late.

Relayed legs' RTCP sockets keep their own readers (a few packets per second).

:func:`hub_relay` has a pure-Python/NumPy twin, ``_hub_relay_py``, with the identical
signature and results (``IMPLEMENTATIONS``; ``VTCGW_NO_NATIVE=1`` forces it). The plane uses
the hub when the native batch I/O is in use, unless ``VTCGW_NO_RELAY_HUB=1``
(:func:`wanted`; a plane's ``use_relay_hub`` attribute overrides both).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.quality.records import PACKET_DTYPE
from gateway.rtp import udpbatch as ub
from gateway.rtp.session import MAX_DROPOUT, Channel

if TYPE_CHECKING:
    from gateway.rtp.leg import RtpLeg
    from gateway.rtp.plane import MediaPlane

__all__ = [
    "FB_DTYPE",
    "HAVE_NATIVE",
    "HUB_DTYPE",
    "IMPLEMENTATIONS",
    "NCOUNTERS",
    "RelayHub",
    "hub_relay",
    "wanted",
]

ADDR_SIZE = ub.ADDR_SIZE
# one table row per slot (192 bytes): what the C side needs to relay one leg's socket
HUB_DTYPE = np.dtype(
    {
        "names": ["fd", "out_fd", "expect", "dest", "mask"],
        "formats": ["<i4", "<i4", (np.void, ADDR_SIZE), (np.void, ADDR_SIZE), ("u1", (128,))],
        "offsets": [0, 4, 8, 36, 64],
        "itemsize": 192,
    }
)
# one row per datagram handed back to Python (48 bytes); its payload is the fb_buf row
FB_DTYPE = np.dtype(
    {
        "names": ["len", "slot", "arrival_ns", "addr"],
        "formats": ["<i4", "<i4", "<i8", (np.void, ADDR_SIZE)],
        "offsets": [0, 4, 8, 16],
        "itemsize": 48,
    }
)
# counter columns (int64 deltas since the last fold), and the DTMF loss-run tracking: C_NEWEST
# is 1 + the newest sequence number (0: none; seeded from the session), C_MAX_GAP the longest
# run of missing sequence numbers since the last fold (the session's per-packet rule)
(
    C_RX_PACKETS, C_RX_BYTES, C_LAST_RX_NS, C_TX_PACKETS, C_TX_BYTES, C_LAST_TX_TS,
    C_LAST_TX_NS, C_SEND_ERRORS, C_SEND_ERRNO, C_BATCHES, C_LOG_N, C_FALLBACK,
    C_NEWEST, C_MAX_GAP, NCOUNTERS,
) = range(15)  # fmt: skip
CHUNK = 64  # datagrams per recvmmsg
EVENTS = 64  # ready sockets per epoll_wait

FOLD_S = 0.5  # each leg's counters and log rows into its session, its table row re-checked
# ... 1/FOLD_PHASES of the slots (slot % FOLD_PHASES, odd: a pair's two slots fall in
# different phases) every FOLD_S / FOLD_PHASES: no long pause on the loop
FOLD_PHASES = 25
LOG_ROWS = 256  # per leg between folds: 0.5 s at 500 pps (a full region is folded at once)
FALLBACK_ROWS = 256
BUDGET = 1024  # datagrams per native call
ROUNDS = 8  # native calls per wake-up before yielding to the loop
MAXLEN = 2048


# --------------------------------------------------------------------------- fallback
def _epoll_of(ep: Any) -> tuple[Any, bool]:
    """A select.epoll for ep (an epoll object, or an fd we must not close)."""
    if isinstance(ep, int):
        return select.epoll.fromfd(os.dup(ep)), True
    if hasattr(ep, "poll"):
        return ep, False
    return select.epoll.fromfd(os.dup(ep.fileno())), True


def _check(obj: Any, itemsize: int, ndim: int, writable: bool, name: str) -> np.ndarray:
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"{name} must be a C-contiguous buffer") from None
    if mv.itemsize != itemsize or mv.ndim != ndim:
        raise TypeError(f"{name} has the wrong item size or dimensions")
    if writable and mv.readonly:
        raise TypeError(f"{name} must be writable")
    if not mv.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return np.asarray(obj)


_HDR = struct.Struct("!BBHII")


def _hub_relay_py(
    ep: Any,
    table: Any,
    counters: Any,
    logs: Any,
    fd_slot: Any,
    scratch: Any,
    fb_buf: Any,
    fb_meta: Any,
    clock_offset_ns: int,
    now_ns: int,
    budget: int,
) -> tuple[int, int, int]:
    """One hub pass over the ready sockets of ``ep`` (twin of native/relayhub.c).

    * ``ep``: the epoll set (a ``select.epoll`` or its fd) holding the legs' RTP sockets,
      each registered for EPOLLIN with its own fd as the event data.
    * ``table``: HUB_DTYPE rows, one per slot; ``fd_slot`` (int32): slot of each fd, -1 none.
      A ready fd is read only when ``fd_slot[fd]`` is a slot whose ``fd`` field is that fd.
    * ``counters``: int64 (slots, NCOUNTERS), ``logs``: PACKET_DTYPE (slots, rows); slot i's
      accepted datagrams get rows ``logs[i, counters[i, C_LOG_N]]...`` and C_LOG_N grows.
    * ``scratch``: uint8 (rows, maxlen): receive rows (at most 64 per recvmmsg).
    * ``fb_buf`` uint8 (F, fbmax) and ``fb_meta`` FB_DTYPE (F): the datagrams handed back,
      rows 0..n_fallback-1 (payload truncated to min(maxlen, fbmax); ``len`` the wire size).

    Per ready socket, one receive of at most min(scratch rows, 64, free log rows of the slot,
    free fallback rows, budget left) datagrams. A datagram is accepted when the slot's
    ``expect`` holds an AF_INET/AF_INET6 source equal to the datagram's (family, port,
    address; IPv6 also the scope), it was not truncated (size <= maxlen), it is RTP v2 with
    room for its CSRCs, not RTCP-mux (second byte 192..223), and ``mask[pt]`` is non-zero.
    Accepted: one log row (arrival = kernel stamp - clock_offset_ns, ``now_ns`` without one),
    counters C_RX_*, C_BATCHES, and, when ``out_fd`` >= 0 and ``dest`` holds an address, one
    sendmmsg to dest (C_TX_*; a send error is counted in C_SEND_ERRORS/C_SEND_ERRNO; EAGAIN
    is loss), and the session's DTMF loss-run rule runs on its sequence number (C_NEWEST,
    C_MAX_GAP: see their definition). Others: a fallback row (C_FALLBACK). Polls again only when the last poll
    filled its 64 events (what arrives later makes the set readable again). Returns (n_accepted, n_fallback, status): status 0 done, 1 budget reached or
    fallback rows full (or EINTR), 2 a ready slot's log region is full (fold, call again).
    """
    tab = _check(table, HUB_DTYPE.itemsize, 1, False, "table")
    cnt = _check(counters, 8, 2, True, "counters")
    lg = _check(logs, PACKET_DTYPE.itemsize, 2, True, "logs")
    fds = _check(fd_slot, 4, 1, False, "fd_slot")
    scr = _check(scratch, 1, 2, True, "scratch")
    fbb = _check(fb_buf, 1, 2, True, "fb_buf")
    fbm = _check(fb_meta, FB_DTYPE.itemsize, 1, True, "fb_meta")
    nslots = len(tab)
    if cnt.shape[1] != NCOUNTERS or cnt.shape[0] != nslots or lg.shape[0] != nslots:
        raise ValueError(
            f"counters must be (slots, {NCOUNTERS}) and logs (slots, rows) for {nslots} slots"
        )
    srows, maxlen = scr.shape
    fb_rows, fb_maxlen = min(fbb.shape[0], len(fbm)), fbb.shape[1]
    if maxlen < 12 or srows < 1 or fb_maxlen < 1:
        raise ValueError("scratch and fb_buf need rows of 12+ and 1+ bytes")
    if budget < 0:
        raise ValueError("budget must be >= 0")
    log_rows = lg.shape[1]
    bad = np.flatnonzero((cnt[:, C_LOG_N] < 0) | (cnt[:, C_LOG_N] > log_rows))
    if len(bad):
        raise ValueError(f"counters[{bad[0]}, C_LOG_N] is outside 0..{log_rows}")
    tab = tab.view(HUB_DTYPE)
    fds = fds.view(np.int32)
    lg = lg.view(PACKET_DTYPE)
    fbm = fbm.view(FB_DTYPE)
    epoll, close_ep = _epoll_of(ep)
    st = {"acc": 0, "fb": 0, "total": 0, "status": 0}
    try:
        while True:
            if st["total"] >= budget:
                st["status"] = 1
                break
            try:
                ready = epoll.poll(0, EVENTS)
            except InterruptedError:  # pragma: no cover - PEP 475 retries in Python
                st["status"] = 1
                break
            if not ready:
                break
            progressed = False
            stop = False
            for fd, _ev in ready:
                if not 0 <= fd < len(fds):
                    continue
                slot = int(fds[fd])
                if not 0 <= slot < nslots or int(tab["fd"][slot]) != fd:
                    continue
                r = _drain_one_py(
                    st, tab[slot], cnt[slot], lg[slot], scr, fbb, fbm, fb_rows, fb_maxlen,
                    slot, fd, clock_offset_ns, now_ns, budget,
                )  # fmt: skip
                if r < 0:
                    stop = True
                    break
                progressed |= bool(r)
            if stop or not progressed or st["status"]:
                break
            if st["total"] >= budget or st["fb"] >= fb_rows:
                st["status"] = 1
                break
            if len(ready) < EVENTS:
                break
    finally:
        if close_ep:
            epoll.close()
    return st["acc"], st["fb"], st["status"]


def _drain_one_py(
    st: dict, row: Any, c: np.ndarray, lg: np.ndarray, scr: np.ndarray, fbb: np.ndarray,
    fbm: np.ndarray, fb_rows: int, fb_maxlen: int, slot: int, fd: int, clock_off: int,
    now_ns: int, budget: int,
) -> int:  # fmt: skip
    srows, maxlen = scr.shape
    room_log = lg.shape[0] - int(c[C_LOG_N])
    room_fb = fb_rows - st["fb"]
    left = budget - st["total"]
    if room_fb <= 0 or left <= 0:
        st["status"] = 1
        return -1
    if room_log <= 0:
        st["status"] = 2
        return 0
    vlen = min(srows, CHUNK, room_log, room_fb, left)
    sock = socket.socket(fileno=fd)
    got: list[tuple[int, int, bytes]] = []  # (row, wire size, addr slot)
    arrivals: list[int] = []
    try:
        flat = memoryview(scr).cast("B")
        ancsize = socket.CMSG_SPACE(16)
        flags = socket.MSG_DONTWAIT | socket.MSG_TRUNC
        addr_slot = np.zeros(1, ub.ADDR_DTYPE)
        for i in range(vlen):
            try:
                n, anc, _fl, addr = sock.recvmsg_into(
                    [flat[i * maxlen : (i + 1) * maxlen]], ancsize, flags
                )
            except BlockingIOError:
                break
            except InterruptedError:  # pragma: no cover
                st["status"] = 1
                return -1
            except OSError:
                if not got:  # a queued ICMP error: reported once, then gone; it counts
                    st["total"] += 1  # against the budget (a failing socket cannot spin)
                    return 1
                break
            t = 0
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == ub.SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("=qq", data)
                    t = sec * 1_000_000_000 + nsec
            arrivals.append(t - clock_off if t else now_ns)
            ub.set_addr(addr_slot, 0, addr)
            got.append((i, n, addr_slot.tobytes()))
    finally:
        sock.detach()
    if not got:
        return 0
    st["total"] += len(got)
    expect = bytes(row["expect"])
    efam = struct.unpack_from("=H", expect)[0]
    mask = row["mask"]
    out_fd = int(row["out_fd"])
    dest = bytes(row["dest"])
    dfam = struct.unpack_from("=H", dest)[0]
    sending = out_fd >= 0 and dfam in (socket.AF_INET, socket.AF_INET6)
    cols = slice(0, 8) if efam == socket.AF_INET else None
    acc_rows: list[tuple[int, int]] = []  # (scratch row, wire size)
    nbytes = 0
    last_ts = 0
    last_arrival = 0
    for (i, n, addr), arrival in zip(got, arrivals, strict=True):
        ok = False
        if efam in (socket.AF_INET, socket.AF_INET6) and 12 <= n <= maxlen:
            b0, b1, seq, ts, ssrc = _HDR.unpack_from(scr[i, :12].tobytes())
            same = addr[:4] == expect[:4] and (
                addr[cols] == expect[cols] if cols is not None else addr[8:] == expect[8:]
            )
            ok = (
                b0 >> 6 == 2
                and n >= 12 + 4 * (b0 & 0x0F)
                and not 192 <= b1 <= 223
                and bool(mask[b1 & 0x7F])
                and same
            )
        if not ok:
            k = st["fb"]
            fbm[k] = (min(n, 0x7FFFFFFF), slot, arrival, addr)
            copy = min(n, maxlen, fb_maxlen)
            fbb[k, :copy] = scr[i, :copy]
            st["fb"] += 1
            c[C_FALLBACK] += 1
            continue
        j = int(c[C_LOG_N])
        lg[j] = (arrival, seq, ts, ssrc, b1 & 0x7F, b1 >> 7, min(n, 0xFFFF))
        c[C_LOG_N] += 1
        top = int(c[C_NEWEST]) - 1
        if top < 0 or (seq - top) & 0xFFFF < 0x8000:
            gap = (seq - top - 1) & 0xFFFF
            if top >= 0 and gap < MAX_DROPOUT and gap > c[C_MAX_GAP]:
                c[C_MAX_GAP] = gap
            c[C_NEWEST] = seq + 1
        nbytes += n
        last_ts, last_arrival = ts, arrival
        acc_rows.append((i, n))
    if not acc_rows:
        return 1
    k = len(acc_rows)
    st["acc"] += k
    c[C_RX_PACKETS] += k
    c[C_RX_BYTES] += nbytes
    c[C_LAST_RX_NS] = last_arrival
    c[C_BATCHES] += 1
    if sending:
        family, dst = ub._unpack_addr(memoryview(dest), 0)
        out = socket.socket(family, socket.SOCK_DGRAM, fileno=out_fd)
        err = 0
        try:
            for i, size in acc_rows:
                try:
                    out.sendto(scr[i, :size].tobytes(), socket.MSG_DONTWAIT, dst)
                except BlockingIOError:
                    break
                except OSError as exc:
                    err = exc.errno or errno.EIO
                    break
                except TypeError:  # the other address family
                    err = errno.EAFNOSUPPORT
                    break
        finally:
            out.detach()
        c[C_TX_PACKETS] += k
        c[C_TX_BYTES] += nbytes
        c[C_LAST_TX_TS] = last_ts
        c[C_LAST_TX_NS] = last_arrival
        if err:
            c[C_SEND_ERRORS] += 1
            c[C_SEND_ERRNO] = err
    return 1


IMPLEMENTATIONS: dict[str, Callable[..., tuple[int, int, int]]] = {"python": _hub_relay_py}
try:
    if os.environ.get("VTCGW_NO_NATIVE"):
        raise ImportError("VTCGW_NO_NATIVE is set")
    from gateway import _relayhub as _native  # type: ignore[attr-defined]

    IMPLEMENTATIONS["native"] = _native.hub_relay
    HAVE_NATIVE = True
except (ImportError, AttributeError):
    HAVE_NATIVE = False
hub_relay = IMPLEMENTATIONS["native" if HAVE_NATIVE else "python"]


def wanted(plane: MediaPlane) -> bool:
    """Whether ``plane.relay`` puts legs on the hub: the plane's ``use_relay_hub`` when set,
    else when the plane reads with the native batch I/O and ``VTCGW_NO_RELAY_HUB`` is unset."""
    own = plane.use_relay_hub
    if own is not None:
        return bool(own)
    return bool(plane.use_batch and HAVE_NATIVE and not os.environ.get("VTCGW_NO_RELAY_HUB"))


def _slot_of(addr: tuple | None) -> bytes:
    if addr is None:
        return bytes(ADDR_SIZE)
    a = np.zeros(1, ub.ADDR_DTYPE)
    ub.set_addr(a, 0, addr)
    return a.tobytes()


# --------------------------------------------------------------------------- the hub
class RelayHub:
    """One plane's relayed legs on one epoll reader (created by ``MediaPlane.relay``)."""

    def __init__(self, plane: MediaPlane, capacity: int = 64) -> None:
        self.plane = plane
        self._ep = select.epoll()
        self._legs: list[RtpLeg | None] = []
        self._keys: list[tuple | None] = []
        self._seen: list[object] = []  # the session configuration each row was synced for
        self._free: list[int] = []
        self._slot_of: dict[int, int] = {}  # leg id -> slot
        self.table = np.zeros(0, HUB_DTYPE)
        self.counters = np.zeros((0, NCOUNTERS), np.int64)
        self.logs = np.zeros((0, LOG_ROWS), PACKET_DTYPE)
        self._grow(capacity)
        self.fd_slot = np.full(1024, -1, np.int32)
        self.scratch = np.zeros((CHUNK, MAXLEN), np.uint8)
        self.fb_buf = np.zeros((FALLBACK_ROWS, MAXLEN), np.uint8)
        self.fb_meta = np.zeros(FALLBACK_ROWS, FB_DTYPE)
        self._fb_flat = memoryview(self.fb_meta).cast("B")
        self._reading = False
        self._timer: Any = None
        self._phase = 0
        # figures for benchmarks and tests
        self.wakeups = 0
        self.calls = 0
        self.accepted = 0
        self.fallback = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, leg: RtpLeg) -> bool:
        return leg.id in self._slot_of

    # ----- membership ----------------------------------------------------------------
    def join(self, a: RtpLeg, b: RtpLeg) -> None:
        """Carry the relayed pair (a, b): their RTP sockets leave their own readers."""
        for leg in (a, b):
            self._add(leg)
        for leg in (a, b):
            self.sync(leg)

    def leave(self, leg: RtpLeg, *, closing: bool = False) -> None:
        """Take ``leg`` and its relay peer off the hub (unrelay, close): their figures are
        folded in and they read their sockets on their own again (not ``leg`` when closing)."""
        peer = leg.relay_peer
        self._remove(leg, give_back=not closing)
        if peer is not None:
            self._remove(peer, give_back=not peer.closed)

    def _add(self, leg: RtpLeg) -> None:
        if leg.id in self._slot_of or leg.closed:
            return
        if not self._free:
            self._grow(2 * len(self.table))
        slot = self._free.pop()
        leg.take_reader()
        ub.enable_timestamps(leg._rtp_sock)
        fd = leg._rtp_fd
        if fd >= len(self.fd_slot):
            grown = np.full(max(2 * len(self.fd_slot), fd + 1), -1, np.int32)
            grown[: len(self.fd_slot)] = self.fd_slot
            self.fd_slot = grown
        self.table[slot] = np.zeros(1, HUB_DTYPE)[0]
        self.table["fd"][slot] = fd
        self.table["out_fd"][slot] = -1
        self.counters[slot] = 0
        prev = leg.session._prev_seq  # the DTMF loss-run tracking goes on from the session's
        self.counters[slot, C_NEWEST] = 0 if prev is None else prev + 1
        self._legs[slot] = leg
        self._keys[slot] = self._seen[slot] = None
        self._slot_of[leg.id] = slot
        self.fd_slot[fd] = slot
        self._ep.register(fd, select.EPOLLIN)
        if not self._reading:
            self._reading = True
            loop = self.plane.loop
            loop.add_reader(self._ep.fileno(), self._on_readable)
            self._timer = loop.call_later(FOLD_S / FOLD_PHASES, self._on_timer)

    def _remove(self, leg: RtpLeg, *, give_back: bool) -> None:
        slot = self._slot_of.get(leg.id)
        if slot is None:
            return
        self._fold_slot(slot)
        if (peer := leg.relay_peer) is not None and peer.id in self._slot_of:
            self._fold_slot(self._slot_of[peer.id])  # its forwarding counters are ours
        fd = int(self.table["fd"][slot])
        try:
            self._ep.unregister(fd)
        except OSError:  # pragma: no cover - the socket is already closed
            pass
        self.fd_slot[fd] = -1
        self.table[slot] = np.zeros(1, HUB_DTYPE)[0]
        self.table["fd"][slot] = self.table["out_fd"][slot] = -1
        for other in np.flatnonzero(self.table["out_fd"] == fd).tolist():
            self.table["out_fd"][other] = -1  # nobody sends on this socket any more
            self._keys[other] = self._seen[other] = None
        del self._slot_of[leg.id]
        self._legs[slot] = None
        self._keys[slot] = self._seen[slot] = None
        self._free.append(slot)
        if give_back:
            leg.give_reader()
        if not self._slot_of and self._reading:
            self._reading = False
            self.plane.loop.remove_reader(self._ep.fileno())
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _grow(self, n: int) -> None:
        old = len(self.table)
        table = np.zeros(n, HUB_DTYPE)
        table["fd"] = table["out_fd"] = -1
        table[:old] = self.table
        counters = np.zeros((n, NCOUNTERS), np.int64)
        counters[:old] = self.counters
        logs = np.zeros((n, LOG_ROWS), PACKET_DTYPE)
        logs[:old] = self.logs
        self.table, self.counters, self.logs = table, counters, logs
        self._legs += [None] * (n - old)
        self._keys += [None] * (n - old)
        self._seen += [None] * (n - old)
        self._free = list(range(n - 1, old - 1, -1)) + self._free

    # ----- table rows ----------------------------------------------------------------
    def sync(self, leg: RtpLeg) -> None:
        """Bring the leg's table row up to date with its session (latch, destination, PTs)."""
        slot = self._slot_of.get(leg.id)
        if slot is None:
            return
        s = leg.session
        peer = leg.relay_peer
        self._seen[slot] = s.cfg
        fast = (
            peer is not None
            and not peer.closed
            and leg._srtp is None
            and peer._srtp is None
            and s.latched_rtp is not None
            and s.expects_media
        )
        expect = s.latched_rtp if fast else None
        dest = peer.session.rtp_dest if fast and peer.session.sending else None
        out_fd = peer._rtp_fd if dest is not None else -1
        pts = s._media_pts
        key = (expect, pts, dest, out_fd)
        if key == self._keys[slot]:
            return
        self._keys[slot] = key
        row = self.table[slot : slot + 1]
        row["expect"] = np.frombuffer(_slot_of(expect), (np.void, ADDR_SIZE))
        row["dest"] = np.frombuffer(_slot_of(dest), (np.void, ADDR_SIZE))
        row["out_fd"] = out_fd
        mask = np.zeros(128, np.uint8)
        mask[[pt for pt in pts if 0 <= pt < 128]] = 1
        row["mask"] = mask

    def sync_all(self) -> None:
        for leg in [x for x in self._legs if x is not None]:
            self.sync(leg)

    # ----- figures into the sessions -------------------------------------------------
    def _fold_slot(self, slot: int) -> bool:
        """Move slot's log rows and counter deltas into its leg (and its peer's send
        counters). True when there was anything."""
        c = self.counters[slot]
        if not c[C_LOG_N]:
            return False
        self._apply(slot, c.tolist())
        c[:C_NEWEST] = 0  # C_NEWEST goes on
        c[C_MAX_GAP] = 0
        return True

    def _apply(self, slot: int, r: list[int]) -> None:
        """One slot's figures (a counters row as a list) into its leg."""
        leg = self._legs[slot]
        if leg is None:
            return
        s = leg.session
        n = r[C_LOG_N]
        s.log.reserve(n)[:] = self.logs[slot, :n]
        s.log.commit(n)
        if r[C_NEWEST]:  # what the per-packet path tracks for DTMF (a loss run since the
            s._prev_seq = r[C_NEWEST] - 1  # last digit makes the next one suspect)
        if r[C_MAX_GAP] > s._loss_run_since_digit:
            s._loss_run_since_digit = r[C_MAX_GAP]
        s.rx_packets += r[C_RX_PACKETS]
        s.rx_bytes += r[C_RX_BYTES]
        s.last_rx_at = r[C_LAST_RX_NS] / 1e9
        leg.vector_batches += r[C_BATCHES]
        peer = leg.relay_peer
        if peer is None:
            return
        if r[C_TX_PACKETS]:
            peer.session.note_forwarded_batch(
                r[C_TX_PACKETS], r[C_TX_BYTES], r[C_LAST_TX_TS], r[C_LAST_TX_NS] / 1e9
            )
        if r[C_SEND_ERRORS]:
            err = r[C_SEND_ERRNO]
            peer._send_failed(OSError(err, os.strerror(err)))
            peer.send_failures += r[C_SEND_ERRORS] - 1

    def fold(self, phase: int | None = None) -> None:
        """The slots' rows and counters into the sessions: every slot, or those of one phase
        (slot % FOLD_PHASES); the slots with rows are picked in one vectorized pass."""
        c = self.counters
        if phase is None:
            active = np.flatnonzero(c[:, C_LOG_N])
        else:
            active = np.flatnonzero(c[phase::FOLD_PHASES, C_LOG_N]) * FOLD_PHASES + phase
        if not len(active):
            return
        for slot, r in zip(active.tolist(), c[active].tolist(), strict=True):
            self._apply(slot, r)
        c[active, :C_NEWEST] = 0  # C_NEWEST goes on
        c[active, C_MAX_GAP] = 0

    def sync_leg(self, leg: RtpLeg) -> None:
        """Before someone reads ``leg.stats()``: its figures and its peer's, folded now."""
        for x in (leg, leg.relay_peer):
            if x is not None and (slot := self._slot_of.get(x.id)) is not None:
                self._fold_slot(slot)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._reading:
            return
        self._phase = phase = (self._phase + 1) % FOLD_PHASES
        self.fold(phase)
        # a row changes with the legs' configuration (re-INVITE: destination, direction,
        # payload types, SRTP); latching happens on the Python path, which syncs at once
        picked = zip(self._legs[phase::FOLD_PHASES], self._seen[phase::FOLD_PHASES], strict=True)
        for leg, cfg in picked:
            if leg is not None and leg.session.cfg is not cfg:
                self.sync(leg)
                if leg.relay_peer is not None:  # our destination is the peer's row
                    self.sync(leg.relay_peer)
        self._timer = self.plane.loop.call_later(FOLD_S / FOLD_PHASES, self._on_timer)

    # ----- reading -------------------------------------------------------------------
    def _on_readable(self) -> None:
        self.wakeups += 1
        for _ in range(ROUNDS):
            self.calls += 1
            n_acc, n_fb, status = hub_relay(
                self._ep, self.table, self.counters, self.logs, self.fd_slot, self.scratch,
                self.fb_buf, self.fb_meta, self.plane.clock_offset_ns, time.monotonic_ns(),
                BUDGET,
            )  # fmt: skip
            self.accepted += n_acc
            if n_fb:
                self.fallback += n_fb
                self._fallback(n_fb)
            if status == 2:  # a ready slot's log region is full: fold those now
                for slot in np.flatnonzero(self.counters[:, C_LOG_N] >= LOG_ROWS).tolist():
                    self._fold_slot(slot)
            elif status == 0 or not self._reading:
                return

    def _fallback(self, n: int) -> None:
        """The datagrams the hub did not take, through each leg's ordinary path."""
        meta = self.fb_meta[:n]
        slots = meta["slot"].tolist()
        lens = meta["len"].tolist()
        arrivals = meta["arrival_ns"].tolist()
        legs = [self._legs[s] for s in slots]  # before any callback can move a leg
        touched: dict[int, RtpLeg] = {}
        flat = self._fb_flat
        size = FB_DTYPE.itemsize
        for i in range(n):
            leg = legs[i]
            if leg is None or leg.closed:
                continue
            if leg.id not in touched:
                touched[leg.id] = leg
                slot = self._slot_of.get(leg.id)
                # rows the hub took in this call go in first: the session's latch rules
                # look at the last arrival, and the log is sorted when it is taken
                if slot is not None and self._fold_slot(slot):
                    leg.session.log.unordered = True
            data = self.fb_buf[i, : min(lens[i], MAXLEN)].tobytes()
            try:
                addr = ub._unpack_addr(flat, i * size + 16)[1][:2]
            except ValueError:  # no source address: nothing a leg can use
                continue
            leg.receive(data, addr, Channel.RTP, arrivals[i])
        for leg in touched.values():
            if (slot := self._slot_of.get(leg.id)) is not None:  # the Python path moved on
                prev = leg.session._prev_seq
                self.counters[slot, C_NEWEST] = 0 if prev is None else prev + 1
            leg._flush()
            self.sync(leg)  # a new latch moves our source and the peer's destination
            if leg.relay_peer is not None:
                self.sync(leg.relay_peer)
