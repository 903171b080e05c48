"""tick_recv / tick_pull / send_rows: the C engine steps and their NumPy twins agree, and the
jitter ring keeps the JitterBuffer's rules."""

from __future__ import annotations

import os
import socket
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.rtp import tickrecv as tr
from gateway.rtp.codecs import _g711_tables
from gateway.rtp.jitter import JitterBuffer, Pull
from gateway.rtp.udpbatch import ADDR_DTYPE, set_addr

NOW_NS = 5_000_000_000
SLOTS = 3
DTAB = np.ascontiguousarray(np.stack([_g711_tables(n)[0] for n in ("PCMU", "PCMA")]))


def native_or_fail() -> tr.Implementation:
    impl = tr.IMPLEMENTATIONS.get("native")
    if impl is None:
        if os.environ.get("VTCGW_ALLOW_NO_NATIVE"):
            pytest.skip("gateway._mixrecv is not built and VTCGW_ALLOW_NO_NATIVE is set")
        pytest.fail("gateway._mixrecv is not built: build native/mixrecv.c (setup.py)")
    return impl


def _slot(addr: tuple) -> np.ndarray:
    a = np.zeros(1, ADDR_DTYPE)
    set_addr(a, 0, addr)
    return a.view(np.uint8)


class Rig:
    """SLOTS engine legs (bound sockets) with a latched source each, and one stray source."""

    def __init__(self) -> None:
        self.socks = [self._bind() for _ in range(SLOTS)]
        self.srcs = [self._bind() for _ in range(SLOTS)]
        self.stray = self._bind()
        self.a = tr.SlotArrays(SLOTS, ring=16, log_rows=8)
        for i in range(SLOTS):
            self.a.reset(i)
            self.a.fds[i] = self.socks[i].fileno()
            self.a.active[i] = 1
            self.a.law[i] = i % 2
            self.a.pt_mask[i, 0] = self.a.pt_mask[i, 8] = 1
            if i:  # slot 0 has not latched: everything takes the Python path
                self.a.expect[i] = _slot(self.srcs[i].getsockname())

    @staticmethod
    def _bind() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    def send(self, slot: int, stray: bool, data: bytes) -> None:
        src = self.stray if stray else self.srcs[slot]
        src.sendto(data, self.socks[slot].getsockname())

    def close(self) -> None:
        for s in (*self.socks, *self.srcs, self.stray):
            s.close()


packet = st.tuples(
    st.integers(0, SLOTS - 1),
    st.sampled_from([True, True, True, False]),  # mostly from the latched source
    st.sampled_from([0x80, 0x80, 0x80, 0x81, 0x90, 0xA0, 0x40]),
    st.sampled_from([0, 8, 0x80, 101, 0xC8, 96]),
    st.integers(0, 40),  # sequence offset: reorder, duplicates, gaps
    st.sampled_from([0, 5, 12, 100, 172, 173, 400]),
)
ticks = st.lists(st.lists(packet, max_size=8), min_size=1, max_size=6)


def _datagram(b0: int, b1: int, seq: int, size: int) -> bytes:
    head = struct.pack("!BBHII", b0, b1, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0xABC)
    body = bytes((seq * 7 + k) & 0xFF for k in range(max(size - 12, 0)))
    return (head + body)[:size]


def _run(impl, rig: Rig, plan) -> list:
    out = []
    base = 65500  # crosses the 16-bit wrap
    a = rig.a
    for t, tick in enumerate(plan):
        for slot, latched, b0, b1, off, size in tick:
            rig.send(slot, not latched, _datagram(b0, b1, base + 3 * t + off, size))
        fb_n, n_acc, complete = impl.tick_recv(*a.recv_args(), 0, 1_000, NOW_NS + t)
        fb = [(int(a.fb_leg[j]), int(a.fb_len[j]), a.fb_buf[j, : min(a.fb_len[j], 2048)].tobytes())
              for j in range(fb_n)]  # fmt: skip
        impl.tick_pull(*a.pull_args(DTAB))
        out.append((fb_n, n_acc, complete, fb, a.pcm.copy(), a.kind.copy(), a.js.copy(),
                    a.jf.copy(), a.ring_ext.copy(), a.logs.copy(), a.log_n.copy()))  # fmt: skip
        a.log_n[:] = 0
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=ticks)
def test_native_and_twin_agree(plan):
    native = native_or_fail()
    rigs = [Rig(), Rig()]
    try:
        got_n = _run(native, rigs[0], plan)
        got_p = _run(tr.IMPLEMENTATIONS["python"], rigs[1], plan)
    finally:
        for r in rigs:
            r.close()
    for tn, tp in zip(got_n, got_p, strict=True):
        assert tn[:4] == tp[:4]
        for x, y in zip(tn[4:], tp[4:], strict=True):
            np.testing.assert_array_equal(x, y)


