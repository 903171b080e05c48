"""The probe reflector: the sans-I/O core (fake clock) and the adapter on real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.reflector import (
    HEADER_SIZE,
    Kind,
    ProbeBlock,
    Reflector,
    ReflectorCore,
    Verdict,
    build_probe,
    port_list,
    verify_answer,
)

KEY = "reflector-test-token"
PEER = ("192.0.2.10", 40000)
NOW_NS = 1_800_000_000 * 10**9


def request(kind: Kind = Kind.ECHO, *, seq: int = 1, ssrc: int = 0x1234, size: int = 135,
            key: str = KEY, client_ns: int = NOW_NS, auth: bytes = b"", arg: int = 0) -> bytes:
    hdr = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc)
    return build_probe(key.encode(), rtp_header=hdr, size=size, auth=auth,
                       block=ProbeBlock(kind=kind, client_ns=client_ns, clock_rate=48000, arg=arg))


def core(**kw) -> ReflectorCore:
    return ReflectorCore(token=KEY, allowed_ranges=[(20000, 20999)], **kw)


def feed(c: ReflectorCore, data: bytes, addr=PEER, now: float = 0.0, **kw):
    return c.receive_datagram(data, addr, now=now, recv_ns=NOW_NS + 5, send_ns=NOW_NS + 9, **kw)


def test_echo_answer_carries_times_and_counters_and_same_size() -> None:
    c = core()
    out = [feed(c, request(seq=i), now=i * 0.02) for i in range(3)]
    assert all(o.verdict is Verdict.ANSWERED for o in out)
    last = out[-1].answer
    assert last is not None and len(last) == 135
    blk = verify_answer(KEY.encode(), last)
    assert blk is not None and blk.kind is Kind.ECHO_REPLY
    assert (blk.reply_seq, blk.fwd_received, blk.recv_ns, blk.send_ns) == (3, 3, NOW_NS + 5, NOW_NS + 9)
    assert last[:12] == request(seq=2)[:12]  # RTP header echoed as sent


def test_stats_reports_counts_without_counting_itself() -> None:
    c = core()
    for i in range(5):
        feed(c, request(seq=i))
    ans = feed(c, request(Kind.STATS, seq=9, size=HEADER_SIZE)).answer
    blk = verify_answer(KEY.encode(), ans)
    assert blk is not None and blk.kind is Kind.STATS_REPLY
    assert (blk.fwd_received, blk.reply_seq) == (5, 5)


def test_wrong_token_stale_and_garbage_get_no_answer() -> None:
    c = core()
    assert feed(c, request(key="someone-else-token")).verdict is Verdict.BAD_TAG
    assert feed(c, request(client_ns=NOW_NS - 3600 * 10**9)).verdict is Verdict.STALE
    assert feed(c, b"\x80" * 40).verdict is Verdict.MALFORMED
    tampered = bytearray(request())
    tampered[3] ^= 1  # the RTP header is covered by the tag
    assert feed(c, bytes(tampered)).verdict is Verdict.BAD_TAG
    assert feed(c, request(Kind.ECHO_REPLY)).verdict is Verdict.MALFORMED  # answers are never answered
    assert c.counters[Verdict.ANSWERED] == 0


def test_answers_are_not_accepted_as_requests_and_requests_not_as_answers() -> None:
    assert verify_answer(KEY.encode(), request()) is None  # a request's tag is not an answer's


def test_rate_limit_per_source_and_total() -> None:
    c = core(per_source_pps=100, total_pps=150)
    got = [feed(c, request(seq=i), now=0.0).verdict for i in range(100)]
    assert got.count(Verdict.ANSWERED) == 50  # burst = rate / 2
    other = ("192.0.2.11", 40000)
    got2 = [feed(c, request(seq=i), addr=other, now=0.0).verdict for i in range(100)]
    assert got2.count(Verdict.ANSWERED) == 25  # the total bucket (75) is what is left
    # one second later both refill
    assert feed(c, request(seq=500), now=1.0).verdict is Verdict.ANSWERED


def test_open_ports_only_inside_the_allowed_range() -> None:
    c = core()
    auth = struct.pack("!3H", 20002, 5060, 20998)
    out = feed(c, request(Kind.OPEN_PORTS, size=HEADER_SIZE + 6, auth=auth, arg=60_000))
    assert out.open_ports is not None
    assert out.open_ports.ports == (20002, 20998)
    assert out.open_ports.peer_ip == PEER[0] and out.open_ports.duration_s == 10.0  # capped
    ans = out.answer
    assert ans is not None and len(ans) == HEADER_SIZE + 6
    blk = verify_answer(KEY.encode(), ans)
    assert blk is not None
    assert port_list(ans[HEADER_SIZE:HEADER_SIZE + blk.auth_len]) == [20002, 0, 20998]
    # sampled-port sockets answer only the requester and never open more ports
    assert feed(c, request(), addr=("198.51.100.1", 1), restrict_ip=PEER[0]).verdict is Verdict.NOT_ALLOWED
    assert feed(c, request(Kind.OPEN_PORTS, auth=auth), allow_open=False).verdict is Verdict.NOT_ALLOWED


def test_port_list_is_authenticated() -> None:
    c = core()
    pkt = bytearray(request(Kind.OPEN_PORTS, size=HEADER_SIZE + 2, auth=struct.pack("!H", 20002)))
    pkt[HEADER_SIZE:HEADER_SIZE + 2] = struct.pack("!H", 20004)
    assert feed(c, bytes(pkt)).verdict is Verdict.BAD_TAG


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_answered(data: bytes) -> None:
    c = core()
    out = feed(c, data)
    assert out.answer is None


@settings(max_examples=200, deadline=None)
@given(size=st.integers(HEADER_SIZE, 1500), kind=st.sampled_from([Kind.ECHO, Kind.STATS]),
       flip=st.integers(0, 1499))
def test_answer_never_larger_and_any_bit_flip_in_the_header_is_refused(size: int, kind: Kind, flip: int) -> None:
    c = core()
    pkt = request(kind, size=size)
    out = feed(c, pkt)
    assert out.answer is not None and len(out.answer) == len(pkt)
    if flip < HEADER_SIZE:
        bad = bytearray(pkt)
        bad[flip] ^= 0x01
        assert feed(c, bytes(bad)).answer is None


# ---------------------------------------------------------------------------- real sockets


async def _exchange(sock: socket.socket, data: bytes, dst: tuple, timeout: float = 2.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock.sendto(data, dst)
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)
    except TimeoutError:
        return None


async def test_reflector_on_real_sockets_echoes_and_opens_sampled_ports() -> None:
    from tests.conftest import free_port

    lo = free_port(socket.SOCK_DGRAM)
    r = Reflector(host="127.0.0.1", port=0, token=KEY, allowed_ranges=[(lo, lo)])
    port = await r.start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    try:
        ans = await _exchange(s, request(client_ns=time.time_ns()), ("127.0.0.1", port))
        assert ans is not None
        blk = verify_answer(KEY.encode(), ans)
        assert blk is not None and blk.recv_ns > 0 and blk.send_ns >= blk.recv_ns - 10**9
        assert await _exchange(s, request(key="not-the-token-at-all"), ("127.0.0.1", port), 0.3) is None
        auth = struct.pack("!H", lo)
        ans = await _exchange(s, request(Kind.OPEN_PORTS, client_ns=time.time_ns(), auth=auth, arg=2000,
                                         size=HEADER_SIZE + 2), ("127.0.0.1", port))
        assert ans is not None and port_list(ans[HEADER_SIZE:HEADER_SIZE + 2]) == [lo]
        assert r.open_ports == (lo,)
        ans2 = await _exchange(s, request(client_ns=time.time_ns(), ssrc=7), ("127.0.0.1", lo))
        assert ans2 is not None and verify_answer(KEY.encode(), ans2) is not None
    finally:
        s.close()
        await r.close()
    assert r.open_ports == ()
