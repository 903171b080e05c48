"""recv_batch/send_batch/enable_timestamps: the C path and the Python fallback agree."""

from __future__ import annotations

import random
import socket
import time

import numpy as np
import pytest

from gateway.rtp import udpbatch
from gateway.rtp.udpbatch import ADDR_DTYPE, BatchBuffers, get_addr, set_addr
from tests.native.conftest import native_or_fail
from tests.native.helpers import drain

BATCH_SIZES = [1, 7, 64, 130]  # 130 spans more than two of the C side's 64-message chunks


def _traffic(
    senders: list[socket.socket], dst: tuple, n: int, seed: int
) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    sent = []
    for _ in range(n):
        k = rng.randrange(len(senders))
        payload = rng.randbytes(rng.choice([0, 1, 12, 172, rng.randrange(300)]))
        senders[k].sendto(payload, dst)
        sent.append((k, payload))
    return sent


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_native_and_fallback_give_identical_results(udp, batch):
    native = native_or_fail()
    python = udpbatch.IMPLEMENTATIONS["python"]
    rx = udp()
    senders = [udp() for _ in range(3)]
    results = []
    for impl in (native, python):
        sent = _traffic(senders, rx.getsockname(), 150, seed=batch)
        payloads, lengths, addrs, _ = drain(impl, rx, len(sent), batch)
        assert payloads == [p for _, p in sent]
        assert lengths == [len(p) for _, p in sent]
        srcs = [get_addr(np.frombuffer(a, ADDR_DTYPE), 0) for a in addrs]
        assert srcs == [senders[k].getsockname() for k, _ in sent]
        results.append((payloads, lengths, addrs))
    assert results[0] == results[1]  # byte-identical address slots too


def test_truncation_keeps_maxlen_bytes_and_reports_wire_size(impl, udp):
    rx, tx = udp(), udp()
    big, exact, over = bytes(range(100)), bytes(64), bytes(65)
    for p in (big, exact, over, b"x"):
        tx.sendto(p, rx.getsockname())
    payloads, lengths, _, _ = drain(impl, rx, 4, batch=8, maxlen=64)
    assert lengths == [100, 64, 65, 1]  # > maxlen means truncated
    assert payloads == [big[:64], exact, over[:64], b"x"]


def test_empty_socket_returns_zero(impl, udp):
    rx = udp()
    b = BatchBuffers(4, 64)
    assert impl.recv_batch(rx.fileno(), b.buf, b.lengths, b.addrs, b.ts_ns, 4) == 0
    assert impl.recv_batch(rx, b.buf, b.lengths, None, None, 0) == 0  # socket objects work too


def test_kernel_timestamps_are_realtime_and_monotonic(impl, udp):
    rx, tx = udp(), udp()
    impl.enable_timestamps(rx.fileno())
    before = time.time_ns()
    for i in range(20):
        tx.sendto(bytes([i]), rx.getsockname())
    _, _, _, ts = drain(impl, rx, 20, batch=16)
    after = time.time_ns()
    assert all(t != 0 for t in ts)
    assert ts == sorted(ts)
    assert before - 2_000_000 <= ts[0] and ts[-1] <= after + 2_000_000  # CLOCK_REALTIME


def test_timestamps_absent_give_zero(impl, udp):
    rx, tx = udp(), udp()
    tx.sendto(b"a", rx.getsockname())
    _, _, _, ts = drain(impl, rx, 1, batch=4)
    assert ts == [0]


def test_send_batch_to_several_destinations(impl, udp):
    tx = udp()
    rxs = [udp(), udp(), udp(), udp(socket.AF_INET)]
    b = BatchBuffers(40, 200)
    expect: dict[int, list[bytes]] = {i: [] for i in range(len(rxs))}
    for i in range(40):
        k = (i * 7) % len(rxs)
        payload = f"pkt-{i}".encode() * (i % 5)
        b.buf[i, : len(payload)] = np.frombuffer(payload, np.uint8)
        b.lengths[i] = len(payload)
        set_addr(b.addrs, i, rxs[k].getsockname())
        expect[k].append(payload)
    assert impl.send_batch(tx.fileno(), b.buf, b.lengths, b.addrs, 40) == 40
    for k, rx in enumerate(rxs):
        payloads, _, addrs, _ = drain(impl, rx, len(expect[k]), batch=64)
        assert payloads == expect[k]
        assert {get_addr(np.frombuffer(a, ADDR_DTYPE), 0) for a in addrs} == {tx.getsockname()}