def test_bad_buffers_are_refused(impl_mix):
    a = tr.SlotArrays(2)
    args = list(a.recv_args())
    args[2] = np.zeros((2, 64), np.uint8)  # pt_mask too narrow
    with pytest.raises(ValueError):
        impl_mix.tick_recv(*args, 0, 0, 0)
    with pytest.raises(ValueError):
        impl_mix.tick_recv(*a.recv_args(), 999, 0, 0)
    with pytest.raises(ValueError):
        impl_mix.send_rows(a.fds, np.zeros((2, 10), np.uint8), np.array([11, 0], np.int32),
                           np.zeros(2, ADDR_DTYPE), 2)  # fmt: skip


@pytest.fixture(params=["native", "python"])
def impl_mix(request):
    if request.param == "native":
        return native_or_fail()
    return tr.IMPLEMENTATIONS["python"]


def test_send_rows_sends_each_row_from_its_socket(impl_mix):
    senders = [Rig._bind() for _ in range(3)]
    dst = Rig._bind()
    try:
        buf = np.zeros((3, 32), np.uint8)
        for i in range(3):
            buf[i, :5] = np.frombuffer(b"row%d!" % i, np.uint8)[:5]
        addrs = np.zeros(3, ADDR_DTYPE)
        for i in (0, 2):
            set_addr(addrs, i, dst.getsockname())
        fds = np.array([s.fileno() for s in senders], np.int32)
        sent, failed, err = impl_mix.send_rows(fds, buf, np.full(3, 5, np.int32), addrs, 3)
        assert (sent, failed, err) == (2, 0, 0)  # row 1 has no destination
        got = {}
        for _ in range(2):
            data, src = dst.recvfrom(64)
            got[src] = data
        assert got == {senders[0].getsockname(): b"row0!", senders[2].getsockname(): b"row2!"}
    finally:
        for s in (*senders, dst):
            s.close()


