"""TPKT framing (RFC 1006 section 6; H.225.0 section 7.1 and H.245 over TCP use it).

    +---------+----------+----------------+--------------------+
    | vrsn=3  | reserved | length (16 bit, header included)    |
    +---------+----------+----------------+--------------------+

A frame is at least 4 bytes (an empty payload is legal and some stacks send it as a
keep-alive). We cap the accepted length (``max_frame``) so a peer cannot make us buffer
64 KiB of junk per connection, and any bad header is a :class:`RemoteProtocolError`
carrying Q.850 cause 95 (invalid message): the stream cannot be resynchronised, so the
adapter ends the call and closes.
"""

from __future__ import annotations

import struct

from gateway.h323.errors import Cause, RemoteProtocolError

VERSION = 3
HEADER_LEN = 4
MAX_FRAME = 16384  # a Setup with fastStart + tunnelled TCS is ~1.5 KB; real ones stay < 4 KB


def frame(payload: bytes) -> bytes:
    """One TPKT around ``payload``."""
    total = len(payload) + HEADER_LEN
    if total > 0xFFFF:
        raise ValueError(f"TPKT payload of {len(payload)} bytes does not fit in 16 bits")
    return struct.pack("!BBH", VERSION, 0, total) + payload


class TpktReader:
    """Reassembles TPKT frames from arbitrary TCP chunks."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete payload, in order."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= HEADER_LEN:
            version, _reserved, length = struct.unpack_from("!BBH", self._buf)
            if version != VERSION:
                raise RemoteProtocolError(f"TPKT version {version} (want 3)", Cause.INVALID_MESSAGE)
            if length < HEADER_LEN:
                raise RemoteProtocolError(f"TPKT length {length} < 4", Cause.INVALID_MESSAGE)
            if length > self.max_frame:
                raise RemoteProtocolError(
                    f"TPKT length {length} over cap {self.max_frame}", Cause.INVALID_MESSAGE
                )
            if len(self._buf) < length:
                break
            out.append(bytes(self._buf[HEADER_LEN:length]))
            del self._buf[:length]
        return out
