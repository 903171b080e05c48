"""Batched UDP receive/send over caller-owned NumPy buffers, and RTP header views.

`recv_batch`/`send_batch`/`enable_timestamps` come from the C accelerator
`gateway._udpbatch` (native/udpbatch.c: recvmmsg/sendmmsg, GIL released) when it
was built, else from the pure-Python twins below, which take the same arguments
and give the same results (`HAVE_NATIVE` says which one is in use; both are
always reachable through `IMPLEMENTATIONS`).

Buffer layout (one row per datagram; `BatchBuffers(n, maxlen)` allocates it):

* ``buf``      uint8  (N, maxlen), C-contiguous: the payload of datagram i is
  ``buf[i, :min(lengths[i], maxlen)]``.
* ``lengths``  int32  (N,): the datagram's size on the wire. A received datagram
  larger than ``maxlen`` is truncated to ``maxlen`` bytes (the rest is dropped by
  the kernel) and ``lengths[i] > maxlen`` tells so. For sending, each
  ``lengths[i]`` must be in ``0..maxlen``.
* ``addrs``    ADDR_DTYPE (N,): the raw kernel ``sockaddr`` in a 28-byte slot
  (``sockaddr_in`` zero-padded, or ``sockaddr_in6``); the kernel writes it in
  place and ``sendmmsg`` reads it in place, so no per-packet conversion happens.
  Fields: ``family`` (native u16, AF_INET/AF_INET6), ``port`` (big-endian u16),
  ``addr4`` (big-endian u32: the IPv4 address; for IPv6 the flow info),
  ``addr6`` (16 bytes, IPv6 only), ``scope_id``.
* ``ts_ns``    int64 (N,): kernel receive time from SO_TIMESTAMPNS (CLOCK_REALTIME,
  ns since the epoch), 0 when the socket has no timestamps enabled.

Signatures (both implementations; ``fd`` is an int or anything with ``fileno()``):

* ``recv_batch(fd, buf, lengths, addrs, ts_ns, max_count) -> int``: ``addrs`` and
  ``ts_ns`` may be None; ``max_count`` may not exceed the smallest buffer.
* ``send_batch(fd, buf, lengths, dst_addrs, count) -> int``: ``dst_addrs`` None
  sends on a connected socket. Every row is checked before the first one leaves.
* ``enable_timestamps(fd) -> None``: turns on SO_TIMESTAMPNS.
* ``relay_batch(buf, lengths, addrs, ts_ns, count, expect, pt_mask, rows, accepted,
  clock_offset_ns, now_ns, out_fd, dest) -> (n_accepted, nbytes, n_sent, last_ts,
  send_errno)``: a two-party relay's work on one received batch (validate and match
  the latched source, one PACKET_DTYPE record per accepted datagram, one sendmmsg of
  the accepted ones to ``dest``); see ``_relay_batch_py`` (native/relay.c in C).

Set ``VTCGW_NO_NATIVE=1`` to force the fallback.

`recv_batch` never blocks (MSG_DONTWAIT) and returns 0 when nothing is queued;
`send_batch` never blocks either and returns how many rows left before EAGAIN.
An error before anything was transferred raises OSError; an error after some
datagrams returns the count so far. Bad buffers raise TypeError (wrong type,
read-only) or ValueError (shape, contiguity, counts) before any syscall.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

ADDR_SIZE = 28
ADDR_DTYPE = np.dtype(
    {
        "names": ["family", "port", "addr4", "addr6", "scope_id"],
        "formats": ["=u2", ">u2", ">u4", ("u1", (16,)), "=u4"],
        "offsets": [0, 2, 4, 8, 24],
        "itemsize": ADDR_SIZE,
    }
)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; SCM_ equals SO_
_TS_CMSG_SPACE = socket.CMSG_SPACE(16)  # struct timespec on 64-bit Linux

# --------------------------------------------------------------------------- fallback


_LITTLE = struct.pack("=H", 1) == b"\x01\x00"


def _int_format_ok(fmt: str, itemsize: int, want: int) -> bool:
    """A signed integer format code of `want` bytes in native byte order."""
    if itemsize != want:
        return False
    if fmt[:1] in ("@", "=", "<" if _LITTLE else ">"):
        fmt = fmt[1:]
    return len(fmt) == 1 and fmt in "bhilq"


_KIND = {
    "bytes2d": "a C-contiguous 2-D uint8 array (N x maxlen)",
    "int32": "a C-contiguous 1-D int32 array",
    "int64": "a C-contiguous 1-D int64 array",
    "addr": "a C-contiguous 1-D array of 28-byte address slots (ADDR_DTYPE)",
}


def _view(obj: Any, kind: str, writable: bool, name: str) -> tuple[memoryview, int, int]:
    """Check one buffer like the C side does; return (flat byte view, rows, row length)."""
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"{name} must be {_KIND[kind]}") from None
    shape = mv.shape or ()
    if kind == "bytes2d":
        type_ok, shape_ok = mv.itemsize == 1, mv.ndim == 2 and shape[1] > 0
    elif kind == "int32":
        type_ok, shape_ok = _int_format_ok(mv.format, mv.itemsize, 4), mv.ndim == 1
    elif kind == "int64":
        type_ok, shape_ok = _int_format_ok(mv.format, mv.itemsize, 8), mv.ndim == 1
    else:
        type_ok, shape_ok = mv.itemsize == ADDR_SIZE, mv.ndim == 1
    if not type_ok:
        raise TypeError(f"{name} must be {_KIND[kind]}")
    if writable and mv.readonly:
        raise TypeError(f"{name} must be writable")
    if not shape_ok or not mv.c_contiguous:
        raise ValueError(f"{name} must be {_KIND[kind]}")
    return mv.cast("B"), shape[0], shape[1] if len(shape) == 2 else 1


def _as_socket(fd: Any) -> tuple[socket.socket, bool]:
    """A socket object for fd; the flag says whether we must detach() it after use."""
    if isinstance(fd, socket.socket) and not fd.gettimeout():
        return fd, False  # a socket with a timeout would wait for readiness first: wrap its fd
    if not isinstance(fd, int):
        fd = fd.fileno()
    return socket.socket(fileno=fd), True


def _pack_addr(flat: memoryview, off: int, addr: Any, family: int) -> None:
    slot = flat[off : off + ADDR_SIZE]
    slot[:] = bytes(ADDR_SIZE)
    struct.pack_into("=H", slot, 0, family)
    if family == socket.AF_INET:
        struct.pack_into(">H", slot, 2, addr[1])
        slot[4:8] = socket.inet_pton(socket.AF_INET, addr[0])
    elif family == socket.AF_INET6:
        struct.pack_into(">HI", slot, 2, addr[1], addr[2])
        slot[8:24] = socket.inet_pton(socket.AF_INET6, addr[0])
        struct.pack_into("=I", slot, 24, addr[3])


def _unpack_addr(flat: memoryview, off: int) -> tuple[int, tuple[Any, ...]]:
    (family,) = struct.unpack_from("=H", flat, off)
    (port,) = struct.unpack_from(">H", flat, off + 2)
    if family == socket.AF_INET:
        return family, (socket.inet_ntop(socket.AF_INET, flat[off + 4 : off + 8]), port)
    if family == socket.AF_INET6:
        (flow,) = struct.unpack_from(">I", flat, off + 4)
        (scope,) = struct.unpack_from("=I", flat, off + 24)
        host = socket.inet_ntop(socket.AF_INET6, flat[off + 8 : off + 24])
        return family, (host, port, flow, scope)
    raise ValueError(f"address family {family}")


def _recv_batch_py(fd: Any, buf: Any, lengths: Any, addrs: Any, ts_ns: Any, max_count: int) -> int:
    bflat, nrows, maxlen = _view(buf, "bytes2d", True, "buf")
    lflat, nlen, _ = _view(lengths, "int32", True, "lengths")
    cap = min(nrows, nlen)
    aflat = tflat = None
    if addrs is not None:
        aflat, n, _ = _view(addrs, "addr", True, "addrs")
        cap = min(cap, n)
    if ts_ns is not None:
        tflat, n, _ = _view(ts_ns, "int64", True, "ts_ns")
        cap = min(cap, n)
    if not 0 <= max_count <= cap:
        raise ValueError(f"max_count must be in 0..{cap} (the smallest buffer), got {max_count}")
    out_len = lflat.cast("i")
    out_ts = tflat.cast("q") if tflat is not None else None
    sock, detach = _as_socket(fd)
    ancsize = _TS_CMSG_SPACE if out_ts is not None else 0
    flags = socket.MSG_DONTWAIT | socket.MSG_TRUNC
    total = 0
    try:
        while total < max_count:
            row = bflat[total * maxlen : (total + 1) * maxlen]
            try:
                nbytes, anc, _flags, addr = sock.recvmsg_into([row], ancsize, flags)
            except BlockingIOError:
                break
            except OSError:
                if total:
                    break
                raise
            out_len[total] = nbytes
            if aflat is not None:
                _pack_addr(aflat, total * ADDR_SIZE, addr, sock.family)
            if out_ts is not None:
                t = 0
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                        sec, nsec = struct.unpack_from("=qq", data)
                        t = sec * 1_000_000_000 + nsec
                out_ts[total] = t
            total += 1
    finally:
        if detach:
            sock.detach()
    return total


def _send_batch_py(fd: Any, buf: Any, lengths: Any, dst_addrs: Any, count: int) -> int:
    bflat, nrows, maxlen = _view(buf, "bytes2d", False, "buf")
    lflat, nlen, _ = _view(lengths, "int32", False, "lengths")
    cap = min(nrows, nlen)
    aflat = None
    if dst_addrs is not None:
        aflat, n, _ = _view(dst_addrs, "addr", False, "dst_addrs")
        cap = min(cap, n)
    if not 0 <= count <= cap:
        raise ValueError(f"count must be in 0..{cap} (the smallest buffer), got {count}")
    lens = lflat.cast("i")
    dests: list[tuple[Any, ...] | None] = []
    for i in range(count):  # validate every row before the first byte leaves
        if not 0 <= lens[i] <= maxlen:
            raise ValueError(f"lengths[{i}]={lens[i]} is outside 0..{maxlen}")
        if aflat is not None:
            (family,) = struct.unpack_from("=H", aflat, i * ADDR_SIZE)
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(f"dst_addrs[{i}] has address family {family}")
            dests.append(_unpack_addr(aflat, i * ADDR_SIZE)[1])
        else:
            dests.append(None)
    sock, detach = _as_socket(fd)
    total = 0
    try:
        for i in range(count):
            data = bflat[i * maxlen : i * maxlen + lens[i]]
            dst = dests[i]
            try:
                if dst is None:
                    sock.send(data, socket.MSG_DONTWAIT)
                else:
                    sock.sendto(data, socket.MSG_DONTWAIT, dst)
            except BlockingIOError:
                break
            except OSError:
                if total:
                    break
                raise
            total += 1
    finally:
        if detach:
            sock.detach()
    return total


def _enable_timestamps_py(fd: Any) -> None:
    sock, detach = _as_socket(fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    finally:
        if detach:
            sock.detach()


_REC_FIXED = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")])
_ADDR_RAW = np.dtype((np.void, ADDR_SIZE))


def _relay_batch_py(
    buf: Any,
    lengths: Any,
    addrs: Any,
    ts_ns: Any,
    count: int,
    expect: Any,
    pt_mask: Any,
    rows: Any,
    accepted: Any,
    clock_offset_ns: int,
    now_ns: int,
    out_fd: Any,
    dest: Any,
) -> tuple[int, int, int, int, int]:
    """The relay's per-batch work over a received batch (twin of native/relay.c).

    Rows 0..count-1 of (buf, lengths, addrs, ts_ns) are one recv_batch result. Row i is
    accepted when its source slot equals ``expect`` (28 bytes: family, port, address; for
    IPv6 also the scope), it was not truncated, it is RTP version 2 with room for its
    CSRCs, not RTCP on a multiplexed port (second byte 192..223), and ``pt_mask`` (128
    bytes) is non-zero at its payload type. ``accepted[i]`` (uint8) says so; accepted rows
    get one PACKET_DTYPE record each in ``rows[0..n_accepted-1]``, in batch order, with
    arrival ``ts_ns[i] - clock_offset_ns`` (``now_ns`` without a kernel stamp). With
    ``dest`` (a 28-byte slot) and ``out_fd`` >= 0 the accepted datagrams are sent there.
    Returns ``(n_accepted, nbytes, n_sent, last_ts, send_errno)``: a send error is
    returned, not raised (the records are already written); EAGAIN is plain loss.
    """
    from gateway.quality.records import PACKET_DTYPE

    bflat, nrows, maxlen = _view(buf, "bytes2d", False, "buf")
    if maxlen < 12:
        raise ValueError("buf must be C-contiguous (rows of 12+ bytes)")
    cap = min(nrows, len(lengths), len(addrs), len(ts_ns), len(rows), len(accepted))
    if not 0 <= count <= cap:
        raise ValueError(f"count must be in 0..{cap} (the smallest buffer), got {count}")
    if getattr(rows, "dtype", None) != PACKET_DTYPE:
        raise TypeError("rows must be a PACKET_DTYPE array")
    exp = bytes(expect)
    if len(exp) != ADDR_SIZE or (dest is not None and len(bytes(dest)) != ADDR_SIZE):
        raise ValueError("expect and dest must be 28-byte address slots")
    mask = np.frombuffer(bytes(pt_mask), np.uint8)
    if len(mask) != 128:
        raise ValueError("pt_mask must be 128 bytes")
    efam = struct.unpack_from("=H", exp)[0]
    if efam not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError("expect must hold an AF_INET or AF_INET6 address")
    if dest is not None and struct.unpack_from("=H", bytes(dest))[0] not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        raise ValueError("dest must hold an AF_INET or AF_INET6 address")
    b = np.asarray(buf)[:count]
    h = b[:, :12].copy().view(_REC_FIXED)[:, 0]
    n = np.asarray(lengths)[:count].astype(np.int64)
    b0, b1 = h["b0"], h["b1"]
    raw = np.asarray(addrs)[:count].view(np.uint8).reshape(count, ADDR_SIZE)
    e = np.frombuffer(exp, np.uint8)
    cols = np.r_[0:8] if efam == socket.AF_INET else np.r_[0:4, 8:ADDR_SIZE]
    same = (raw[:, cols] == e[cols]).all(axis=1)
    ok = (
        (n >= 12)
        & (n <= maxlen)
        & (b0 >> 6 == 2)
        & (n >= 12 + 4 * (b0 & 0x0F).astype(np.int64))
        & ((b1 < 192) | (b1 > 223))
        & (mask[b1 & 0x7F] != 0)
        & same
    )
    acc = np.asarray(accepted)
    acc[:count] = ok
    k = int(ok.sum())
    out = np.asarray(rows)[:k]
    t = np.asarray(ts_ns)[:count][ok]
    out["arrival_ns"] = np.where(t != 0, t - clock_offset_ns, now_ns)
    out["seq"], out["ts"], out["ssrc"] = h["seq"][ok], h["ts"][ok], h["ssrc"][ok]
    out["pt"], out["marker"] = b1[ok] & 0x7F, b1[ok] >> 7
    out["size"] = np.minimum(n[ok], 0xFFFF)
    nbytes = int(n[ok].sum())
    last_ts = int(h["ts"][ok][-1]) if k else 0
    sent = err = 0
    if k and dest is not None and (not isinstance(out_fd, int) or out_fd >= 0):
        sel = np.flatnonzero(ok)
        dst = np.empty(k, ADDR_DTYPE)
        dst.view(_ADDR_RAW)[:] = np.frombuffer(bytes(dest), _ADDR_RAW)[0]
        try:
            sent = send_batch(out_fd, np.ascontiguousarray(b[sel]), n[sel].astype(np.int32), dst, k)
        except OSError as exc:
            err = exc.errno or errno.EIO
        except TypeError:  # Python's sendto refuses a destination of the other family
            err = errno.EAFNOSUPPORT
    return k, nbytes, sent, last_ts, err


class Implementation(NamedTuple):
    recv_batch: Callable[..., int]
    send_batch: Callable[..., int]
    enable_timestamps: Callable[[Any], None]
    relay_batch: Callable[..., tuple[int, int, int, int, int]]


IMPLEMENTATIONS: dict[str, Implementation] = {
    "python": Implementation(_recv_batch_py, _send_batch_py, _enable_timestamps_py, _relay_batch_py)
}
try:
    if os.environ.get("VTCGW_NO_NATIVE"):
        raise ImportError("VTCGW_NO_NATIVE is set")
    from gateway import _udpbatch as _native  # type: ignore[attr-defined]

    IMPLEMENTATIONS["native"] = Implementation(
        _native.recv_batch, _native.send_batch, _native.enable_timestamps, _native.relay_batch
    )
    HAVE_NATIVE = True
except (ImportError, AttributeError):  # AttributeError: a stale build without relay_batch
    HAVE_NATIVE = False

_impl = IMPLEMENTATIONS["native" if HAVE_NATIVE else "python"]
recv_batch = _impl.recv_batch
send_batch = _impl.send_batch
enable_timestamps = _impl.enable_timestamps
relay_batch = _impl.relay_batch

# --------------------------------------------------------------------------- buffers


def set_addr(addrs: np.ndarray, i: int, addr: tuple[Any, ...]) -> None:
    """Write a (host, port) or (host, port, flowinfo, scope_id) tuple into slot i."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    if family == socket.AF_INET6 and len(addr) == 2:
        addr = (addr[0], addr[1], 0, 0)
    _pack_addr(_view(addrs, "addr", True, "addrs")[0], i * ADDR_SIZE, addr, family)


