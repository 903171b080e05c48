"""hub_relay: the C relay hub pass and its Python twin agree, and both follow the rules.

Real loopback sockets: each example binds a few leg sockets in one epoll set, sends the
same datagrams to both implementations' copies, drains them and compares what each logged,
counted, handed back and forwarded, also against a per-datagram oracle.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.quality.records import PACKET_DTYPE
from gateway.rtp import relayhub as rh
from gateway.rtp import udpbatch as ub

pytestmark = pytest.mark.timeout(120)

MAXLEN = 64  # scratch row length: larger datagrams arrive truncated and are handed back
OFFSET_NS = 1_000
NOW_NS = 777


def native_or_fail():
    impl = rh.IMPLEMENTATIONS.get("native")
    if impl is None:
        if os.environ.get("VTCGW_ALLOW_NO_NATIVE"):
            pytest.skip("gateway._relayhub is not built and VTCGW_ALLOW_NO_NATIVE is set")
        pytest.fail("gateway._relayhub is not built: run the native build")
    return impl


@pytest.fixture(params=["native", "python"])
def impl(request):
    return native_or_fail() if request.param == "native" else rh.IMPLEMENTATIONS["python"]


def _slot(addr) -> np.void:
    a = np.zeros(1, ub.ADDR_DTYPE)
    if addr is not None:
        ub.set_addr(a, 0, addr)
    return np.frombuffer(a.tobytes(), (np.void, rh.ADDR_SIZE))[0]


class Rig:
    """Leg sockets in one epoll set, two senders (the latched source and a stranger), one
    socket the hub sends from and one sink it sends to."""

    def __init__(self, legs: list[dict], log_rows: int = 32) -> None:
        self.socks: list[socket.socket] = []
        self.ep = select.epoll()
        n = len(legs)
        self.table = np.zeros(n, rh.HUB_DTYPE)
        self.counters = np.zeros((n, rh.NCOUNTERS), np.int64)
        self.logs = np.zeros((n, log_rows), PACKET_DTYPE)
        self.fd_slot = np.full(4096, -1, np.int32)
        self.src = [self._sock() for _ in range(2)]
        self.out = self._sock()
        self.sink = self._sock()
        self.legs = []
        for i, spec in enumerate(legs):
            s = self._sock()
            if spec["stamps"]:
                ub.enable_timestamps(s)
            self.legs.append(s)
            self.fd_slot[s.fileno()] = i
            self.ep.register(s.fileno(), select.EPOLLIN)
            self.table["fd"][i] = s.fileno()
            self.table["expect"][i] = _slot(self.src[0].getsockname() if spec["latched"] else None)
            self.table["mask"][i] = [1 if pt in spec["pts"] else 0 for pt in range(128)]
            if spec["dest"]:
                self.table["dest"][i] = _slot(self.sink.getsockname())
                self.table["out_fd"][i] = self.out.fileno()
            else:
                self.table["out_fd"][i] = -1

    def _sock(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(s)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    def close(self) -> None:
        self.ep.close()
        for s in self.socks:
            s.close()

    def run(self, fn, expect_total: int, *, fb_rows: int = 512, budget: int = 1024) -> dict:
        """Call fn until every datagram sent was read; fold logs whenever a region fills."""
        scratch = np.zeros((64, MAXLEN), np.uint8)
        fb_buf = np.zeros((fb_rows, MAXLEN), np.uint8)
        fb_meta = np.zeros(fb_rows, rh.FB_DTYPE)
        rows: list[list] = [[] for _ in self.legs]
        fb: list[list] = [[] for _ in self.legs]
        totals = np.zeros((len(self.legs), rh.NCOUNTERS), np.int64)
        seen = 0
        deadline = time.monotonic() + 10
        while seen < expect_total:
            assert time.monotonic() < deadline, f"read {seen} of {expect_total}"
            n_acc, n_fb, status = fn(
                self.ep, self.table, self.counters, self.logs, self.fd_slot, scratch, fb_buf,
                fb_meta, OFFSET_NS, NOW_NS, budget,
            )  # fmt: skip
            assert status in (0, 1, 2)
            assert n_acc == 0 or n_acc <= budget
            seen += n_acc + n_fb
            for k in range(n_fb):
                m = fb_meta[k]
                size = int(m["len"])
                fb[int(m["slot"])].append(
                    (size, bytes(m["addr"]), fb_buf[k, : min(size, MAXLEN)].tobytes())
                )
            for i in range(len(self.legs)):  # a fold: C_NEWEST goes on, the rest restarts
                c = self.counters[i]
                rows[i].extend(self.logs[i, : int(c[rh.C_LOG_N])].tolist())
                totals[i, : rh.C_NEWEST] += c[: rh.C_NEWEST]
                totals[i, rh.C_NEWEST] = c[rh.C_NEWEST]
                totals[i, rh.C_MAX_GAP] = max(totals[i, rh.C_MAX_GAP], c[rh.C_MAX_GAP])
                c[: rh.C_NEWEST] = 0
                c[rh.C_MAX_GAP] = 0
            if n_acc + n_fb == 0 and status == 0:
                self.ep.poll(1.0)  # wait for the rest to be queued
        forwarded = []
        while True:
            try:
                forwarded.append(self.sink.recv(4096))
            except BlockingIOError:
                if len(forwarded) >= int(totals[:, rh.C_TX_PACKETS].sum()):
                    break
                select.select([self.sink], [], [], 1.0)
        return {"rows": rows, "fb": fb, "totals": totals, "forwarded": forwarded}


def _datagram(b0: int, b1: int, seq: int, size: int) -> bytes:
    head = struct.pack("!BBHII", b0, b1, seq, seq * 160, 0x1234)
    return (head + bytes(range(256)) * 8)[:size]


leg_spec = st.fixed_dictionaries(
    {
        "latched": st.booleans(),
        "pts": st.sets(st.sampled_from([0, 8, 96, 101]), max_size=3),
        "dest": st.booleans(),
        "stamps": st.booleans(),
    }
)
datagram = st.tuples(
    st.integers(0, 3),  # leg
    st.sampled_from([0, 0, 0, 1]),  # source: 0 the latched one, 1 a stranger
    st.sampled_from([0x80, 0x80, 0x80, 0x81, 0x8F, 0x40, 0x90]),  # V=2, CSRCs, V=1, X
    st.sampled_from([0, 8, 0x80, 0x88, 101, 200, 0xC8, 96]),  # media, marker, DTMF, RTCP
    st.sampled_from([0, 5, 12, 16, 40, MAXLEN, MAXLEN + 1, 300]),
)


def _oracle(legs: list[dict], sent: list[tuple], rig_src0: tuple) -> tuple[list, list, list]:
    """Per leg: the (pt, marker, size) rows the hub must log, how many go back, and the
    session's DTMF loss-run rule over the logged sequence numbers: (1 + newest, longest gap)."""
    rows: list[list] = [[] for _ in legs]
    back = [0] * len(legs)
    runs = [[0, 0] for _ in legs]
    for seq, (leg, src, b0, b1, size) in enumerate(sent):
        spec = legs[leg]
        ok = (
            spec["latched"]
            and src == 0
            and 12 <= size <= MAXLEN
            and b0 >> 6 == 2
            and size >= 12 + 4 * (b0 & 0x0F)
            and not 192 <= b1 <= 223
            and (b1 & 0x7F) in spec["pts"]
        )
        if ok:
            rows[leg].append((b1 & 0x7F, b1 >> 7, size))
            top = runs[leg][0] - 1
            if top < 0 or (seq - top) & 0xFFFF < 0x8000:
                gap = (seq - top - 1) & 0xFFFF
                if top >= 0 and gap < 3000 and gap > runs[leg][1]:
                    runs[leg][1] = gap
                runs[leg][0] = seq + 1
        else:
            back[leg] += 1
    return rows, back, runs


