"""Our own SIP protocol errors: each carries the answer the wire gets.

A :class:`SipParseError` (remote fault) carries the status code and a reason
phrase naming the defect; the transport answers with it when it can build a
response (it needs Via, From, To, Call-ID and CSeq) and drops the message
otherwise (RFC 3261 section 18.3: a malformed datagram is discarded).
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every SIP error we raise."""


class SipParseError(SipError):
    """The peer sent something that is not valid SIP; answer ``status reason``."""

    def __init__(self, reason: str, *, status: int = 400, fatal: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # fatal: the stream can no longer be framed (bad Content-Length, oversize);
        # the connection must be closed after the answer.
        self.fatal = fatal


class SipRequestError(SipError):
    """A well-formed request we refuse; the core answers ``status reason``."""

    def __init__(self, status: int, reason: str, *, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers
