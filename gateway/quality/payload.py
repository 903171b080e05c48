"""RTP clock rates: the RFC 3551 static payload-type table and encoding names.

The jitter figure (RFC 3550 A.8) is computed in RTP timestamp units, so the
arrival clock must be converted to the stream's clock rate. Static payload
types carry a fixed rate (RFC 3551 section 6, table 4 and 5); dynamic ones
(96-127) get it from SDP `a=rtpmap` or, failing that, from `clock_rate_for_name`
or inference (`gateway.quality.pcap.infer_clock_rate`).

Note the RFC 3551 quirk: G722 is sampled at 16 kHz but its RTP clock is 8000.
"""

from __future__ import annotations

# RFC 3551 section 6: static payload types -> (encoding name, clock rate).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    5: ("DVI4", 8000),
    6: ("DVI4", 16000),
    7: ("LPC", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    10: ("L16", 44100),
    11: ("L16", 44100),
    12: ("QCELP", 8000),
    13: ("CN", 8000),
    14: ("MPA", 90000),
    15: ("G728", 8000),
    16: ("DVI4", 11025),
    17: ("DVI4", 22050),
    18: ("G729", 8000),
    19: ("CN", 8000),  # reserved in RFC 3551, used for CN by older stacks
    25: ("CELB", 90000),
    26: ("JPEG", 90000),
    28: ("NV", 90000),
    31: ("H261", 90000),
    32: ("MPV", 90000),
    33: ("MP2T", 90000),
    34: ("H263", 90000),
}

# Usual clock rates of dynamically mapped encodings (RFC 7587 opus, RFC 6184 H264,
# RFC 4733 telephone-event, RFC 4867 AMR, RFC 7798 H265, RFC 7741 VP8 ...).
NAMED_CLOCK_RATES: dict[str, int] = {
    "OPUS": 48000,
    "H264": 90000,
    "H265": 90000,
    "H263-1998": 90000,
    "H263-2000": 90000,
    "VP8": 90000,
    "VP9": 90000,
    "AV1": 90000,
    "TELEPHONE-EVENT": 8000,
    "AMR": 8000,
    "AMR-WB": 16000,
    "EVS": 16000,
    "SPEEX": 8000,
    "ILBC": 8000,
    "G7221": 16000,
    "SILK": 16000,
    "RED": 90000,
    "ULPFEC": 90000,
    "RTX": 90000,
}

# Rates a clock-rate inference snaps to.
COMMON_CLOCK_RATES: tuple[int, ...] = (8000, 16000, 48000, 90000)


def static_clock_rate(pt: int) -> int:
    """Clock rate of a static payload type, 0 if dynamic or unassigned."""
    entry = STATIC_PAYLOAD_TYPES.get(pt)
    return entry[1] if entry else 0


def clock_rate_for_name(name: str) -> int:
    """Clock rate usually used with an encoding name (case-insensitive), 0 if unknown."""
    return NAMED_CLOCK_RATES.get(name.upper(), 0)


def is_plausible_rtp_pt(pt: int) -> bool:
    """A payload type a media stream may carry: not the 72-76 band where RTCP
    packet types 200-204 (with the marker bit) would land (RFC 5761 section 4)."""
    return 0 <= pt <= 127 and not 72 <= pt <= 76
