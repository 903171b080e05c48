"""Packet captures in and out: classic pcap / pcapng reading into NumPy arrays,
and a minimal classic-pcap writer (for tests and benchmarks). RTP stream
discovery over the decoded datagrams lives in `rtpstreams` and is re-exported
here (`read_rtp`, `analyse_capture`, ...).

Reading walks the record headers (a sequential chain of lengths; runs of
equal-length records are recognised and taken in one vectorized step), then
decodes link, IP (v4/v6), UDP and RTP headers for all frames at once with
NumPy gathers. Link types: Ethernet (with up to two VLAN tags), Linux cooked
SLL and SLL2, raw IP (101, 228, 229), BSD loopback (0). IPv4 fragments and
IPv6 extension headers are not decoded (their frames are skipped).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A


class CaptureError(Exception):
    """The file is not a capture we can read (carries a human-readable reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Frames:
    """All frames of a capture: the file bytes plus per-frame arrays."""

    buf: np.ndarray  # uint8, the whole file
    offset: np.ndarray  # int64: start of each frame's data in buf
    caplen: np.ndarray  # int64
    ts_ns: np.ndarray  # int64, capture time (Unix ns)
    linktype: np.ndarray  # int32


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpDatagrams:
    """UDP datagrams found in a capture (one row per datagram)."""

    buf: np.ndarray
    ts_ns: np.ndarray
    src: np.ndarray  # (n, 16) uint8: IPv6 or IPv4-mapped IPv6 address
    dst: np.ndarray
    sport: np.ndarray  # int64
    dport: np.ndarray
    payload_offset: np.ndarray  # int64 into buf
    payload_len: np.ndarray  # int64 (bytes present in the capture)
    head: np.ndarray  # (n, 12) uint8: the first payload bytes (zero past the capture)


# ----------------------------------------------------------------------------- reading


def read_frames(path: str | Path) -> Frames:
    """Read a classic pcap (us or ns, either byte order) or pcapng file."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise CaptureError("file too short for a capture header")
    buf = np.frombuffer(data, np.uint8)
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le == _PCAPNG_SHB:
        return _read_pcapng(data, buf)
    for endian in "<>":
        magic = struct.unpack_from(endian + "I", data)[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            return _read_pcap(data, buf, endian, magic == _MAGIC_NS)
    raise CaptureError(f"not a pcap or pcapng file (magic 0x{magic_le:08x})")


def _read_pcap(data: bytes, buf: np.ndarray, endian: str, nano: bool) -> Frames:
    if len(data) < 24:
        raise CaptureError("truncated pcap global header")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    starts = _walk_records(data, 24, rec, lambda t: 16 + t[2], 16)
    if not len(starts):
        return Frames(
            buf=buf, offset=np.zeros(0, np.int64), caplen=np.zeros(0, np.int64),
            ts_ns=np.zeros(0, np.int64), linktype=np.zeros(0, np.int32),
        )  # fmt: skip
    hdr = _block(buf, starts, 12).view(endian + "u4").astype(np.int64)
    sec, frac, caplen = hdr[:, 0], hdr[:, 1], hdr[:, 2]
    ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
    return Frames(
        buf=buf,
        offset=starts + 16,
        caplen=caplen,
        ts_ns=ts,
        linktype=np.full(len(starts), linktype, np.int32),
    )


def _walk_records(data: bytes, pos: int, rec: struct.Struct, size_of, hdr_len: int) -> np.ndarray:
    """Offsets of consecutive records. Each record's size comes from its header;
    a run of records with the same size is confirmed for many records at once."""
    out: list[np.ndarray] = []
    singles: list[int] = []
    end = len(data)
    buf = np.frombuffer(data, np.uint8)
    fmt_dt = np.dtype(rec.format[0] + "u4")
    cap_field = 2 if hdr_len == 16 else None
    spec = 8  # how many records to check at once; grows while the guesses hold
    prev_size = -1
    while pos + hdr_len <= end:
        t = rec.unpack_from(data, pos)
        size = size_of(t)
        if size < hdr_len or pos + size > end:
            break  # truncated last record
        room = (end - pos) // size
        if size == prev_size and room > 2:
            # two records of one size in a row: guess the next ones have it too
            k = min(room, spec)
            cand = pos + size * np.arange(k, dtype=np.int64)
            if cap_field is not None:
                sizes = _gather_u32(buf, cand + 8, fmt_dt) + 16
            else:
                sizes = _gather_u32(buf, cand + 4, fmt_dt)
                same_type = _gather_u32(buf, cand, fmt_dt) == t[0]
                sizes = np.where(same_type, sizes, -1)
            ok = sizes == size
            run = k if ok.all() else int(np.argmin(ok))
            spec = min(spec * 4, 1 << 16) if run == k else 8
            if run > 1:
                if singles:
                    out.append(np.asarray(singles, np.int64))
                    singles = []
                out.append(cand[:run])
                pos += size * run
                continue
        prev_size = size
        singles.append(pos)
        pos += size
    if singles:
        out.append(np.asarray(singles, np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _read_pcapng(data: bytes, buf: np.ndarray) -> Frames:
    bom = struct.unpack_from("<I", data, 8)[0] if len(data) >= 12 else 0
    if bom == 0x1A2B3C4D:
        endian = "<"
    elif bom == 0x4D3C2B1A:
        endian = ">"
    else:
        raise CaptureError("pcapng: bad byte-order magic")
    blocks = _walk_records(data, 0, struct.Struct(endian + "II"), lambda t: t[1], 8)
    if not len(blocks):
        raise CaptureError("pcapng: no blocks")
    dt = np.dtype(endian + "u4")
    btype = _gather_u32(buf, blocks, dt)
    links: list[int] = []
    res: list[int] = []
    shb_pos: list[int] = []
    shb_base: list[int] = []
    for pos in blocks[(btype == 1) | (btype == _PCAPNG_SHB)].tolist():
        t, blen = struct.unpack_from(endian + "II", data, pos)
        if t == _PCAPNG_SHB:
            if struct.unpack_from(endian + "I", data, pos + 8)[0] != 0x1A2B3C4D:
                raise CaptureError("pcapng: sections of mixed byte order are not supported")
            shb_pos.append(pos)
            shb_base.append(len(links))
        else:
            links.append(struct.unpack_from(endian + "H", data, pos + 8)[0])
            res.append(_if_tsresol_ns(data, pos + 16, pos + blen - 4, endian))
    base_of = np.asarray(shb_base, np.int64)
    shb_arr = np.asarray(shb_pos, np.int64)

    def section_base(pos: np.ndarray) -> np.ndarray:
        return base_of[np.searchsorted(shb_arr, pos, side="right") - 1]

    epb = blocks[btype == 6]
    spb = blocks[btype == 3]
    epb_parts = [np.stack([epb, section_base(epb)], axis=1)] if len(epb) else []
    spb_parts = [np.stack([spb, section_base(spb)], axis=1)] if len(spb) else []
    return _pcapng_frames(buf, endian, epb_parts, spb_parts, links, res)


def _if_tsresol_ns(data: bytes, pos: int, end: int, endian: str) -> int:
    """if_tsresol option (code 9) of an IDB, as a divisor to ns; default 1 us."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = data[pos + 4]
            if v & 0x80:
                return -(v & 0x7F)  # power of two; handled by the caller
            return 10**v
        pos += 4 + ((length + 3) & ~3)
    return 1_000_000


def _pcapng_frames(buf, endian, epb_parts, spb_parts, links, res) -> Frames:
    dt = np.dtype(endian + "u4")
    offs, caps, tss, lts = [], [], [], []
    if epb_parts:
        e = np.concatenate(epb_parts)
        pos, base = e[:, 0], e[:, 1]
        iface = _gather_u32(buf, pos + 8, dt) + base
        hi = _gather_u32(buf, pos + 12, dt)
        lo = _gather_u32(buf, pos + 16, dt)
        cap = _gather_u32(buf, pos + 20, dt)
        if len(links) == 0 or int(iface.max()) >= len(links):
            raise CaptureError("pcapng: packet refers to an unknown interface")
        link_arr = np.asarray(links, np.int32)[iface]
        res_arr = np.asarray(res, np.int64)[iface]
        ticks = (hi << 32) | lo
        ts = np.zeros(len(ticks), np.int64)
        dec = res_arr > 0  # 10^v ticks per second
        r = res_arr[dec]
        ts[dec] = (ticks[dec] // r) * 1_000_000_000 + (ticks[dec] % r) * 1_000_000_000 // r
        two = ~dec  # 2^v ticks per second
        sh = -res_arr[two]
        frac = ticks[two] & ((np.int64(1) << sh) - 1)
        ts[two] = (ticks[two] >> sh) * 1_000_000_000 + ((frac * 1_000_000_000) >> sh)
        offs.append(pos + 28)
        caps.append(cap)
        tss.append(ts)
        lts.append(link_arr)
    if spb_parts:
        s = np.concatenate(spb_parts)
        pos, base = s[:, 0], s[:, 1]
        blen = _gather_u32(buf, pos + 4, dt)
        orig = _gather_u32(buf, pos + 8, dt)
        offs.append(pos + 12)
        caps.append(np.minimum(orig, blen - 16))
        tss.append(np.zeros(len(pos), np.int64))
        lts.append(np.asarray(links, np.int32)[base] if links else np.zeros(len(pos), np.int32))
    if not offs:
        z = np.zeros(0, np.int64)
        return Frames(buf=buf, offset=z, caplen=z, ts_ns=z, linktype=z.astype(np.int32))
    offset = np.concatenate(offs)
    order = np.argsort(offset, kind="stable")
    return Frames(
        buf=buf,
        offset=offset[order],
        caplen=np.concatenate(caps)[order],
        ts_ns=np.concatenate(tss)[order],
        linktype=np.concatenate(lts)[order],
    )


def _gather_u32(buf: np.ndarray, pos: np.ndarray, dt: np.dtype) -> np.ndarray:
    return _block(buf, pos, 4).view(dt).reshape(-1).astype(np.int64)


_WIDTH = 96  # link (<= 22) + IPv4 with options (<= 60) or IPv6 (40) + UDP (8) + 12


def udp_datagrams(frames: Frames) -> UdpDatagrams:
    """Decode link, IP and UDP headers of every frame; keep the UDP ones.

    One gather copies the first 96 bytes of every frame; every header field is
    then a column of that block. Where the IP or UDP header sits at a different
    offset per frame (VLAN tags, IPv4 options, IPv6), rows are handled in groups
    of equal offset, so each group is again a plain column slice."""
    buf = frames.buf
    off, cap, lt = frames.offset, frames.caplen, frames.linktype
    n = len(off)
    blk = _block(buf, off, _WIDTH)
    l3 = np.full(n, -1, np.int64)  # IP header offset within the frame
    proto = np.zeros(n, np.int64)  # ethertype-like: 0x0800 / 0x86DD
    eth = lt == LINKTYPE_ETHERNET
    if eth.any():
        et = _col16(blk, 12)
        l3e = np.full(n, 14, np.int64)
        for tag in range(2):  # 802.1Q / 802.1ad tags
            tagged = (et == 0x8100) | (et == 0x88A8)
            if not tagged.any():
                break
            et = np.where(tagged, _col16(blk, 16 + 4 * tag), et)
            l3e = np.where(tagged, l3e + 4, l3e)
        l3 = np.where(eth, l3e, l3)
        proto = np.where(eth, et, proto)
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        l3 = np.where(sll, 16, l3)
        proto = np.where(sll, _col16(blk, 14), proto)
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        l3 = np.where(sll2, 20, l3)
        proto = np.where(sll2, _col16(blk, 0), proto)
    null = lt == LINKTYPE_NULL
    if null.any():
        fam = np.maximum(blk[:, 0], blk[:, 3]).astype(np.int64)  # host byte order: either end
        l3 = np.where(null, 4, l3)
        proto = np.where(null, np.where(fam == 2, 0x0800, 0x86DD), proto)
    raw = (lt == LINKTYPE_RAW) | (lt == LINKTYPE_IPV4) | (lt == LINKTYPE_IPV6)
    if raw.any():
        ver = blk[:, 0] >> 4
        l3 = np.where(raw, 0, l3)
        proto = np.where(raw, np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0)), proto)
    ip = _shifted_cols(blk, l3, 48)  # from the IP header on
    ok = (l3 >= 0) & (l3 + 20 <= cap)
    vb = ip[:, 0].astype(np.int64)
    v4 = ok & (proto == 0x0800) & ((vb >> 4) == 4)
    v6 = ok & (proto == 0x86DD) & ((vb >> 4) == 6) & (l3 + 40 <= cap)
    ihl = (vb & 0x0F) * 4
    frag = _col16(ip, 6)
    v4 &= (ip[:, 9] == 17) & ((frag & 0x3FFF) == 0) & (ihl >= 20)
    v6 &= ip[:, 6] == 17
    l4 = np.where(v4, l3 + ihl, l3 + 40)  # UDP header offset within the frame
    keep = (v4 | v6) & (l4 + 8 <= cap)
    if keep.all():  # the usual capture: no copies of the per-frame arrays
        idx = slice(None)
        ipk, v4k, l4k, blk_k = ip, v4, l4, blk
    else:
        idx = np.flatnonzero(keep)
        ipk, v4k, l4k, blk_k = ip[idx], v4[idx], l4[idx], blk[idx]
    src = np.zeros((len(l4k), 16), np.uint8)
    dst = np.zeros((len(l4k), 16), np.uint8)
    if v4k.all():
        src[:, 10:12] = 0xFF
        dst[:, 10:12] = 0xFF
        src[:, 12:] = ipk[:, 12:16]
        dst[:, 12:] = ipk[:, 16:20]
    else:
        m4, m6 = np.flatnonzero(v4k), np.flatnonzero(~v4k)
        src[m4, 10:12] = 0xFF
        dst[m4, 10:12] = 0xFF
        src[m4, 12:] = ipk[m4, 12:16]
        dst[m4, 12:] = ipk[m4, 16:20]
        src[m6] = ipk[m6, 8:24]
        dst[m6] = ipk[m6, 24:40]
    # UDP header and the first payload bytes, from the block where they fit
    offk = off[idx]
    fits = l4k + 20 <= _WIDTH
    tail = _shifted_cols(blk_k, np.where(fits, l4k, -1), 20)
    far = np.flatnonzero(~fits)
    if len(far):  # very long headers: gather from the file itself
        tail[far] = _block(buf, offk[far] + l4k[far], 20)
    start = offk + l4k + 8
    present = np.maximum(offk + cap[idx] - start, 0)
    udplen = _col16(tail, 4)
    plen = np.minimum(np.maximum(udplen - 8, 0), present)
    head = tail[:, 8:20].copy()
    head[np.arange(12)[None, :] >= plen[:, None]] = 0
    return UdpDatagrams(
        buf=buf,
        ts_ns=frames.ts_ns[idx],
        src=src,
        dst=dst,
        sport=_col16(tail, 0),
        dport=_col16(tail, 2),
        payload_offset=start,
        payload_len=plen,
        head=head,
    )