ops = st.lists(
    st.one_of(st.tuples(st.just("put"), st.integers(-5, 30), st.integers(0, 3_000_000)),
              st.tuples(st.just("pull"), st.just(0), st.just(0))),
    max_size=120,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(seq0=st.integers(0, 0xFFFF), ops=ops)
def test_ring_follows_the_jitter_buffer(seq0, ops):
    """The ring (Python twin of the C code) pulls what JitterBuffer pulls, counter for counter,
    as long as no two buffered packets are a ring apart."""
    oracle = JitterBuffer()
    a = tr.SlotArrays(1)
    a.reset(0)
    a.active[0] = 1
    pulls = 0
    for op, off, jitter_us in ops:
        if op == "put":
            seq = (seq0 + pulls + off) & 0xFFFF
            ts = (seq * 160) & 0xFFFFFFFF
            arrival = 10**9 + (pulls * 20_000 + jitter_us) * 1000
            payload = bytes([seq & 0xFF]) * 160
            oracle.put(seq, ts, payload, arrival / 1e9)
            keys = list(oracle._buf)
            assume(not keys or max(keys) - min(keys) < tr.RING)
            tr.jitter_put(a, 0, seq, ts, payload, arrival)
        else:
            pulls += 1
            kind, payload = oracle.pull()
            tr._tick_pull_py(*a.pull_args(DTAB))
            want = {Pull.PACKET: tr.PACKET, Pull.LOST: tr.LOST, Pull.EMPTY: tr.EMPTY}[kind]
            assert a.kind[0] == want
            if kind is Pull.PACKET:
                np.testing.assert_array_equal(a.pcm[0], DTAB[0][np.frombuffer(payload, np.uint8)])
        js = a.js[0]
        assert (js[tr.JS_LATE], js[tr.JS_DUP], js[tr.JS_LOST], js[tr.JS_UNDERRUNS]) == (
            oracle.late,
            oracle.duplicates,
            oracle.lost,
            oracle.underruns,
        )
        assert js[tr.JS_COUNT] == len(oracle)


ETAB = np.ascontiguousarray(np.stack([_g711_tables(n)[1] for n in ("PCMU", "PCMA")]))


@st.composite
def mix_case(draw):
    sizes = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    nrow = sum(sizes)
    nslot = nrow + draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    amp = draw(st.sampled_from([0, 20, 31, 3000, 32767]))
    pcm = rng.integers(-amp, amp + 1, (nslot, tr.SLOT)).astype(np.int16)
    if draw(st.booleans()) and nslot > 1:
        pcm[1] = pcm[0]  # equal levels: ties go to the earlier row
    rows = rng.permutation(nslot)[:nrow].astype(np.int64)
    starts = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
    grp = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    flags = lambda p: (rng.random(nrow) < p).astype(np.uint8)  # noqa: E731
    extra = np.zeros((len(sizes), tr.SLOT), np.int32)
    if draw(st.booleans()):
        extra[0] = rng.integers(-9000, 9000, tr.SLOT)
    own = np.zeros((nrow, tr.SLOT), np.int32)
    if nrow and draw(st.booleans()):
        own[0] = rng.integers(-9000, 9000, tr.SLOT)
    return (pcm, rng.integers(0, 3, nslot).astype(np.uint8), rows, grp, starts,
            rng.integers(0, 4, len(sizes)).astype(np.int64), flags(0.2), flags(0.2), extra, own,
            rng.integers(0, 2, nslot).astype(np.uint8), ETAB)  # fmt: skip


def _mix(impl, case):
    nrow, ngrp = len(case[2]), len(case[4])
    out = (np.zeros(nrow), np.zeros(nrow, np.uint8), np.zeros((ngrp, tr.SLOT), np.int32),
           np.zeros((nrow, 12 + tr.SLOT), np.uint8))  # fmt: skip
    impl.mix_tick(*case, *out)
    return out


@settings(max_examples=150, deadline=None)
@given(case=mix_case())
def test_mix_tick_native_and_twin_agree(case):
    native = native_or_fail()
    for x, y in zip(_mix(native, case), _mix(tr.IMPLEMENTATIONS["python"], case), strict=True):
        np.testing.assert_array_equal(x, y)


def test_mix_tick_is_mix_minus_of_the_loudest(impl_mix):
    """Three rows in one meeting, two talkers: each hears the others' selected frames."""
    pcm = np.zeros((3, tr.SLOT), np.int16)
    pcm[0], pcm[1], pcm[2] = 1000, 2000, 10  # row 2 is below the level floor
    case = (pcm, np.ones(3, np.uint8), np.arange(3, dtype=np.int64), np.zeros(3, np.int64),
            np.zeros(1, np.int64), np.array([2]), np.zeros(3, np.uint8), np.zeros(3, np.uint8),
            np.zeros((1, tr.SLOT), np.int32), np.zeros((3, tr.SLOT), np.int32),
            np.zeros(3, np.uint8), ETAB)  # fmt: skip
    level, sel, meeting, pkt = _mix(impl_mix, case)
    assert sel.tolist() == [1, 1, 0] and level.tolist() == [1e6, 4e6, 100.0]
    assert (meeting == 3000).all()
    dec = DTAB[0][pkt[:, 12:]]
    assert abs(int(dec[0, 0]) - 2000) < 80 and abs(int(dec[1, 0]) - 1000) < 40
    assert abs(int(dec[2, 0]) - 3000) < 120


def test_a_full_packet_log_leaves_the_rest_queued(impl_mix):
    """Nothing clean takes the slow path because a log is full: it waits in the socket."""
    rig = Rig()
    try:
        a = rig.a
        for k in range(12):
            rig.send(1, False, _datagram(0x80, 0, 100 + k, 172))
        fb_n, n_acc, complete = impl_mix.tick_recv(*a.recv_args(), 0, 0, NOW_NS)
        assert (fb_n, n_acc, complete) == (0, 8, 0) and a.log_n[1] == 8
        a.log_n[:] = 0  # the engine moved the rows into the session
        fb_n, n_acc, complete = impl_mix.tick_recv(*a.recv_args(), 0, 0, NOW_NS)
        assert (fb_n, n_acc, complete) == (0, 4, 1)
        assert a.logs[1, :4]["seq"].tolist() == [108, 109, 110, 111]
    finally:
        rig.close()