def get_addr(addrs: np.ndarray, i: int) -> tuple[Any, ...]:
    """The (host, port[, flowinfo, scope_id]) tuple in slot i, as socket.recvfrom gives it."""
    return _unpack_addr(_view(addrs, "addr", False, "addrs")[0], i * ADDR_SIZE)[1]


def addr_keys(addrs: np.ndarray, count: int) -> np.ndarray:
    """One uint64 per IPv4 slot, ``ip << 16 | port``, for vectorized demultiplexing."""
    a = addrs[:count]
    return (a["addr4"].astype(np.uint64) << np.uint64(16)) | a["port"].astype(np.uint64)


class BatchBuffers:
    """Preallocated rows for batches of up to `n` datagrams of up to `maxlen` bytes.

    The arrays are allocated once and reused by every recv/send; nothing here
    allocates per packet.
    """

    __slots__ = ("buf", "lengths", "addrs", "ts_ns", "capacity", "maxlen")

    def __init__(self, n: int, maxlen: int = 1500) -> None:
        if n <= 0 or maxlen <= 0:
            raise ValueError("n and maxlen must be positive")
        self.buf = np.zeros((n, maxlen), np.uint8)
        self.lengths = np.zeros(n, np.int32)
        self.addrs = np.zeros(n, ADDR_DTYPE)
        self.ts_ns = np.zeros(n, np.int64)
        self.capacity = n
        self.maxlen = maxlen

    def recv(self, fd: Any, max_count: int | None = None) -> int:
        """Receive up to max_count (default: capacity) datagrams into rows 0..n-1."""
        n = self.capacity if max_count is None else max_count
        return recv_batch(fd, self.buf, self.lengths, self.addrs, self.ts_ns, n)

    def send(self, fd: Any, count: int) -> int:
        """Send rows 0..count-1, each to its `addrs` slot (a received batch echoes back)."""
        return send_batch(fd, self.buf, self.lengths, self.addrs, count)

    def payload(self, i: int) -> bytes:
        return self.buf[i, : min(int(self.lengths[i]), self.maxlen)].tobytes()


