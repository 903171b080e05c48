"""Round-trip time from an RTCP report block (RFC 3550 section 6.4.1).

RTT = A - LSR - DLSR, all in the 32-bit NTP "short" format (16.16 fixed point,
units of 1/65536 s): A is the middle 32 bits of the local NTP time when the RR
arrived, LSR the middle 32 bits of the NTP timestamp of the last SR from us that
the peer received, DLSR the peer's delay between receiving that SR and sending
the report block.

Guards, as pjmedia's rtcp.c applies them: no figure unless both LSR and DLSR
are non-zero (the peer has seen an SR), none if A - DLSR < LSR (the result
would be negative), and none above 30 s (a wrong LSR echo or a stale block).
"""

from __future__ import annotations

NTP_SHORT_UNITS_PER_SECOND = 1 << 16
MAX_RTT_US = 30_000_000
_MASK32 = 0xFFFFFFFF


def ntp_short_from_ntp64(ntp64: int) -> int:
    """Middle 32 bits of a 64-bit NTP timestamp (seconds << 32 | fraction)."""
    return (ntp64 >> 16) & _MASK32


def ntp64_from_unix_ns(unix_ns: int) -> int:
    """64-bit NTP timestamp for a Unix time in ns (NTP epoch 1900)."""
    secs, rem = divmod(unix_ns, 1_000_000_000)
    frac = (rem << 32) // 1_000_000_000
    return ((secs + 2_208_988_800) << 32) | frac


def rtt_ntp_short(a: int, lsr: int, dlsr: int) -> int | None:
    """A - LSR - DLSR in 1/65536 s units, or None when a guard rejects it.

    Arithmetic is modulo 2^32 (the NTP-short clock wraps every 18.2 h); a result
    in the upper half of the range is a negative RTT and is rejected."""
    if lsr == 0 or dlsr == 0:
        return None
    rtt = (a - lsr - dlsr) & _MASK32
    if rtt >= 1 << 31:
        return None
    if rtt * 1_000_000 > MAX_RTT_US * NTP_SHORT_UNITS_PER_SECOND:
        return None
    return rtt


def rtt_us(a: int, lsr: int, dlsr: int) -> int | None:
    """The same, in microseconds (pjmedia: (eedelay * 1000000) >> 16)."""
    r = rtt_ntp_short(a, lsr, dlsr)
    return None if r is None else (r * 1_000_000) >> 16