def test_ipv6(impl, udp):
    try:
        rx, tx = udp(socket.AF_INET6), udp(socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    b = BatchBuffers(3, 64)
    for i in range(3):
        b.buf[i, :2] = (i, i)
        b.lengths[i] = 2
        set_addr(b.addrs, i, rx.getsockname())
    assert impl.send_batch(tx, b.buf, b.lengths, b.addrs, 3) == 3
    payloads, _, addrs, _ = drain(impl, rx, 3, batch=3)
    assert payloads == [bytes((i, i)) for i in range(3)]
    assert get_addr(np.frombuffer(addrs[0], ADDR_DTYPE), 0)[:2] == tx.getsockname()[:2]


def test_connected_socket_send_without_addresses(impl, udp):
    rx, tx = udp(), udp()
    tx.connect(rx.getsockname())
    b = BatchBuffers(5, 16)
    b.lengths[:] = [1, 2, 3, 4, 5]
    assert impl.send_batch(tx.fileno(), b.buf, b.lengths, None, 5) == 5
    _, lengths, _, _ = drain(impl, rx, 5, batch=5)
    assert lengths == [1, 2, 3, 4, 5]


def test_send_stops_at_eagain_and_returns_the_count(impl):
    # A Unix datagram pair pushes back (EAGAIN) once the peer's queue is full, which
    # loopback UDP never does: it shows the partial-send path of both implementations.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(False)
        b.setblocking(False)
        n = 5000
        tx = BatchBuffers(n, 8)
        tx.buf[:, 0] = np.arange(n) % 256
        tx.lengths[:] = 1
        sent = impl.send_batch(a.fileno(), tx.buf, tx.lengths, None, n)
        assert 0 < sent < n
        assert impl.send_batch(a.fileno(), tx.buf[sent:], tx.lengths[sent:], None, 1) == 0
        rx = BatchBuffers(n, 8)
        got = impl.recv_batch(b.fileno(), rx.buf, rx.lengths, None, None, n)
        assert got == sent
        assert (rx.buf[:got, 0] == tx.buf[:sent, 0]).all()
        # the rest goes out once the queue has room: slices of the same arrays resume it
        assert impl.send_batch(a.fileno(), tx.buf[sent:], tx.lengths[sent:], None, 1) == 1
    finally:
        a.close()
        b.close()


def _bufs(n=4, maxlen=32):
    return BatchBuffers(n, maxlen)


BAD_RECV = [
    ("buf float", lambda b: dict(buf=np.zeros((4, 32), np.float32)), TypeError),
    ("buf 1-D", lambda b: dict(buf=np.zeros(128, np.uint8)), ValueError),
    ("buf non-contiguous", lambda b: dict(buf=np.zeros((4, 64), np.uint8)[:, ::2]), ValueError),
    ("buf read-only", lambda b: dict(buf=_readonly()), TypeError),
    ("buf bytes", lambda b: dict(buf=bytes(128)), TypeError),
    ("buf not a buffer", lambda b: dict(buf=[[0] * 32] * 4), TypeError),
    ("lengths int64", lambda b: dict(lengths=np.zeros(4, np.int64)), TypeError),
    ("lengths uint32", lambda b: dict(lengths=np.zeros(4, np.uint32)), TypeError),
    ("lengths big-endian", lambda b: dict(lengths=np.zeros(4, ">i4")), TypeError),
    ("lengths 2-D", lambda b: dict(lengths=np.zeros((4, 1), np.int32)), ValueError),
    ("addrs wrong item size", lambda b: dict(addrs=np.zeros(4, np.int64)), TypeError),
    ("ts int32", lambda b: dict(ts_ns=np.zeros(4, np.int32)), TypeError),
    ("max_count too big", lambda b: dict(max_count=5), ValueError),
    ("max_count above a short array", lambda b: dict(ts_ns=np.zeros(2, np.int64)), ValueError),
    ("max_count negative", lambda b: dict(max_count=-1), ValueError),
    ("negative fd", lambda b: dict(fd=-1), ValueError),
]


def _readonly():
    a = np.zeros((4, 32), np.uint8)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case,change,exc", BAD_RECV, ids=[c[0] for c in BAD_RECV])
def test_bad_recv_arguments_raise(impl, udp, case, change, exc):
    rx = udp()
    b = _bufs()
    args = dict(
        fd=rx.fileno(), buf=b.buf, lengths=b.lengths, addrs=b.addrs, ts_ns=b.ts_ns, max_count=4
    )
    args.update(change(b))
    with pytest.raises(exc):
        impl.recv_batch(*args.values())


def _family_zero(b):
    b.addrs["family"][1] = 0
    return {}


def _length_too_big(b):
    b.lengths[2] = 33
    return {}


BAD_SEND = [
    ("length above maxlen", _length_too_big, ValueError),
    ("unknown address family", _family_zero, ValueError),
    ("count too big", lambda b: dict(count=5), ValueError),
    ("lengths float", lambda b: dict(lengths=np.zeros(4, np.float32)), TypeError),
    ("dst wrong item size", lambda b: dict(dst_addrs=np.zeros(4, np.uint32)), TypeError),
]


@pytest.mark.parametrize("case,change,exc", BAD_SEND, ids=[c[0] for c in BAD_SEND])
def test_bad_send_arguments_raise_before_sending(impl, udp, case, change, exc):
    rx, tx = udp(), udp()
    b = _bufs()
    b.lengths[:] = 3
    for i in range(4):
        set_addr(b.addrs, i, rx.getsockname())
    args = dict(fd=tx.fileno(), buf=b.buf, lengths=b.lengths, dst_addrs=b.addrs, count=4)
    args.update(change(b))
    with pytest.raises(exc):
        impl.send_batch(*args.values())
    assert impl.recv_batch(rx, b.buf, b.lengths, None, None, 0) == 0
    with pytest.raises(BlockingIOError):
        rx.recv(64)  # nothing left: validation happens before the first datagram


def test_closed_fd_raises_oserror(impl):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    s.close()
    b = _bufs()
    with pytest.raises(OSError):
        impl.recv_batch(fd, b.buf, b.lengths, b.addrs, b.ts_ns, 4)


def test_a_socket_with_a_timeout_does_not_block(impl, udp):
    rx = udp()
    rx.settimeout(5.0)
    b = BatchBuffers(2, 16)
    t0 = time.monotonic()
    assert impl.recv_batch(rx, b.buf, b.lengths, b.addrs, b.ts_ns, 2) == 0
    assert time.monotonic() - t0 < 2.5  # returned at once rather than waiting out the 5 s
