"""relay_batch: the C relay step and its NumPy twin agree with a per-row oracle."""

from __future__ import annotations

import select
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.quality.records import PACKET_DTYPE
from gateway.rtp import udpbatch
from gateway.rtp.udpbatch import ADDR_DTYPE, BatchBuffers, set_addr
from tests.native.conftest import native_or_fail

MAXLEN = 64
OFFSET_NS = 1_000
NOW_NS = 777


def _slot(addr: tuple) -> bytes:
    a = np.zeros(1, ADDR_DTYPE)
    set_addr(a, 0, addr)
    return a.tobytes()


SOURCES = [("127.0.0.1", 4000), ("127.0.0.1", 4001), ("127.0.0.2", 4000), ("::1", 4000)]
EXPECT = SOURCES[0]
MEDIA_PTS = {0, 8}


def _mask(pts: set[int]) -> bytes:
    return bytes(1 if pt in pts else 0 for pt in range(128))


def _row(b0: int, b1: int, seq: int, ts: int, ssrc: int, size: int) -> bytes:
    head = struct.pack("!BBHII", b0, b1, seq, ts, ssrc)
    return (head + bytes(range(size)))[: max(size, 0)]


datagram = st.tuples(
    st.sampled_from([0x80, 0x80, 0x80, 0x81, 0x8F, 0x40, 0x90]),  # V=2, CSRCs, V=1, X bit
    st.sampled_from([0, 8, 0x80, 0x88, 101, 200, 0xC8, 96]),  # media, marker, DTMF, RTCP
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([0, 5, 12, 16, 40, 60, MAXLEN, MAXLEN + 1, 300]),  # wire size
    st.integers(0, len(SOURCES) - 1),
    st.sampled_from([0, 0, 5_000_000_000]),  # kernel stamp or none
)


def _fill(rows: list) -> BatchBuffers:
    b = BatchBuffers(max(len(rows), 1), MAXLEN)
    for i, (b0, b1, seq, ts, ssrc, size, src, stamp) in enumerate(rows):
        data = _row(b0, b1, seq, ts, ssrc, min(size, MAXLEN))
        b.buf[i, : len(data)] = np.frombuffer(data, np.uint8)
        b.lengths[i] = size
        set_addr(b.addrs, i, SOURCES[src])
        b.ts_ns[i] = stamp
    return b


def _oracle(rows: list) -> list[tuple]:
    """The records the relay must keep, one per accepted datagram, literally."""
    out = []
    for b0, b1, seq, ts, ssrc, size, src, stamp in rows:
        ok = (
            12 <= size <= MAXLEN
            and b0 >> 6 == 2
            and size >= 12 + 4 * (b0 & 0x0F)
            and not 192 <= b1 <= 223
            and (b1 & 0x7F) in MEDIA_PTS
            and SOURCES[src] == EXPECT
        )
        if ok:
            arrival = stamp - OFFSET_NS if stamp else NOW_NS
            out.append((arrival, seq, ts, ssrc, b1 & 0x7F, bool(b1 & 0x80), size))
    return out


def _run(impl, b: BatchBuffers, count: int, fd: int = -1, dest: bytes | None = None):
    rows = np.zeros(b.capacity, PACKET_DTYPE)
    acc = np.full(b.capacity, 9, np.uint8)
    res = impl.relay_batch(
        b.buf, b.lengths, b.addrs, b.ts_ns, count, _slot(EXPECT), _mask(MEDIA_PTS),
        rows, acc, OFFSET_NS, NOW_NS, fd, dest,
    )  # fmt: skip
    return res, rows[: res[0]].tolist(), acc[:count].tolist()