def _send(rig: Rig, sent: list[tuple]) -> None:
    for seq, (leg, src, b0, b1, size) in enumerate(sent):
        leg %= len(rig.legs)
        rig.src[src].sendto(_datagram(b0, b1, seq, size), rig.legs[leg].getsockname())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    legs=st.lists(leg_spec, min_size=1, max_size=4),
    sent=st.lists(datagram, max_size=60),
    log_rows=st.sampled_from([4, 32]),
)
def test_native_and_python_agree_with_the_oracle(legs, sent, log_rows):
    native = native_or_fail()
    sent = [(leg % len(legs), *rest) for leg, *rest in sent]
    results = {}
    for name, fn in (("native", native), ("python", rh.IMPLEMENTATIONS["python"])):
        rig = Rig(legs, log_rows)
        try:
            _send(rig, sent)
            results[name] = rig.run(fn, len(sent))
            src0 = rig.src[0].getsockname()
        finally:
            rig.close()
        want_rows, want_back, want_runs = _oracle(legs, sent, src0)
        got = results[name]
        for i, spec in enumerate(legs):
            logged = got["rows"][i]
            assert [(r[4], int(r[5]), r[6]) for r in logged] == want_rows[i]
            assert len(got["fb"][i]) == want_back[i]
            t = got["totals"][i]
            assert t[rh.C_RX_PACKETS] == len(want_rows[i])
            assert t[rh.C_RX_BYTES] == sum(r[2] for r in want_rows[i])
            assert t[rh.C_FALLBACK] == want_back[i]
            assert t[rh.C_TX_PACKETS] == (len(want_rows[i]) if spec["dest"] else 0)
            assert [t[rh.C_NEWEST], t[rh.C_MAX_GAP]] == want_runs[i]
            for r in logged:
                if spec["stamps"]:
                    assert abs(r[0] + OFFSET_NS - time.time_ns()) < 60e9  # a kernel stamp
                else:
                    assert r[0] == NOW_NS
            for size, _addr, payload in got["fb"][i]:
                assert len(payload) == min(size, MAXLEN)
    a, b = results["native"], results["python"]

    def strip(res):  # arrival times differ between the two copies
        return (
            [[r[1:] for r in rows] for rows in res["rows"]],
            [[(s, p) for s, _a, p in fb] for fb in res["fb"]],
            np.delete(res["totals"], [rh.C_LAST_RX_NS, rh.C_LAST_TX_NS, rh.C_BATCHES], 1).tolist(),
            Counter(res["forwarded"]),
        )

    assert strip(a) == strip(b)
    assert sum(len(r) for r in a["rows"]) + sum(len(f) for f in a["fb"]) == len(sent)


