"""RFC 4733 key presses of the load generator, read back by the gateway's own DtmfReceiver."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.load.telephone_event import EVENTS, event_packets
from gateway.rtp.dtmf import DtmfReceiver


def fields(p: bytes) -> tuple[int, int, int, int, int, bool, int]:
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", p)
    event, flags, duration = struct.unpack_from("!BBH", p, 12)
    return b1 >> 7, b1 & 0x7F, seq, ts, event, bool(flags & 0x80), duration


@given(st.sampled_from(sorted(EVENTS)), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(20, 400))
def test_one_key_press(digit: str, seq: int, ts: int, duration_ms: int) -> None:
    packets = event_packets(digit, ssrc=7, first_seq=seq, timestamp=ts, duration_ms=duration_ms)
    f = [fields(p) for p in packets]
    assert [x[0] for x in f] == [1] + [0] * (len(f) - 1)  # marker on the first only
    assert {x[1] for x in f} == {101} and {x[3] for x in f} == {ts} and {x[4] for x in f} == {EVENTS[digit]}
    assert [x[2] for x in f] == [(seq + k) & 0xFFFF for k in range(len(f))]  # no gap
    assert [x[5] for x in f][-3:] == [True] * 3 and not any(x[5] for x in f[:-3])  # end sent 3 times
    durations = [x[6] for x in f]
    assert durations == sorted(durations) and durations[-1] == max(1, duration_ms // 20) * 160


def test_gateway_receiver_reads_each_digit_once() -> None:
    rx = DtmfReceiver()
    got: list[str] = []
    ts, now = 1000, 0.0
    for digit in "4718203956#":
        for p in event_packets(digit, ssrc=7, first_seq=0, timestamp=ts):
            rx.receive(p[12:16], ts, now)
            now += 0.02
        got += rx.digits()
        ts += 160 * 20
    assert "".join(got) == "4718203956#"
