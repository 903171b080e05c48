"""Value types shared by signalling (SIP SDP, H.245) and the media plane.

Signalling negotiates; the media plane only ever sees these frozen values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class MediaKind(enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


class Pool(enum.Enum):
    """Which configured UDP range a leg's ports come from (SPEC.md firewall table)."""

    SIP = "sip"
    H323 = "h323"


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    payload_type: int
    name: str  # as in rtpmap, upper-cased: PCMU, PCMA, G722, OPUS, TELEPHONE-EVENT, H264
    clock_rate: int
    channels: int = 1
    fmtp: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SrtpParams:
    """SDES (RFC 4568) keys for one direction: suite name and base64 key||salt."""

    suite: str  # AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32
    key_b64: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegConfig:
    """What offer/answer settled for one m-line; given to RtpLeg.configure (idempotent)."""

    kind: MediaKind
    remote_rtp: tuple[str, int] | None  # None or port 0: nothing to send to yet / on hold
    remote_rtcp: tuple[str, int] | None
    codecs: tuple[Codec, ...]  # first is the one we send
    telephone_event_pt: int | None = None
    rtcp_mux: bool = False
    direction: Direction = Direction.SENDRECV
    srtp_tx: SrtpParams | None = None  # our key, sent to the peer in our SDP
    srtp_rx: SrtpParams | None = None  # the peer's key, from its SDP
    # RTCP feedback the device advertised (a=rtcp-fb), e.g. {"ccm fir", "nack pli", "nack"}
    rtcp_fb: frozenset[str] = field(default_factory=frozenset)
