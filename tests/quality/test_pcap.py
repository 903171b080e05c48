"""Capture reading (pcap, pcapng, link types), RTP discovery, SDP, the writer."""

from __future__ import annotations

import io
import struct
import subprocess

import numpy as np
import pytest

from gateway.quality.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    CaptureError,
    PcapWriter,
    build_udp_frame,
    infer_clock_rate,
    parse_sdp_rtpmaps,
    read_frames,
    read_rtp,
    udp_datagrams,
    write_pcap,
)
from tests.conftest import require_binary
from tests.quality.helpers import T0, impaired_stream, rtp_bytes

A = ("192.0.2.1", 30000)
B = ("192.0.2.2", 30002)
V6A = ("2001:db8::1", 30004)
V6B = ("2001:db8::2", 30006)


def _expect_rows(pk):
    seqs = [struct.unpack_from("!H", p, 2)[0] for _, _, _, p in pk]
    return seqs, [t // 1000 * 1000 for t, *_ in pk]


@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW])
@pytest.mark.parametrize("nano", [False, True])
def test_roundtrip_v4_and_v6(tmp_path, linktype, nano):
    pk = impaired_stream(n=50, pt=0, ssrc=7, src=A, dst=B, seed=1, jitter_ns=999_999)
    pk += impaired_stream(n=40, pt=8, ssrc=8, src=V6A, dst=V6B, seed=2, jitter_ns=3_000_000)
    pk.sort(key=lambda x: x[0])
    path = tmp_path / "rt.pcap"
    write_pcap(path, pk, linktype=linktype, nano=nano)
    cap = read_rtp(path)
    assert [(i.src, i.sport, i.dst, i.dport, i.ssrc, i.payload_type) for i in cap.streams] == [
        (A[0], A[1], B[0], B[1], 7, 0),
        (V6A[0], V6A[1], V6B[0], V6B[1], 8, 8),
    ]
    for info, ssrc in zip(cap.streams, (7, 8), strict=True):
        mine = [p for p in pk if struct.unpack_from("!I", p[3], 8)[0] == ssrc]
        got = cap.rows[cap.stream == info.index]
        seqs, times = _expect_rows(mine)
        assert got["seq"].tolist() == seqs
        want_t = [t for t, *_ in mine] if nano else times
        assert got["arrival_ns"].tolist() == want_t
        assert (got["size"] == 172).all() and (got["ssrc"] == ssrc).all()


def _record_file(linktype: int, frames: list[bytes]) -> io.BytesIO:
    f = io.BytesIO()
    w = PcapWriter(f, linktype=linktype)
    for i, fr in enumerate(frames):
        w.write_frame(T0 + i * 20_000_000, fr)
    return f


def _rtp_ip_frames(n: int) -> list[bytes]:
    return [
        build_udp_frame(A, B, rtp_bytes(pt=0, seq=i, ts=i * 160, ssrc=9, payload=bytes(20)), ethernet=False)
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["sll", "sll2", "vlan"])
def test_other_link_layers(tmp_path, kind):
    ips = _rtp_ip_frames(12)
    if kind == "sll":
        frames = [struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", 0x0800) + ip for ip in ips]
        lt = LINKTYPE_LINUX_SLL
    elif kind == "sll2":
        frames = [struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 6 + b"\0\0") + ip for ip in ips]
        lt = LINKTYPE_LINUX_SLL2
    else:
        eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
        frames = [eth + struct.pack("!HHH", 0x8100, 42, 0x0800) + ip for ip in ips]
        lt = LINKTYPE_ETHERNET
    path = tmp_path / f"{kind}.pcap"
    path.write_bytes(_record_file(lt, frames).getvalue())
    cap = read_rtp(path)
    assert len(cap.streams) == 1
    assert cap.rows["seq"].tolist() == list(range(12))


@pytest.mark.peer
def test_pcapng_via_editcap(tmp_path):
    editcap = require_binary("editcap")
    pk = impaired_stream(n=60, pt=0, ssrc=5, src=A, dst=B, seed=3, jitter_ns=2_000_000)
    src = tmp_path / "a.pcap"
    dst = tmp_path / "a.pcapng"
    write_pcap(src, pk, nano=True)
    subprocess.run([editcap, "-F", "pcapng", str(src), str(dst)], check=True, timeout=30)
    a, b = read_rtp(src), read_rtp(dst)
    assert dst.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert np.array_equal(a.rows, b.rows)


def test_truncated_last_record_is_dropped(tmp_path):
    pk = impaired_stream(n=20, pt=0, ssrc=5, src=A, dst=B, seed=3)
    path = tmp_path / "t.pcap"
    write_pcap(path, pk)
    path.write_bytes(path.read_bytes()[:-30])
    assert len(read_frames(path).offset) == 19


def test_not_a_capture(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureError):
        read_frames(p)