def test_forwarded_datagrams_arrive_intact_from_the_out_socket(impl):
    rig = Rig([{"latched": True, "pts": {0}, "dest": True, "stamps": True}])
    try:
        sent = [_datagram(0x80, 0, seq, 60) for seq in range(20)]
        for d in sent:
            rig.src[0].sendto(d, rig.legs[0].getsockname())
        out = rig.run(impl, len(sent))
        assert out["forwarded"] == sent  # one socket, one sender: order kept too
        assert out["totals"][0, rh.C_TX_PACKETS] == 20
        assert out["totals"][0, rh.C_LAST_TX_TS] == 19 * 160
        assert out["totals"][0, rh.C_SEND_ERRORS] == 0
        assert out["rows"][0][-1][1] == 19  # seq of the last row
    finally:
        rig.close()


def test_budget_and_full_fallback_rows_stop_the_pass(impl):
    rig = Rig([{"latched": False, "pts": {0}, "dest": False, "stamps": False}])
    try:
        for seq in range(12):
            rig.src[0].sendto(_datagram(0x80, 0, seq, 40), rig.legs[0].getsockname())
        rig.ep.poll(1.0)
        scratch = np.zeros((64, MAXLEN), np.uint8)
        fb_buf = np.zeros((6, MAXLEN), np.uint8)
        fb_meta = np.zeros(6, rh.FB_DTYPE)
        args = (rig.table, rig.counters, rig.logs, rig.fd_slot, scratch, fb_buf, fb_meta)
        got = 0
        deadline = time.monotonic() + 5
        while got < 4:  # budget 4: at most 4 datagrams per call
            assert time.monotonic() < deadline
            n_acc, n_fb, status = impl(rig.ep, *args, OFFSET_NS, NOW_NS, 4 - got)
            assert n_acc == 0 and n_fb <= 4 - got
            got += n_fb
        assert status == 1
        n_acc, n_fb, status = impl(rig.ep, *args, OFFSET_NS, NOW_NS, 100)
        assert (n_acc, n_fb, status) == (0, 6, 1)  # the fallback rows (6) filled up
        seqs = [struct.unpack_from("!H", fb_buf[k, 2:4].tobytes())[0] for k in range(6)]
        assert seqs == list(range(4, 10))
        assert impl(rig.ep, *args, OFFSET_NS, NOW_NS, 100) == (0, 2, 0)  # drained
        assert impl(rig.ep, *args, OFFSET_NS, NOW_NS, 100) == (0, 0, 0)
    finally:
        rig.close()


