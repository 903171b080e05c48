"""The load generator's RTP engine: the pure stream core with a fake clock, then real sockets."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from benchmarks.load.rtp_load import RtpLoadEngine
from benchmarks.load.rtp_streams import CallMedia, RtpStreams
from gateway.quality.records import PACKET_DTYPE
from gateway.rtp.udpbatch import BatchBuffers, get_addr, rtp_headers, set_addr
from tests.conftest import ROOT

MS = 1_000_000


def _streams(n: int, **kw) -> RtpStreams:
    s = RtpStreams(start_ns=0, seed=7, **kw)
    for i in range(n):
        s.add_call(
            CallMedia(
                call_id=f"c{i}",
                remote=("127.0.0.1", 20000 + i),
                encoding="PCMA" if i % 2 else "PCMU",
            ),
            socket_index=i % 2,
            now_ns=0,
            first_send_ns=i * MS,
        )
    return s


def test_every_call_sends_every_20_ms_with_consecutive_headers():
    s = _streams(30)
    out = BatchBuffers(64, 172)
    packets: dict[int, list[RtpPacket]] = {}
    for t in range(0, 1000 * MS, MS):
        ids = s.due(t)
        k = s.build(ids, out)
        for row, call in enumerate(ids.tolist()):
            p = RtpPacket.parse(out.payload(row))
            packets.setdefault(call, []).append(p)
            assert get_addr(out.addrs, row) == ("127.0.0.1", 20000 + call)
        assert k == len(ids)
    assert s.lateness().max_us == 0.0  # the fake clock is always on time
    for call, ps in packets.items():
        assert len(ps) == 50 - (1 if call >= 20 else 0)  # first sends at call ms, 20 ms apart
        assert {p.payload_type for p in ps} == {8 if call % 2 else 0}
        assert len({p.ssrc for p in ps}) == 1
        assert [(p.sequence_number - ps[0].sequence_number) % 65536 for p in ps] == list(
            range(len(ps))
        )
        assert [(p.timestamp - ps[0].timestamp) % 2**32 for p in ps] == [
            160 * i for i in range(len(ps))
        ]
        assert [p.marker for p in ps] == [1] + [0] * (len(ps) - 1)
        assert all(len(p.payload) == 160 for p in ps)


def test_a_late_generator_skips_ahead_and_reports_lateness():
    s = _streams(1)
    assert len(s.due(0)) == 1
    assert len(s.due(75 * MS)) == 1  # 55 ms late: one packet, not a burst of three
    assert len(s.due(80 * MS)) == 0
    assert len(s.due(95 * MS)) == 1
    assert s.lateness().max_us == pytest.approx(55_000)


def test_removed_calls_stop_sending():
    s = _streams(3)
    s.remove_call("c1")
    sent = np.concatenate([s.due(t) for t in range(0, 100 * MS, MS)])
    assert 1 not in sent.tolist() and {0, 2} <= set(sent.tolist())
    assert len(s) == 2


def _incoming(rows: list[tuple[tuple[str, int], int, bytes]]) -> BatchBuffers:
    b = BatchBuffers(len(rows), 256)
    for i, (src, seq, extra) in enumerate(rows):
        pkt = (
            extra
            or RtpPacket(
                payload_type=0,
                sequence_number=seq,
                timestamp=seq * 160,
                ssrc=99,
                payload=b"\xff" * 160,
            ).serialize()
        )
        b.buf[i, : len(pkt)] = np.frombuffer(pkt, np.uint8)
        b.lengths[i] = len(pkt)
        set_addr(b.addrs, i, src)
        b.ts_ns[i] = 1000 + i
    return b


def test_ingest_by_address_maps_rows_to_calls_and_counts_strays():
    s = _streams(4)
    b = _incoming(
        [
            (("127.0.0.1", 20000), 5, b""),
            (("127.0.0.1", 20002), 6, b""),
            (("127.0.0.1", 29999), 7, b""),
            (("127.0.0.1", 20001), 8, b""),
            (("127.0.0.1", 20000), 9, b"not rtp"),
        ]
    )
    # socket 0 carries calls 0 and 2; call 1 is on socket 1, so its source is a stray here
    assert s.ingest(b, 5, socket_index=0, now_ns=0) == 2
    rows, calls = s.take_records()
    assert rows.dtype == PACKET_DTYPE
    assert calls.tolist() == [0, 2] and rows["seq"].tolist() == [5, 6]
    assert rows["arrival_ns"].tolist() == [1000, 1001]
    assert s.stray == 3
    assert len(s.take_records()[0]) == 0


def test_ingest_by_ssrc_recognises_echoed_packets():
    s = _streams(5, match="ssrc")
    out = BatchBuffers(8, 172)
    ids = s.due(4 * MS)
    n = s.build(ids, out)
    assert s.ingest(out, n, socket_index=0, now_ns=123) == n
    _, calls = s.take_records()
    assert calls.tolist() == ids.tolist()
    h = rtp_headers(out.buf, out.lengths, n)
    assert h.valid.all()


@pytest.fixture
def echo_target():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.load.cli",
            "echo",
            "--port",
            "0",
            "--ready",
            "--seconds",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield ("127.0.0.1", int(proc.stdout.readline()))
    finally:
        proc.kill()
        proc.wait(10)


def test_engine_against_an_echo_process(echo_target):
    with RtpLoadEngine(sockets=2, match="ssrc", seed=3) as engine:
        start = time.monotonic_ns() + 20 * MS
        for i in range(40):
            engine.start_call(
                CallMedia(call_id=i, remote=echo_target), first_send_ns=start + i * MS // 2
            )
        engine.run(0.6)
        engine.settle(5.0, quiet_ms=300)  # receive the echoes still in flight
        report = engine.report()
        assert report["calls"] == 40 and report["stray_datagrams"] == 0
        assert (engine.streams.packets_sent[:40] >= 2).all()  # ~29 each on an idle machine
        assert report["packets_received"] == report["packets_sent"]
        s = engine.summary(5)
        assert s.lost == 0 and s.expected == s.received > 0
        assert s.mos is not None and s.mos.value > 4.0
        for i in range(40):
            engine.stop_call(i)
        assert len(engine.streams) == 0


async def test_engine_attached_to_an_asyncio_loop(echo_target):
    import asyncio

    loop = asyncio.get_running_loop()
    with RtpLoadEngine(sockets=1, match="ssrc", seed=4) as engine:
        for i in range(10):
            engine.start_call(CallMedia(call_id=i, remote=echo_target))
        engine.attach(loop)
        try:
            while engine.streams.sent < 60:  # event-driven: the timer sends, readers receive
                await asyncio.sleep(0.02)
            for i in range(10):
                engine.stop_call(i)  # no more sending; echoes still in flight become strays
            deadline = loop.time() + 5

            def accounted() -> int:
                engine.flush_stats()
                return sum(engine.summary(i).packets for i in range(10)) + engine.streams.stray

            while accounted() < engine.streams.sent and loop.time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            engine.detach()
        assert accounted() == engine.streams.sent
        assert sum(engine.summary(i).packets for i in range(10)) >= 50


def test_cli_rtp_against_its_own_echo(capsys):
    import json

    from benchmarks.load.cli import main

    assert main(["rtp", "--self-echo", "--calls", "6", "--seconds", "0.3", "--seed", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 6 and report["native"] in (True, False)
    assert report["packets_sent"] >= 6 and report["send_shortfall"] == 0
    assert report["packets_received"] == report["packets_sent"]  # it settles before reporting


def test_bad_port_list_is_refused_before_any_socket():
    with pytest.raises(ValueError):
        RtpLoadEngine(sockets=2, ports=[0])


@pytest.mark.parametrize(
    "argv", [["rtp", "--target", "nonsense"], ["rtp", "--calls", "-3"], ["rtp", "--sockets", "0"]]
)
def test_cli_refuses_bad_arguments_with_usage_error(argv, capsys):
    from benchmarks.load.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err