@pytest.mark.parametrize("name", ["native", "python"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(datagram, min_size=0, max_size=80))
def test_records_and_verdicts_match_the_oracle(name, batch):
    impl = native_or_fail() if name == "native" else udpbatch.IMPLEMENTATIONS["python"]
    b = _fill(batch)
    (n_acc, nbytes, n_sent, last_ts, err), rows, acc = _run(impl, b, len(batch))
    want = _oracle(batch)
    assert rows == want
    assert n_acc == len(want) and n_sent == 0 and err == 0
    assert nbytes == sum(r[6] for r in want)
    assert last_ts == (want[-1][2] if want else 0)
    assert sum(acc) == n_acc and set(acc) <= {0, 1}


@pytest.mark.parametrize("count", [1, 7, 64, 130])  # 130 spans three of the C side's chunks
def test_accepted_datagrams_reach_dest_in_order_and_unchanged(impl, udp, count):
    tx, sink = udp(), udp()
    batch = [
        (0x80, 0 if i % 5 else 101, i, 160 * i, 7, 12 + i % 50, 0 if i % 7 else 1, 0) for i in range(count)
    ]
    b = _fill(batch)
    (n_acc, _nbytes, n_sent, _ts, err), rows, acc = _run(
        impl, b, count, tx.fileno(), _slot(sink.getsockname())
    )
    want = [i for i, ok in enumerate(acc) if ok]
    assert n_acc == len(want) == n_sent and err == 0
    got = []
    while len(got) < n_sent:
        assert select.select([sink], [], [], 5.0)[0], f"only {len(got)} of {n_sent} arrived"
        got.append(sink.recv(2048))
    assert got == [b.payload(i) for i in want]
    assert [r[1] for r in rows] == want  # seq numbers of the accepted rows, in batch order


def test_send_error_is_returned_not_raised_and_records_are_kept(impl, udp):
    tx = udp()
    b = _fill([(0x80, 0, 1, 160, 7, 40, 0, 0)])
    v6_dest = _slot(("::1", 9))  # an IPv6 destination on an IPv4 socket: EAFNOSUPPORT/EINVAL
    (n_acc, _nbytes, n_sent, _ts, err), rows, _ = _run(impl, b, 1, tx.fileno(), v6_dest)
    assert n_acc == 1 and n_sent == 0 and err != 0
    assert rows[0][1] == 1


def test_bad_arguments_raise_before_anything_is_written(impl):
    b = _fill([(0x80, 0, 1, 160, 7, 40, 0, 0)])
    rows = np.zeros(1, PACKET_DTYPE)
    acc = np.zeros(1, np.uint8)
    args = [b.buf, b.lengths, b.addrs, b.ts_ns, 1, _slot(EXPECT), _mask(MEDIA_PTS), rows, acc,
            0, 0, -1, None]  # fmt: skip
    with pytest.raises(ValueError):
        impl.relay_batch(*args[:4], 2, *args[5:])  # more rows than the buffers hold
    with pytest.raises(ValueError):
        impl.relay_batch(*args[:6], b"\x01" * 12, *args[7:])  # pt_mask must be 128 bytes
    with pytest.raises(ValueError):
        impl.relay_batch(*args[:5], b"\x00" * 28, *args[6:])  # no address family
    with pytest.raises(TypeError):
        impl.relay_batch(*args[:7], np.zeros(1, np.int64), *args[8:])  # not PACKET_DTYPE
    assert rows.tolist() == np.zeros(1, PACKET_DTYPE).tolist()


@pytest.mark.parametrize("count", [2, 64, 130])
def test_equal_sized_runs_arrive_as_separate_identical_datagrams(impl, udp, count):
    """Runs of equal size may leave as one UDP GSO message: the sink still gets datagrams."""
    tx, sink = udp(), udp()
    batch = [(0x80, 0, i, 160 * i, 7, 60 if i != count // 2 else 40, 0, 0) for i in range(count)]
    b = _fill(batch)
    for i in range(count):
        b.buf[i, 12:60] = i & 0xFF  # a payload that tells the datagrams apart
    (n_acc, _nbytes, n_sent, _ts, err), _rows, _acc = _run(
        impl, b, count, tx.fileno(), _slot(sink.getsockname())
    )
    assert n_acc == n_sent == count and err == 0
    got = []
    while len(got) < count:
        assert select.select([sink], [], [], 5.0)[0], f"only {len(got)} of {count} arrived"
        got.append(sink.recv(2048))
    assert got == [b.payload(i) for i in range(count)]