# --------------------------------------------------------------------------- RTP headers

_RTP_FIXED = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")])


class RtpHeaders(NamedTuple):
    """RFC 3550 fixed-header fields of a batch, one array element per datagram."""

    version: np.ndarray  # uint8
    padding: np.ndarray  # bool
    extension: np.ndarray  # bool
    csrc_count: np.ndarray  # uint8
    marker: np.ndarray  # bool
    payload_type: np.ndarray  # uint8
    seq: np.ndarray  # uint16
    ts: np.ndarray  # uint32
    ssrc: np.ndarray  # uint32
    # bool: version 2, long enough for the fixed header and CSRCs, and not RTCP: second
    # byte 192-223 is the RTCP packet-type range (RFC 5761 section 4, rtcp-mux)
    valid: np.ndarray


def rtp_headers(buf: np.ndarray, lengths: np.ndarray, count: int) -> RtpHeaders:
    """Vectorized RTP header fields of rows 0..count-1 (views, then one copy per field).

    Rows shorter than 12 bytes give garbage fields and ``valid`` False; so do RTCP
    packets on a multiplexed port.
    """
    if buf.ndim != 2 or buf.dtype != np.uint8 or buf.shape[1] < 12:
        raise ValueError("buf must be a 2-D uint8 array with rows of at least 12 bytes")
    h = buf[:count, :12].view(_RTP_FIXED)[:, 0]
    b0, b1 = h["b0"], h["b1"]
    version = b0 >> 6
    cc = b0 & 0x0F
    size = lengths[:count]
    return RtpHeaders(
        version=version,
        padding=(b0 & 0x20).astype(bool),
        extension=(b0 & 0x10).astype(bool),
        csrc_count=cc,
        marker=(b1 >> 7).astype(bool),
        payload_type=b1 & 0x7F,
        seq=h["seq"].astype(np.uint16),
        ts=h["ts"].astype(np.uint32),
        ssrc=h["ssrc"].astype(np.uint32),
        valid=(version == 2) & (size >= 12 + 4 * cc.astype(np.int32)) & ((b1 < 192) | (b1 > 223)),
    )


