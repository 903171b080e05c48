"""H.264 RTP payload inspection (RFC 6184): does this packet start a keyframe?

The video switch changes a receiver's source only at a point the decoder can start from:
an SPS (type 7) or an IDR slice (type 5), whether carried as a single NAL unit, inside a
STAP-A aggregate (type 24), or as the first fragment of an FU-A (type 28, S bit set).
Truncated or malformed payloads are simply "not a keyframe".
"""

from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
STAP_A = 24
FU_A = 28
_START = frozenset({NAL_IDR, NAL_SPS})


def nal_types(payload: bytes) -> list[int]:
    """NAL unit types this RTP payload carries (FU-A: the fragmented type, start only)."""
    if not payload:
        return []
    t = payload[0] & 0x1F
    if 1 <= t <= 23:
        return [t]
    if t == STAP_A:
        out, pos = [], 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if size == 0 or pos + 2 + size > len(payload):
                break
            out.append(payload[pos + 2] & 0x1F)
            pos += 2 + size
        return out
    if t == FU_A and len(payload) >= 2 and payload[1] & 0x80:
        return [payload[1] & 0x1F]
    return []


def starts_keyframe(payload: bytes) -> bool:
    return any(t in _START for t in nal_types(payload))


def is_keyframe_fragment(payload: bytes) -> bool:
    """Any part of an IDR (used to note that a keyframe is in flight)."""
    if not payload:
        return False
    t = payload[0] & 0x1F
    if t == FU_A and len(payload) >= 2:
        return payload[1] & 0x1F == NAL_IDR
    return starts_keyframe(payload)