def test_sockets_not_in_the_table_are_left_alone(impl):
    rig = Rig([{"latched": True, "pts": {0}, "dest": False, "stamps": False}])
    try:
        rig.fd_slot[rig.legs[0].fileno()] = -1  # registered, but no slot claims it
        rig.src[0].sendto(_datagram(0x80, 0, 1, 40), rig.legs[0].getsockname())
        rig.ep.poll(1.0)
        scratch = np.zeros((64, MAXLEN), np.uint8)
        fb = np.zeros((8, MAXLEN), np.uint8), np.zeros(8, rh.FB_DTYPE)
        args = (rig.table, rig.counters, rig.logs, rig.fd_slot, scratch, *fb)
        assert impl(rig.ep, *args, OFFSET_NS, NOW_NS, 100) == (0, 0, 0)
        assert rig.legs[0].recv(100)[2:4] == b"\x00\x01"  # still queued
    finally:
        rig.close()


def test_bad_buffers_are_refused_before_any_read(impl):
    rig = Rig([{"latched": True, "pts": {0}, "dest": False, "stamps": False}])
    try:
        rig.src[0].sendto(_datagram(0x80, 0, 1, 40), rig.legs[0].getsockname())
        scratch = np.zeros((64, MAXLEN), np.uint8)
        fb_buf, fb_meta = np.zeros((8, MAXLEN), np.uint8), np.zeros(8, rh.FB_DTYPE)
        good = [rig.table, rig.counters, rig.logs, rig.fd_slot, scratch, fb_buf, fb_meta]

        def call(i, bad, budget=100):
            args = list(good)
            if i is not None:
                args[i] = bad
            return impl(rig.ep, *args, OFFSET_NS, NOW_NS, budget)

        with pytest.raises(TypeError):
            call(0, np.zeros(1, np.int64))  # not table rows
        with pytest.raises(TypeError):
            call(3, np.zeros(10, np.int64))  # fd_slot of int64
        with pytest.raises(TypeError):
            call(4, b"\x00" * 100)  # scratch not 2-D
        with pytest.raises(ValueError):
            call(2, np.zeros((1, 4), PACKET_DTYPE)[:, ::2])  # not contiguous
        with pytest.raises(ValueError):
            call(1, np.zeros((1, rh.NCOUNTERS + 1), np.int64))
        with pytest.raises(ValueError):
            call(None, None, budget=-1)
        rig.counters[0, rh.C_LOG_N] = 999
        with pytest.raises(ValueError):
            call(None, None)
        rig.counters[0, rh.C_LOG_N] = 0
        assert call(None, None)[0] == 1  # nothing was read by the refused calls
    finally:
        rig.close()
