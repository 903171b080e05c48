"""Cross-check against a real peer: tshark's RTP stream statistics.

Captures are written with known impairment, then both tshark and our reader +
engine analyse the same file. Where Wireshark's definitions differ from RFC
3550 (gateway/quality/wireshark.py explains them), the Wireshark-compatible
view must match tshark, and the RFC engine must show the expected difference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.quality.pcap import LINKTYPE_RAW, analyse_capture, read_frames, read_rtp, write_pcap
from gateway.quality.wireshark import tshark_compatible
from tests.quality.helpers import impaired_stream
from tests.quality.reference import RefSource
from tests.quality.tshark import lost_count, tshark_rtp_streams

pytestmark = [pytest.mark.timeout(120), pytest.mark.peer, pytest.mark.usefixtures("engine_impl")]

A = ("10.1.0.1", 40000)
B = ("10.1.0.2", 50000)
C = ("10.1.0.3", 40002)


def _by_ssrc(rows):
    return {int(r["SSRC"], 16): r for r in rows}


def _compat(path: Path):
    cap = read_rtp(path)
    origin = int(read_frames(path).ts_ns[0])
    out = {}
    for info in cap.streams:
        out[info.ssrc] = tshark_compatible(
            cap.rows[cap.stream == info.index], info.clock_rate, time_origin_ns=origin
        )
    return out


def _close(ours: float, theirs: str, rel: float = 0.01) -> bool:
    # tshark prints 3 decimals: allow that rounding on top of the relative tolerance
    return abs(ours - float(theirs)) <= max(rel * abs(float(theirs)), 0.0006)


def test_loss_and_jitter_match_tshark(tmp_path):
    path = tmp_path / "loss.pcap"
    pk = impaired_stream(n=1500, pt=0, ssrc=0x1111, src=A, dst=B, seed=1, loss=0.03, jitter_ns=8_000_000)
    pk += impaired_stream(
        n=1200,
        pt=8,
        ssrc=0x2222,
        src=C,
        dst=B,
        seed=2,
        loss=0.1,
        jitter_ns=3_000_000,
        first_seq=65500,
    )
    pk.sort(key=lambda x: x[0])
    write_pcap(path, pk)
    theirs = _by_ssrc(tshark_rtp_streams(path))
    ours = {info.ssrc: s for info, s in analyse_capture(path)}
    compat = _compat(path)
    assert set(theirs) == set(ours) == {0x1111, 0x2222}
    for ssrc, row in theirs.items():
        s = ours[ssrc]
        assert int(row["Pkts"]) == s.packets
        assert lost_count(row) == s.lost  # clean in-order loss: RFC A.3 == Wireshark
        assert s.lost > 0
        assert _close(s.max_jitter_ms, row["Max Jitter(ms)"])
        assert _close(s.mean_jitter_ms, row["Mean Jitter(ms)"])
        assert _close(s.max_delta_ms, row["Max Delta(ms)"], rel=0.0)
        w = compat[ssrc]
        assert w.lost == lost_count(row)
        for ours_v, col in (
            (w.max_jitter_ms, "Max Jitter(ms)"), (w.mean_jitter_ms, "Mean Jitter(ms)"),
            (w.min_jitter_ms, "Min Jitter(ms)"), (w.max_delta_ms, "Max Delta(ms)"),
            (w.mean_delta_ms, "Mean Delta(ms)"),
        ):  # fmt: skip
            assert _close(ours_v, row[col], rel=0.0), (col, ours_v, row[col])


def test_reordering_matches_tshark(tmp_path):
    path = tmp_path / "reorder.pcap"
    pk = impaired_stream(n=1000, pt=8, ssrc=0x3333, src=A, dst=B, seed=3, swaps=25, jitter_ns=4_000_000)
    write_pcap(path, pk, linktype=LINKTYPE_RAW)
    (row,) = tshark_rtp_streams(path)
    ((_info, s),) = analyse_capture(path)
    w = _compat(path)[0x3333]
    assert row["Problems?"] == "X"  # Wireshark flags the wrong sequence
    # RFC 3550: late packets are counted, so no loss; 25 reorders seen
    assert s.lost == lost_count(row) == w.lost == 0
    assert (s.reordered, s.duplicates) == (25, 0)
    for ours in (s, w):
        assert _close(ours.max_jitter_ms, row["Max Jitter(ms)"])
        assert _close(ours.mean_jitter_ms, row["Mean Jitter(ms)"])
        assert _close(ours.max_delta_ms, row["Max Delta(ms)"], rel=0.0)


def test_packets_before_the_first_timestamp_differ_as_documented(tmp_path):
    """The first two packets swapped: Wireshark starts the stream at the second seq
    (loss -1) and leaves the early packet out of its jitter; RFC 3550 keeps the
    stream on probation until two sequential packets, and runs J over all."""
    path = tmp_path / "early.pcap"
    pk = impaired_stream(n=400, pt=0, ssrc=0x3434, src=A, dst=B, seed=6, jitter_ns=6_000_000)
    (t_a, s_a, d_a, p_a), (t_b, s_b, d_b, p_b) = pk[0], pk[1]
    pk[0], pk[1] = (t_a, s_a, d_a, p_b), (t_b, s_b, d_b, p_a)
    write_pcap(path, pk)
    (row,) = tshark_rtp_streams(path)
    ((_info, s),) = analyse_capture(path)
    w = _compat(path)[0x3434]
    # the Wireshark view reproduces tshark figure by figure
    assert w.lost == lost_count(row) == -1
    for ours_v, col in (
        (w.max_jitter_ms, "Max Jitter(ms)"), (w.mean_jitter_ms, "Mean Jitter(ms)"),
        (w.min_jitter_ms, "Min Jitter(ms)"), (w.max_delta_ms, "Max Delta(ms)"),
        (w.mean_delta_ms, "Mean Delta(ms)"),
    ):  # fmt: skip
        assert _close(ours_v, row[col], rel=0.0), (col, ours_v, row[col])
    # the RFC engine equals the literal RFC port, and differs from Wireshark
    ref = RefSource(8000)
    for r in read_rtp(path).rows:
        ref.packet(int(r["arrival_ns"]), int(r["seq"]), int(r["ts"]))
    assert (s.lost, s.expected) == (ref.lost, ref.expected) == (0, 400 - 3)
    assert s.mean_jitter_ms == pytest.approx(ref.jit_sum / ref.jit_n / 8, rel=1e-9)
    assert abs(s.mean_jitter_ms - w.mean_jitter_ms) > 0.01


def test_duplicates_give_negative_loss_in_both(tmp_path):
    path = tmp_path / "dup.pcap"
    pk = impaired_stream(n=800, pt=0, ssrc=0x4444, src=A, dst=B, seed=4, dups=7, jitter_ns=2_000_000)
    write_pcap(path, pk)
    (row,) = tshark_rtp_streams(path)
    ((_info, s),) = analyse_capture(path)
    assert lost_count(row) == s.lost == -7
    assert s.duplicates == 7


def test_dynamic_payload_type_learned_from_sdp(tmp_path):
    path = tmp_path / "opus.pcap"
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 10.1.0.2\r\ns=-\r\nc=IN IP4 10.1.0.2\r\nt=0 0\r\n"
        "m=audio 50000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    invite = (
        "INVITE sip:room@10.1.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bK1\r\n"
        "From: <sip:a@10.1.0.1>;tag=1\r\nTo: <sip:room@10.1.0.2>\r\nCall-ID: x1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:a@10.1.0.1>\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()
    pk = impaired_stream(
        n=600, pt=111, ssrc=0x5555, src=A, dst=B, seed=5, ticks=960, jitter_ns=5_000_000, loss=0.02
    )
    pk.insert(0, (pk[0][0] - 50_000_000, ("10.1.0.1", 5060), ("10.1.0.2", 5060), invite))
    write_pcap(path, pk)
    ((info, s),) = analyse_capture(path)
    assert (info.clock_rate, info.encoding, info.clock_source) == (48000, "OPUS", "sdp")
    (row,) = tshark_rtp_streams(path)
    assert lost_count(row) == s.lost > 0
    assert _close(s.max_jitter_ms, row["Max Jitter(ms)"])
    assert _close(s.mean_jitter_ms, row["Mean Jitter(ms)"])
