"""Q.850 causes and the H.323 protocol errors that carry them.

A remote protocol error (malformed TPKT, Q.931, PER; a message out of state) carries
the cause we answer with in ReleaseComplete (H.225.0 section 7.2.2.2, Q.931 section 5.8);
the adapter sends it and closes the connection. Nothing here does I/O.
"""

from __future__ import annotations

import enum


class Cause(enum.IntEnum):
    """Q.850 cause values we send or recognise (Q.850 table 1)."""

    UNALLOCATED_NUMBER = 1
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONDING = 18
    NO_ANSWER = 19
    CALL_REJECTED = 21
    RESPONSE_TO_STATUS_ENQUIRY = 30
    NORMAL_UNSPECIFIED = 31
    NO_CIRCUIT_AVAILABLE = 34
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    SWITCHING_EQUIPMENT_CONGESTION = 42
    RESOURCE_UNAVAILABLE = 47
    BEARER_CAPABILITY_NOT_IMPLEMENTED = 65
    SERVICE_NOT_IMPLEMENTED = 79
    INVALID_CALL_REFERENCE = 81
    INCOMPATIBLE_DESTINATION = 88
    INVALID_MESSAGE = 95
    MANDATORY_IE_MISSING = 96
    MESSAGE_TYPE_NONEXISTENT = 97
    MESSAGE_NOT_COMPATIBLE_WITH_STATE = 98
    IE_NONEXISTENT = 99
    INVALID_IE_CONTENTS = 100
    MESSAGE_NOT_COMPATIBLE_WITH_CALL_STATE = 101
    RECOVERY_ON_TIMER_EXPIRY = 102
    PROTOCOL_ERROR = 111
    INTERWORKING = 127

    @classmethod
    def from_value(cls, value: int) -> Cause | int:
        """Our enum where we know the value, else the bare integer (still valid Q.850)."""
        try:
            return cls(value)
        except ValueError:
            return value


class H323Error(Exception):
    """Base of every error raised by the H.323 cores."""


class RemoteProtocolError(H323Error):
    """The peer sent something we cannot accept; ``cause`` is what we answer with."""

    def __init__(self, reason: str, cause: Cause = Cause.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


class LocalProtocolError(H323Error):
    """Our own code asked a core to do something its state does not allow."""
