"""Keypad digits as RFC 4733 telephone-events on a load call's own RTP stream.

`event_packets` is pure: the packets of one key press, 20 ms apart on the wire,
all carrying the event's start timestamp: the first with the marker bit, the
duration growing by one packet time each, and the end packet sent three times
(RFC 4733 sections 2.5.1.2-2.5.1.4). Sequence numbers continue the call's audio
stream, so a receiver sees no gap (a gap before a digit makes it suspect).

`key_digits` sends them for one call of an `RtpLoadEngine` from the call's own
socket (the address in our SDP, so a latching gateway accepts them), taking
sequence numbers from the engine's stream state; audio keeps flowing alongside.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmarks.load.rtp_load import RtpLoadEngine

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PACKET_S = 0.02
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz
VOLUME = 10  # -10 dBm0
END_REPEATS = 3
_HEADER = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")


def event_packets(digit: str, *, ssrc: int, first_seq: int, timestamp: int, payload_type: int = 101,
                  duration_ms: int = 100) -> list[bytes]:
    """Every packet of one key press, in sending order (one per 20 ms)."""
    event = EVENTS[digit.upper()]
    steps = max(1, duration_ms // 20)
    out = []
    seq = first_seq
    for k in range(1, steps + 1 + END_REPEATS - 1):
        end = k >= steps
        duration = min(k, steps) * SAMPLES_PER_PACKET
        marker = 0x80 if k == 1 else 0
        head = _HEADER.pack(0x80, marker | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        out.append(head + _EVENT.pack(event, (0x80 if end else 0) | VOLUME, duration))
        seq += 1
    return out


async def key_digits(engine: RtpLoadEngine, call_id: Hashable, remote: tuple[str, int], digits: str,
                     *, payload_type: int = 101, duration_ms: int = 100, gap_ms: int = 100) -> int:
    """Send `digits` as telephone-events on the call's RTP stream (audio pauses during each
    event, as RFC 4733 section 2.5.1.1 has it); returns the packets sent."""
    import time

    streams = engine.streams
    sent = 0
    for digit in digits:
        if digit.upper() not in EVENTS:
            continue
        i = streams.index_of(call_id)
        row = np.array([i])
        streams.wheel.cancel(row)  # the call's audio stops for the event
        ts = int(streams.rtp_ts[i])
        packets = event_packets(digit, ssrc=int(streams.ssrc[i]), first_seq=int(streams.seq[i]),
                                timestamp=ts, payload_type=payload_type, duration_ms=duration_ms)
        sock = engine.socks[int(streams.sock[i])]
        try:
            for k, p in enumerate(packets):
                if k:
                    await asyncio.sleep(PACKET_S)
                sock.sendto(p, remote)
                sent += 1
        finally:
            streams.seq[i] = np.uint16((int(streams.seq[i]) + len(packets)) & 0xFFFF)
            streams.rtp_ts[i] = np.uint32((ts + len(packets) * SAMPLES_PER_PACKET) & 0xFFFFFFFF)
            if streams.active[i]:
                streams.wheel.schedule(row, np.array([time.monotonic_ns() + 20_000_000]))
        await asyncio.sleep(gap_ms / 1000)
    return sent