def test_noise_and_rtcp_are_not_streams(tmp_path):
    rng = np.random.default_rng(9)
    pk = impaired_stream(n=30, pt=0, ssrc=5, src=A, dst=B, seed=3)
    for i in range(40):  # random UDP noise between two other hosts
        pk.append((T0 + i * 7_000_000, ("198.51.100.1", 9999), ("198.51.100.2", 9999), rng.bytes(100)))
    for i in range(10):  # RTCP receiver reports (PT 201)
        rr = struct.pack("!BBHI", 0x81, 201, 7, 5) + bytes(24)
        pk.append((T0 + i * 1_000_000_000, ("192.0.2.2", 30003), ("192.0.2.1", 30001), rr))
    pk.sort(key=lambda x: x[0])
    path = tmp_path / "n.pcap"
    write_pcap(path, pk)
    cap = read_rtp(path)
    assert [i.ssrc for i in cap.streams] == [5]
    assert len(udp_datagrams(read_frames(path)).sport) == 80


def test_clock_rate_inferred_for_dynamic_pt_without_sdp(tmp_path):
    pk = impaired_stream(n=100, pt=99, ssrc=5, src=A, dst=B, seed=3, ticks=320, jitter_ns=4_000_000)
    path = tmp_path / "d.pcap"
    write_pcap(path, pk)
    (info,) = read_rtp(path).streams
    assert (info.clock_rate, info.clock_source) == (16000, "inferred")


def test_infer_clock_rate_snaps_video():
    arr = np.arange(200) * 33_366_667
    ts = (np.arange(200) * 3003) & 0xFFFFFFFF
    assert infer_clock_rate(arr, ts) == 90000
    assert infer_clock_rate(arr[:1], ts[:1]) == 0


def test_sdp_rtpmap_parsing():
    sdp = (
        "v=0\r\nc=IN IP4 203.0.113.5\r\nm=audio 4000 RTP/AVP 0 96 101\r\n"
        "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
        "m=video 4002 RTP/AVP 97\r\nc=IN IP4 203.0.113.6\r\na=rtpmap:97 H264/90000\r\n"
    )
    (a, b) = parse_sdp_rtpmaps(sdp)
    assert a == (
        "203.0.113.5",
        4000,
        {0: ("PCMU", 8000), 96: ("OPUS", 48000), 101: ("TELEPHONE-EVENT", 8000)},
    )
    assert b == ("203.0.113.6", 4002, {97: ("H264", 90000)})


def test_batch_writer_equals_single_writes(tmp_path):
    payloads = np.arange(5 * 172, dtype=np.uint8).reshape(5, 172)
    ts = T0 + np.arange(5) * 20_000_000
    one, many = io.BytesIO(), io.BytesIO()
    w1 = PcapWriter(one)
    for t, p in zip(ts.tolist(), payloads, strict=True):
        w1.write_udp(t, A, B, p.tobytes())
    PcapWriter(many).write_udp_batch(ts, A, B, payloads)
    assert one.getvalue() == many.getvalue()


def test_records_of_alternating_sizes(tmp_path):
    pk = impaired_stream(n=40, pt=0, ssrc=5, src=A, dst=B, seed=3, payload=160)
    pk2 = impaired_stream(n=40, pt=8, ssrc=6, src=B, dst=A, seed=4, payload=80, t0=T0 + 1000)
    both = sorted(pk + pk2, key=lambda x: x[0])
    path = tmp_path / "alt.pcap"
    write_pcap(path, both)
    cap = read_rtp(path)
    assert [(i.ssrc, i.packets) for i in cap.streams] == [(5, 40), (6, 40)]
    assert sorted(cap.rows["size"].tolist()) == [92] * 40 + [172] * 40


def test_corrupt_captures_raise_capture_error_or_parse(tmp_path):
    """Truncated or bit-flipped files: a CaptureError or a result, never a crash."""
    import random

    pk = impaired_stream(n=40, pt=0, ssrc=5, src=A, dst=B, seed=1)
    good = tmp_path / "g.pcap"
    write_pcap(good, pk)
    base = good.read_bytes()
    rng = random.Random(7)
    bad = tmp_path / "b.pcap"
    for _ in range(300):
        b = bytearray(base)
        if rng.random() < 0.3:
            b = b[: rng.randint(0, len(b))]
        else:
            for _ in range(rng.randint(1, 20)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        bad.write_bytes(bytes(b))
        try:
            cap = read_rtp(bad)
        except CaptureError:
            continue
        assert len(cap.rows) == len(cap.stream) == len(cap.by_stream)


def test_tiny_files(tmp_path):
    p = tmp_path / "t.pcap"
    f = io.BytesIO()
    PcapWriter(f).write_frame(T0, b"\x01\x02")  # one 2-byte frame: shorter than any header
    p.write_bytes(f.getvalue())
    assert read_rtp(p).streams == ()
    p.write_bytes(f.getvalue()[:24])  # header only
    assert len(read_rtp(p).rows) == 0