def _col16(m: np.ndarray, c: int) -> np.ndarray:
    """Big-endian 16-bit column c..c+1 of a byte matrix, as int64."""
    return (m[:, c].astype(np.int64) << 8) | m[:, c + 1]


def _shifted_cols(m: np.ndarray, shift: np.ndarray, width: int) -> np.ndarray:
    """Row i of the result is m[i, shift[i] : shift[i] + width] (zeros where it would
    leave m, or for shift < 0); rows are handled in groups of equal shift."""
    out = np.zeros((len(m), width), np.uint8)
    if len(shift) == 0:
        return out
    values = shift[:1] if bool((shift == shift[0]).all()) else np.unique(shift)
    for v in values.tolist():
        if v < 0:
            continue
        w = max(0, min(width, m.shape[1] - v))
        if len(values) == 1:
            out[:, :w] = m[:, v : v + w]
        else:
            rows = np.flatnonzero(shift == v)
            out[rows, :w] = m[rows, v : v + w]
    return out


def _block(buf: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bytes starting at each pos; bytes past the end of buf are zero.
    Rows come from a zero-copy sliding-window view: no (n, width) index array."""
    if len(buf) < width:
        buf = np.concatenate([buf, np.zeros(width - len(buf), np.uint8)])
    n = len(buf)
    pos = np.minimum(pos, n)
    over = pos + width > n
    if not over.any():
        return np.lib.stride_tricks.sliding_window_view(buf, width)[pos]
    out = np.zeros((len(pos), width), np.uint8)
    under = ~over
    if under.any():
        out[under] = np.lib.stride_tricks.sliding_window_view(buf, width)[pos[under]]
    p0 = int(pos[over].min())
    tail = np.concatenate([buf[p0:], np.zeros(width, np.uint8)])
    out[over] = np.lib.stride_tricks.sliding_window_view(tail, width)[pos[over] - p0]
    return out


def format_ip(addr16: np.ndarray) -> str:
    a = bytes(addr16.tolist())
    if a[:12] == b"\x00" * 10 + b"\xff\xff":
        return str(ipaddress.IPv4Address(a[12:]))
    return str(ipaddress.IPv6Address(a))


# ----------------------------------------------------------------------------- writing


class PcapWriter:
    """A classic pcap writer (Ethernet or raw IP link type, IPv4/IPv6 + UDP)."""

    def __init__(self, f: BinaryIO, *, linktype: int = LINKTYPE_ETHERNET, nano: bool = False):
        self._f = f
        self._link = linktype
        self._nano = nano
        f.write(struct.pack("<IHHiIII", _MAGIC_NS if nano else _MAGIC_US, 2, 4, 0, 0, 262144, linktype))

    def _ts(self, ts_ns: int) -> tuple[int, int]:
        sec, rem = divmod(ts_ns, 1_000_000_000)
        return sec, rem if self._nano else rem // 1000

    def write_frame(self, ts_ns: int, frame: bytes) -> None:
        """One record holding an already built link-layer frame."""
        sec, frac = self._ts(ts_ns)
        self._f.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)

    def write_udp(self, ts_ns: int, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        """One IPv4/IPv6 UDP datagram (link type Ethernet or raw IP)."""
        if self._link not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
            raise ValueError("write_udp needs LINKTYPE_ETHERNET or LINKTYPE_RAW")
        frame = build_udp_frame(src, dst, payload, ethernet=self._link == LINKTYPE_ETHERNET)
        self.write_frame(ts_ns, frame)

    def write_udp_batch(
        self,
        ts_ns: np.ndarray,
        src: tuple[str, int] | list[tuple[str, int]],
        dst: tuple[str, int] | list[tuple[str, int]],
        payloads: np.ndarray,
    ) -> None:
        """Many IPv4 datagrams of equal payload length at once. payloads: (n, L)
        uint8; src/dst: one endpoint for all rows or a list with one per row."""
        n, plen = payloads.shape
        srcs = [src] * n if isinstance(src, tuple) else list(src)
        dsts = [dst] * n if isinstance(dst, tuple) else list(dst)
        # per distinct (src, dst) pair the headers are equal except the checksum-free
        # fields we leave constant (IP id 0, UDP checksum 0): build templates
        tmpl: dict[tuple, bytes] = {}
        heads = []
        for s, d in zip(srcs, dsts, strict=True):
            key = (s, d)
            if key not in tmpl:
                tmpl[key] = build_udp_frame(s, d, b"", ethernet=self._link == LINKTYPE_ETHERNET,
                                            payload_len=plen)  # fmt: skip
            heads.append(tmpl[key])
        hlen = len(heads[0])
        if any(len(h) != hlen for h in heads):
            raise ValueError("all rows must use the same IP version")
        head_arr = np.frombuffer(b"".join(heads), np.uint8).reshape(n, hlen)
        flen = hlen + plen
        rec = np.zeros((n, 16 + flen), np.uint8)
        ts = np.asarray(ts_ns, np.int64)
        sec = ts // 1_000_000_000
        frac = ts % 1_000_000_000
        if not self._nano:
            frac //= 1000
        hdr = np.stack([sec, frac, np.full(n, flen), np.full(n, flen)], axis=1).astype("<u4")
        rec[:, :16] = hdr.view(np.uint8).reshape(n, 16)
        rec[:, 16 : 16 + hlen] = head_arr
        rec[:, 16 + hlen :] = payloads
        self._f.write(rec.tobytes())


def build_udp_frame(
    src: tuple[str, int],
    dst: tuple[str, int],
    payload: bytes,
    *,
    ethernet: bool = True,
    payload_len: int | None = None,
) -> bytes:
    """An IPv4 or IPv6 + UDP frame (UDP checksum 0 for IPv4; computed for IPv6)."""
    plen = len(payload) if payload_len is None else payload_len
    sa, da = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if sa.version != da.version:
        raise ValueError("source and destination must be the same IP version")
    udp_len = 8 + plen
    if sa.version == 4:
        udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, sa.packed, da.packed)
        ip = ip[:10] + struct.pack("!H", _inet_checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        pseudo = sa.packed + da.packed + struct.pack("!IxxxB", udp_len, 17)
        udp0 = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
        csum = _inet_checksum(pseudo + udp0 + payload) if payload_len is None else 0
        udp = struct.pack("!HHHH", src[1], dst[1], udp_len, csum or 0xFFFF)
        ip = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, sa.packed, da.packed)
        ethertype = 0x86DD
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
    return (eth if ethernet else b"") + ip + udp + (payload if payload_len is None else b"")


def _inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = int(np.frombuffer(data, ">u2").astype(np.int64).sum())
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_pcap(
    path: str | Path,
    packets: Iterable[tuple[int, tuple[str, int], tuple[str, int], bytes]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    nano: bool = False,
) -> None:
    """Write (ts_ns, src, dst, udp_payload) tuples as a classic pcap."""
    with open(path, "wb") as f:
        w = PcapWriter(f, linktype=linktype, nano=nano)
        for ts_ns, src, dst, payload in packets:
            w.write_udp(ts_ns, src, dst, payload)


# The RTP layer over these datagrams lives in `rtpstreams` (which imports this
# module); its entry points are reachable from here too, resolved on first use.
_RTP_NAMES = (
    "RtpCapture", "RtpStreamInfo", "SdpMedia", "analyse_capture", "discover_rtp",
    "infer_clock_rate", "parse_sdp_rtpmaps", "read_rtp", "scan_sip_sdp",
)  # fmt: skip


def __getattr__(name: str):
    if name in _RTP_NAMES:
        from gateway.quality import rtpstreams

        return getattr(rtpstreams, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
