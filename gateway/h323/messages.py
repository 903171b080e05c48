"""Our frozen edge types for H.225.0 user-user information and H.245 messages.

:mod:`gateway.h323.asn1` is the only module that turns these into aligned PER and back;
everything above it (the call and H.245 cores, the service, tests) speaks these types.
Field names follow the ASN.1 where one exists (H.225.0 annex H, H.245 annex A), in
snake_case; addresses are ``(host, port)`` tuples of IPv4 text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

Address = tuple[str, int]


class Body(enum.Enum):
    """H323-UU-PDU.h323-message-body alternatives (H.225.0 section 7.6); values are ASN.1 names."""

    SETUP = "setup"
    CALL_PROCEEDING = "callProceeding"
    CONNECT = "connect"
    ALERTING = "alerting"
    INFORMATION = "information"
    RELEASE_COMPLETE = "releaseComplete"
    FACILITY = "facility"
    PROGRESS = "progress"
    EMPTY = "empty"
    STATUS = "status"
    STATUS_INQUIRY = "statusInquiry"
    SETUP_ACKNOWLEDGE = "setupAcknowledge"
    NOTIFY = "notify"


class AliasKind(enum.Enum):
    """AliasAddress alternatives (H.225.0 section 7.6) that we read; ITU spellings."""

    DIALED_DIGITS = "dialledDigits"
    H323_ID = "h323-ID"
    URL = "url-ID"
    EMAIL = "email-ID"
    PARTY_NUMBER = "partyNumber"  # E.164 / private number, reduced to its digits


@dataclass(frozen=True, slots=True, kw_only=True)
class Alias:
    kind: AliasKind
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInformation:
    """One H323-UserInformation (the user-user IE of a Q.931 message)."""

    body: Body
    call_identifier: bytes | None = None  # callIdentifier.guid, 16 octets
    conference_id: bytes | None = None
    source_aliases: tuple[Alias, ...] = ()
    destination_aliases: tuple[Alias, ...] = ()
    h245_address: Address | None = None
    fast_start: tuple[bytes, ...] | None = None  # encoded OpenLogicalChannel proposals/answers
    fast_connect_refused: bool = False
    media_wait_for_connect: bool = False
    h245_tunnelling: bool = False
    h245_control: tuple[bytes, ...] = ()  # tunnelled MultimediaSystemControlMessages
    product: str = ""  # sourceInfo/destinationInfo vendor productId + versionId
    facility_reason: str = "undefinedReason"  # FacilityReason alternative
    release_reason: str | None = None  # ReleaseCompleteReason alternative, if present


# ---------------------------------------------------------------------------------------- H.245


class MediaFormat(enum.Enum):
    """Capabilities we offer and accept (H.245 annex A AudioCapability / VideoCapability)."""

    PCMU = "g711Ulaw64k"
    PCMA = "g711Alaw64k"
    G722 = "g722-64k"
    H264 = "h264"  # GenericCapability 0.0.8.241.0.0.1 (H.241 section 8.3)
    H263 = "h263VideoCapability"

    @property
    def is_video(self) -> bool:
        return self in (MediaFormat.H264, MediaFormat.H263)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaCapability:
    format: MediaFormat
    frames: int = 20  # audio: maximum frames (ms for G.711/G.722) per packet
    max_bitrate_100bps: int = 0  # video: maxBitRate in units of 100 bit/s
    h264_profile: int = 64  # H.241 profile bit mask (64 = Baseline)
    h264_level: int = 29  # H.241 level value (29 = 1.2, 43 = 2, 64 = 3, 71 = 3.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelParams:
    """One direction of an OpenLogicalChannel (H2250LogicalChannelParameters)."""

    capability: MediaCapability
    session_id: int  # 1 audio, 2 video (H.225.0 section 6.2.8)
    media_channel: Address | None = None  # where the receiver wants RTP
    media_control: Address | None = None  # where the receiver wants RTCP
    dynamic_pt: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalCapabilitySet:
    sequence_number: int
    capabilities: tuple[MediaCapability, ...] = ()  # the ones we understand, table order
    user_input: frozenset[str] = frozenset()  # receiveUserInputCapability alternatives
    empty: bool = False  # no capabilityTable at all ("close all", H.323 section 8.4.6)
    # H2250Capability.rtcpVideoControlCapability: takes RTCP FIR (H.323 section 8.6.2)
    rtcp_video_control: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalCapabilitySetAck:
    sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalCapabilitySetReject:
    sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalCapabilitySetRelease:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterSlaveDetermination:
    terminal_type: int
    status_determination_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterSlaveDeterminationAck:
    master: bool  # decision: True when the RECEIVER of this Ack is to be master


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterSlaveDeterminationReject:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterSlaveDeterminationRelease:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLogicalChannel:
    number: int
    forward: ChannelParams | None  # None: nullData (a reverse-only fast-start proposal)
    reverse: ChannelParams | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLogicalChannelAck:
    number: int
    session_id: int | None = None
    media_channel: Address | None = None
    media_control: Address | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLogicalChannelReject:
    number: int
    cause: str = "unspecified"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLogicalChannelConfirm:
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseLogicalChannel:
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseLogicalChannelAck:
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestChannelClose:
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTripDelayRequest:
    sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTripDelayResponse:
    sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInput:
    """UserInputIndication: alphanumeric (``signal=False``) or signal (H.245 annex A)."""

    text: str
    signal: bool = False
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoFastUpdate:
    """MiscellaneousCommand videoFastUpdatePicture (a keyframe request)."""

    channel: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowControl:
    """FlowControlCommand: ``channel`` None = whole-session scope; bitrate None = no restriction."""

    channel: int | None
    max_bitrate_100bps: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndSession:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsupported:
    """A well-formed message we do not handle (``category``: request/response/command/...)."""

    category: str
    name: str


H245Message = (
    TerminalCapabilitySet
    | TerminalCapabilitySetAck
    | TerminalCapabilitySetReject
    | TerminalCapabilitySetRelease
    | MasterSlaveDetermination
    | MasterSlaveDeterminationAck
    | MasterSlaveDeterminationReject
    | MasterSlaveDeterminationRelease
    | OpenLogicalChannel
    | OpenLogicalChannelAck
    | OpenLogicalChannelReject
    | OpenLogicalChannelConfirm
    | CloseLogicalChannel
    | CloseLogicalChannelAck
    | RequestChannelClose
    | RoundTripDelayRequest
    | RoundTripDelayResponse
    | UserInput
    | VideoFastUpdate
    | FlowControl
    | EndSession
    | Unsupported
)