def packet_records(
    batch: BatchBuffers,
    count: int,
    *,
    fallback_arrival_ns: int = 0,
    headers: RtpHeaders | None = None,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Rows in `gateway.quality.records.PACKET_DTYPE` for the valid RTP datagrams of a batch.

    arrival_ns is the kernel timestamp, or `fallback_arrival_ns` where there is none.
    `headers` reuses an `rtp_headers` result; `keep` (bool per row) narrows the rows
    further (invalid rows are always dropped).
    """
    from gateway.quality.records import PACKET_DTYPE

    h = headers if headers is not None else rtp_headers(batch.buf, batch.lengths, count)
    mask = h.valid if keep is None else h.valid & keep
    out = np.empty(int(mask.sum()), PACKET_DTYPE)
    ts = batch.ts_ns[:count][mask]
    out["arrival_ns"] = np.where(ts != 0, ts, fallback_arrival_ns)
    out["seq"] = h.seq[mask]
    out["ts"] = h.ts[mask]
    out["ssrc"] = h.ssrc[mask]
    out["pt"] = h.payload_type[mask]
    out["marker"] = h.marker[mask]
    out["size"] = np.minimum(batch.lengths[:count][mask], 0xFFFF)
    return out


# --------------------------------------------------------------------------- asyncio


class BatchReader:
    """Drains a non-blocking UDP socket in batches whenever the loop says it is readable."""

    __slots__ = ("_loop", "_sock", "_fd", "_callback", "buffers", "_max_rounds", "_closed")

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        callback: Callable[[BatchBuffers, int], None],
        buffers: BatchBuffers,
        max_rounds: int,
    ) -> None:
        self._loop, self._sock, self._callback = loop, sock, callback
        # the C side wants the int (no fileno() call per batch), the fallback the socket
        self._fd: Any = sock.fileno() if HAVE_NATIVE else sock
        self.buffers, self._max_rounds, self._closed = buffers, max_rounds, False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        b = self.buffers
        # A full batch means more may be queued; stop after max_rounds so one busy
        # socket cannot starve the loop (the reader is level-triggered: it comes back).
        for _ in range(self._max_rounds):
            n = recv_batch(self._fd, b.buf, b.lengths, b.addrs, b.ts_ns, b.capacity)
            if n:
                self._callback(b, n)
            if n < b.capacity or self._closed:
                return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())


def add_batch_reader(
    loop: Any,
    sock: socket.socket,
    callback: Callable[[BatchBuffers, int], None],
    *,
    buffers: BatchBuffers | None = None,
    max_rounds: int = 16,
) -> BatchReader:
    """Call ``callback(buffers, count)`` for each batch read from `sock` (made non-blocking).

    The rows are only valid during the callback: the next batch reuses them.
    """
    return BatchReader(loop, sock, callback, buffers or BatchBuffers(64), max_rounds)
