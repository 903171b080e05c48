"""Vectorized RTP header fields of a batch agree with aiortc's RtpPacket.parse."""

from __future__ import annotations

import numpy as np
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.quality.records import PACKET_DTYPE
from gateway.rtp.udpbatch import BatchBuffers, packet_records, rtp_headers

MAXLEN = 256

packets = st.builds(
    lambda pt, m, seq, ts, ssrc, csrc, payload: _packet(pt, m, seq, ts, ssrc, csrc, payload),
    st.integers(0, 127),
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    st.binary(max_size=160),
)


def _packet(pt, marker, seq, ts, ssrc, csrc, payload) -> bytes:
    p = RtpPacket(
        payload_type=pt,
        marker=int(marker),
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=payload,
    )
    p.csrc = csrc
    return p.serialize(HeaderExtensionsMap())


def _batch(datagrams: list[bytes]) -> BatchBuffers:
    b = BatchBuffers(max(1, len(datagrams)), MAXLEN)
    for i, d in enumerate(datagrams):
        d = d[:MAXLEN]
        b.buf[i, : len(d)] = np.frombuffer(d, np.uint8)
        b.lengths[i] = len(d)
    return b


def _check_row(h, i, parsed: RtpPacket, second_byte: int) -> None:
    assert h.valid[i] == (not 192 <= second_byte <= 223)  # RTCP types are never RTP rows
    assert h.version[i] == 2
    assert h.payload_type[i] == parsed.payload_type
    assert h.marker[i] == bool(parsed.marker)
    assert h.seq[i] == parsed.sequence_number
    assert h.ts[i] == parsed.timestamp
    assert h.ssrc[i] == parsed.ssrc
    assert h.csrc_count[i] == len(parsed.csrc)


@given(st.lists(packets, min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_fields_match_aiortc_on_valid_packets(datagrams):
    b = _batch(datagrams)
    h = rtp_headers(b.buf, b.lengths, len(datagrams))
    assert h.seq.dtype == np.uint16 and h.ts.dtype == np.uint32 and h.ssrc.dtype == np.uint32
    for i, d in enumerate(datagrams):
        _check_row(h, i, RtpPacket.parse(d), d[1])


# Mostly version-2 first bytes, so aiortc accepts a good share of them.
rtpish = st.binary(min_size=0, max_size=64).map(
    lambda d: bytes([0x80 | (d[0] & 0x3F)]) + d[1:] if d and d[0] & 1 else d
)


@given(st.lists(rtpish, min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_random_bytes_never_contradict_aiortc(datagrams):
    b = _batch(datagrams)
    h = rtp_headers(b.buf, b.lengths, len(datagrams))
    for i, d in enumerate(datagrams):
        try:
            parsed = RtpPacket.parse(d)
        except ValueError:
            continue
        _check_row(h, i, parsed, d[1])  # whatever aiortc accepts, we read the same way


def test_rtcp_on_a_muxed_port_is_not_an_rtp_row():
    from aiortc.rtp import RtcpRrPacket

    rr = bytes(RtcpRrPacket(ssrc=1, reports=[]))
    rtp = _packet(96, True, 1, 2, 3, [], b"x")  # marker + PT 96: second byte 224, still RTP
    b = _batch([rr, rtp])
    assert rtp_headers(b.buf, b.lengths, 2).valid.tolist() == [False, True]
    assert len(packet_records(b, 2)) == 1


def test_short_or_wrong_version_rows_are_invalid():
    good = _packet(0, False, 1, 160, 7, [], b"\xff" * 160)
    b = _batch([good, good[:11], b"\x40" + good[1:], bytes([0x83]) + good[1:12] + b"\0" * 8])
    h = rtp_headers(b.buf, b.lengths, 4)
    assert h.valid.tolist() == [True, False, False, False]  # 3 CSRCs need 24 bytes


def test_packet_records_keep_valid_rows_with_kernel_time():
    pkts = [_packet(8, i == 0, 100 + i, 160 * i, 0xABC, [], b"\xd5" * 160) for i in range(5)]
    b = _batch(pkts[:2] + [b"junk"] + pkts[2:])
    b.ts_ns[:6] = [10, 0, 99, 30, 40, 50]
    rec = packet_records(b, 6, fallback_arrival_ns=7)
    assert rec.dtype == PACKET_DTYPE
    assert rec["seq"].tolist() == [100, 101, 102, 103, 104]
    assert rec["arrival_ns"].tolist() == [10, 7, 30, 40, 50]
    assert rec["size"].tolist() == [172] * 5
    assert rec["marker"].tolist() == [True, False, False, False, False]
    assert set(rec["pt"].tolist()) == {8} and set(rec["ssrc"].tolist()) == {0xABC}
