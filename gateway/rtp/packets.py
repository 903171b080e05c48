"""RTP/RTCP wire formats (RFC 3550, RFC 4585, RFC 5104, RFC 4733).

Full RTCP structures come from aiortc (``aiortc.rtp``: SR, RR, SDES, BYE, RTPFB, PSFB);
this module adds what aiortc leaves out (APP, strict compound validation, telephone-events)
and the few helpers the media hot path needs without building objects per packet.

Malformed input raises :class:`MalformedPacket` (our remote-protocol error: the answer
for a bad datagram is "drop and count", never a crash).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_rtcp_packet,
)

__all__ = [
    "RTCP_PSFB_FIR",
    "RTCP_PSFB_PLI",
    "RTP_HEADER",
    "MalformedPacket",
    "RtcpApp",
    "RtcpByePacket",
    "RtcpPsfbPacket",
    "RtcpReceiverInfo",
    "RtcpRrPacket",
    "RtcpRtpfbPacket",
    "RtcpSdesPacket",
    "RtcpSenderInfo",
    "RtcpSrPacket",
    "RtpHeader",
    "TelephoneEvent",
    "build_rtp",
    "fir_packet",
    "is_rtcp",
    "ntp_middle",
    "ntp_now",
    "parse_rtcp",
    "pli_packet",
    "sdes_cname",
]

RTP_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
RTCP_APP = 204
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


class MalformedPacket(Exception):
    """A datagram that is not valid RTP/RTCP; the answer is to drop it and count it."""


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: with rtcp-mux, RTCP packet types 192-223 sit where RTP PTs 64-95 would."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpHeader:
    """The fixed RTP header plus where the payload starts (RFC 3550 section 5.1)."""

    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload_offset: int  # after CSRCs and header extension
    payload_end: int  # before padding

    @classmethod
    def parse(cls, data: bytes) -> RtpHeader:
        n = len(data)
        if n < 12:
            raise MalformedPacket(f"RTP datagram of {n} bytes is shorter than its header")
        b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise MalformedPacket("RTP version is not 2")
        pos = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if n < pos + 4:
                raise MalformedPacket("RTP header extension is truncated")
            pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = n
        if b0 & 0x20:
            pad = data[-1]
            end = n - pad
            if pad == 0 or end < pos:
                raise MalformedPacket("RTP padding length is invalid")
        if pos > end:
            raise MalformedPacket("RTP header is longer than the datagram")
        return cls(
            marker=bool(b1 & 0x80),
            payload_type=b1 & 0x7F,
            seq=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload_offset=pos,
            payload_end=end,
        )

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_offset : self.payload_end]


def build_rtp(
    *, pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    return (
        RTP_HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        + payload
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """RFC 4733 section 2.3 named-event payload (events 0-15 are the DTMF keys)."""

    event: int
    end: bool
    volume: int
    duration: int

    KEYS = "0123456789*#ABCD"

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise MalformedPacket("telephone-event payload shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )

    @property
    def digit(self) -> str | None:
        return self.KEYS[self.event] if self.event < 16 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpApp:
    """RFC 3550 section 6.7 APP packet (aiortc skips these; we keep them visible)."""

    subtype: int
    ssrc: int
    name: bytes
    data: bytes = b""

    @classmethod
    def parse(cls, payload: bytes, subtype: int) -> RtcpApp:
        if len(payload) < 8:
            raise MalformedPacket("RTCP APP shorter than SSRC + name")
        return cls(
            subtype=subtype,
            ssrc=int.from_bytes(payload[:4], "big"),
            name=payload[4:8],
            data=payload[8:],
        )

    def __bytes__(self) -> bytes:
        return pack_rtcp_packet(
            RTCP_APP,
            self.subtype,
            self.ssrc.to_bytes(4, "big") + self.name[:4].ljust(4) + self.data,
        )


AnyRtcp = (
    RtcpSrPacket
    | RtcpRrPacket
    | RtcpSdesPacket
    | RtcpByePacket
    | RtcpRtpfbPacket
    | RtcpPsfbPacket
    | RtcpApp
)


def parse_rtcp(data: bytes) -> list[AnyRtcp]:
    """Parse a compound RTCP packet; any defect rejects the whole datagram (RFC 3550 A.2)."""
    n = len(data)
    if n < 8:
        raise MalformedPacket(f"RTCP datagram of {n} bytes is too short")
    if n % 4:
        raise MalformedPacket("RTCP compound length is not a multiple of 4")
    # A.2: the first packet of a compound is SR or RR. We also accept lone feedback
    # (RFC 5506 reduced-size RTCP), which devices send for PLI/FIR.
    if data[0] >> 6 != 2 or data[1] not in (200, 201, 205, 206):
        raise MalformedPacket("RTCP compound does not start with SR/RR (or reduced-size feedback)")
    apps: list[tuple[int, RtcpApp]] = []
    pos = 0
    index = 0
    while pos < n:
        if n < pos + 4:
            raise MalformedPacket("RTCP header truncated")
        b0, pt, length = _RTCP_HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket("RTCP version is not 2")
        end = pos + 4 + 4 * length
        if end > n:
            raise MalformedPacket("RTCP length field runs past the datagram")
        if b0 & 0x20 and end != n:
            raise MalformedPacket("RTCP padding only allowed on the last packet")
        if not 192 <= pt <= 223:  # other RTCP types (XR, IJ ...) are skipped, not rejected
            raise MalformedPacket(f"RTCP packet type {pt} is not RTCP")
        if pt == RTCP_APP:
            payload = data[pos + 4 : end]
            apps.append((index, RtcpApp.parse(payload, b0 & 0x1F)))
        pos = end
        index += 1
    try:
        parsed: list[AnyRtcp] = list(RtcpPacket.parse(data))
    except (ValueError, struct.error, IndexError) as exc:
        raise MalformedPacket(f"RTCP: {exc}") from None
    for _, app in apps:
        parsed.append(app)
    return parsed


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """SDES with one CNAME chunk (RFC 3550 6.5). The item list ends with 1-4 null octets up to
    the next 32-bit boundary; aiortc's serializer can emit 5, which tshark flags as malformed."""
    text = cname.encode()[:255]
    chunk = ssrc.to_bytes(4, "big") + bytes((1, len(text))) + text
    chunk += b"\x00" * (4 - len(chunk) % 4)
    return pack_rtcp_packet(202, 1, chunk)


def pli_packet(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RFC 4585 section 6.3.1 Picture Loss Indication."""
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc))


def fir_packet(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    """RFC 5104 section 4.3.1 Full Intra Request (media SSRC 0, target in the FCI)."""
    fci = struct.pack("!IB3x", media_ssrc, seq_nr & 0xFF)
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=sender_ssrc, media_ssrc=0, fci=fci))


def ntp_now(unix_time_s: float) -> int:
    """64-bit NTP timestamp for a wall-clock time (RFC 3550 section 4)."""
    secs = int(unix_time_s)
    frac = int((unix_time_s - secs) * (1 << 32)) & 0xFFFFFFFF
    return ((secs + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | frac


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits (16.16 seconds) used by LSR, DLSR and RTT arithmetic."""
    return (ntp >> 16) & 0xFFFFFFFF
