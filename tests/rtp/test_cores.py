"""Pure cores: wire formats, RTCP robustness, DTMF, jitter buffer, reception figures, latching."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.quality.records import PacketLog
from gateway.rtp.dtmf import DtmfReceiver
from gateway.rtp.jitter import JitterBuffer, Pull
from gateway.rtp.packets import (
    MalformedPacket,
    RtcpApp,
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpHeader,
    TelephoneEvent,
    build_rtp,
    fir_packet,
    ntp_middle,
    parse_rtcp,
    pli_packet,
)
from gateway.rtp.reception import ReceptionState
from gateway.rtp.session import Channel, DigitReceived, MediaTimedOut, RtpSession, Verdict
from gateway.rtp.speaker import SpeakerDetector
from gateway.rtp.types import Codec, Direction, LegConfig, MediaKind

PCMU = Codec(payload_type=0, name="PCMU", clock_rate=8000)


# ----- RTP / RTCP wire formats ---------------------------------------------------------
@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
)
def test_rtp_header_round_trip(pt, seq, ts, ssrc, payload, marker):
    data = build_rtp(pt=pt, seq=seq, ts=ts, ssrc=ssrc, payload=payload, marker=marker)
    h = RtpHeader.parse(data)
    assert (h.payload_type, h.seq, h.timestamp, h.ssrc, h.marker) == (pt, seq, ts, ssrc, marker)
    assert h.payload(data) == payload


@given(st.binary(max_size=80))
def test_rtp_parse_rejects_or_accepts_cleanly(data):
    try:
        h = RtpHeader.parse(data)
    except MalformedPacket:
        return
    assert 12 <= h.payload_offset <= h.payload_end <= len(data)


def _compound() -> bytes:
    sr = RtcpSrPacket(
        ssrc=1,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=5 << 32, rtp_timestamp=2, packet_count=3, octet_count=4
        ),
        reports=[
            RtcpReceiverInfo(
                ssrc=9,
                fraction_lost=1,
                packets_lost=-2,
                highest_sequence=7,
                jitter=8,
                lsr=0,
                dlsr=0,
            )
        ],
    )
    app = RtcpApp(subtype=1, ssrc=1, name=b"TEST", data=b"abcd")
    return (
        bytes(sr)
        + bytes(RtcpByePacket(sources=[1]))
        + bytes(app)
        + fir_packet(1, 9, 3)
        + pli_packet(1, 9)
    )


def test_compound_rtcp_parses_every_type():
    kinds = [type(p).__name__ for p in parse_rtcp(_compound())]
    assert kinds[:4] == ["RtcpSrPacket", "RtcpByePacket", "RtcpPsfbPacket", "RtcpPsfbPacket"]
    assert "RtcpApp" in kinds
    sr = parse_rtcp(_compound())[0]
    assert sr.reports[0].packets_lost == -2


@settings(max_examples=300)
@given(st.data())
def test_rtcp_mutations_never_escape_as_other_errors(data):
    raw = bytearray(_compound())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_rtcp(bytes(raw[:cut]))
    except MalformedPacket:
        pass


@given(st.binary(max_size=120))
def test_rtcp_random_bytes(data):
    try:
        parse_rtcp(data)
    except MalformedPacket:
        pass


def test_rtt_vector_from_rfc_arithmetic():
    # A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> RTT 0x0006:2000 (6.125 s)
    a, lsr, dlsr = 0xB7108000, 0xB7052000, 0x00054000
    assert (a - lsr - dlsr) & 0xFFFFFFFF == 0x00062000
    assert ntp_middle(0x0000B710_80000000) == a


# ----- DTMF ----------------------------------------------------------------------------
def _ev(event: int, end: bool, dur: int) -> bytes:
    return bytes(TelephoneEvent(event=event, end=end, volume=10, duration=dur))


def test_dtmf_lost_end_packets_reported_on_next_event_or_timer():
    d = DtmfReceiver(stale_s=0.5)
    d.receive(_ev(7, False, 160), 1000, 0.0)
    d.receive(_ev(7, False, 320), 1000, 0.02)
    d.receive(_ev(3, False, 160), 5000, 0.5)  # 7's end packets were all lost
    assert d.digits() == ["7"]
    d.handle_timer(0.9)
    assert d.digits() == []
    d.handle_timer(1.01)
    assert d.digits() == ["3"]
    d.receive(_ev(3, True, 800), 5000, 1.1)  # a late end packet never doubles the digit
    assert d.digits() == []


@given(st.lists(st.tuples(st.integers(0, 15), st.integers(1, 4)), max_size=12))
def test_dtmf_each_event_once_whatever_the_retransmissions(events):
    d = DtmfReceiver()
    ts = 0
    for i, (ev, repeats) in enumerate(events):
        ts += 8000
        d.receive(_ev(ev, False, 160), ts, i)
        for _ in range(repeats):
            d.receive(_ev(ev, True, 480), ts, i + 0.1)
    assert d.digits() == [TelephoneEvent.KEYS[e] for e, _ in events]


# ----- jitter buffer -------------------------------------------------------------------
@given(st.permutations(list(range(20))), st.integers(0, 0xFFFF))
def test_jitter_buffer_reorders_within_depth(order, base):
    jb = JitterBuffer(min_depth=20, max_depth=20, capacity=50)
    for i in order:
        jb.put((base + i) & 0xFFFF, i * 160, bytes([i]), 0.0)
    out = [jb.pull() for _ in range(20)]
    assert [p for k, p in out] == [bytes([i]) for i in range(20)]


def test_jitter_buffer_loss_duplicate_late_and_bound():
    jb = JitterBuffer(min_depth=2, max_depth=4, capacity=8)
    assert jb.pull()[0] is Pull.EMPTY
    for s in (10, 11, 13):
        jb.put(s, s * 160, b"x", 0.0)
    jb.put(11, 11 * 160, b"x", 0.0)
    assert jb.duplicates == 1
    kinds = [jb.pull()[0] for _ in range(4)]
    assert kinds == [Pull.PACKET, Pull.PACKET, Pull.LOST, Pull.PACKET]
    jb.put(10, 1600, b"x", 0.0)
    assert jb.late == 1
    for s in range(14, 40):
        jb.put(s, s * 160, b"y", 0.0)
    assert len(jb) <= 8


# ----- reception figures vs a scalar RFC 3550 oracle -------------------------------------
def _oracle(rows):
    jitter = 0.0
    transit_prev = None
    for r in rows:
        transit = r[0] * 8000 / 1e9 - r[2]
        if transit_prev is not None:
            jitter += (abs(transit - transit_prev) - jitter) / 16
        transit_prev = transit
    return jitter


@given(
    st.lists(st.integers(-30, 30), min_size=5, max_size=60),
    st.integers(0, 0xFFFF),
    st.integers(1, 3),
)
def test_reception_matches_scalar_oracle_across_batches(jitter_ms, base, batches):
    log = PacketLog(4)
    rows = []
    for i, j in enumerate(jitter_ms):
        arrival = int((i * 0.02 + 1 + j / 1000) * 1e9)
        rows.append((arrival, (base + i) & 0xFFFF, (i * 160) & 0xFFFFFFFF))
    state = ReceptionState(8000)
    chunks = np.array_split(np.arange(len(rows)), batches)
    for chunk in chunks:
        for i in chunk:
            a, s, t = rows[i]
            log.append(a, s, t, 42, 0, False, 172)
        state.consume(log.take(), frozenset({0}))
    snap = state.snapshot()
    assert snap.expected == len(rows) and snap.lost == 0
    assert snap.jitter_ts == pytest.approx(_oracle(rows), rel=1e-9, abs=1e-9)
    blk = state.report_block(lsr=0, dlsr=0)
    assert blk.highest_sequence == base + len(rows) - 1


def test_reception_counts_loss_and_fraction():
    log = PacketLog()
    for i in list(range(50)) + list(range(60, 100)):
        log.append(i * 20_000_000, (65500 + i) & 0xFFFF, i * 160, 7, 0, False, 172)
    st_ = ReceptionState(8000)
    st_.consume(log.take(), frozenset({0}))
    blk = st_.report_block(lsr=0, dlsr=0)
    assert blk.packets_lost == 10 and blk.fraction_lost == (10 << 8) // 100
    assert blk.highest_sequence == 65500 + 99  # crossed the 16-bit wrap: cycles counted


# ----- session latching rules (no sockets) ---------------------------------------------
def _session(window: float = 2.0) -> RtpSession:
    s = RtpSession(
        kind=MediaKind.AUDIO,
        cname="t",
        ssrc=5,
        latch_window_s=window,
        media_timeout_s=10.0,
        rng=random.Random(1),
    )
    s.configure(
        LegConfig(
            kind=MediaKind.AUDIO,
            remote_rtp=("10.0.0.1", 4000),
            remote_rtcp=None,
            codecs=(PCMU,),
            telephone_event_pt=101,
        ),
        0.0,
    )
    return s


def _rtp(pt=0, seq=1):
    return build_rtp(pt=pt, seq=seq, ts=seq * 160, ssrc=77, payload=b"\xff" * 160)


def test_latching_window_and_injection():
    s = _session()
    nat = ("203.0.113.5", 31000)
    assert s.receive_rtp(_rtp(pt=96), ("198.51.100.1", 9), 0.1, 0) is Verdict.STRAY
    assert s.receive_rtp(_rtp(), nat, 0.2, 0) is Verdict.MEDIA
    assert s.rtp_dest == nat and s.rtcp_dest == ("10.0.0.1", 4001)
    assert s.receive_rtp(_rtp(seq=2), ("198.51.100.1", 9), 3.0, 0) is Verdict.STRAY
    assert s.rtp_dest == nat and s.stray_dropped == 2
    # a re-INVITE with a new address reopens the window
    s.configure(
        LegConfig(
            kind=MediaKind.AUDIO,
            remote_rtp=("10.0.0.2", 5000),
            remote_rtcp=None,
            codecs=(PCMU,),
            telephone_event_pt=101,
        ),
        4.0,
    )
    assert s.receive_rtp(_rtp(seq=3), ("10.0.0.2", 5000), 4.1, 0) is Verdict.MEDIA


def test_configure_is_idempotent_and_hold_suppresses_timeout():
    s = _session()
    cfg = s.cfg
    s.receive_rtp(_rtp(), ("10.0.0.1", 4000), 0.1, 0)
    s.configure(cfg, 1.0)
    assert s.latched_rtp == ("10.0.0.1", 4000)  # same SDP again: latch kept (Poly re-INVITE)
    held = LegConfig(
        kind=MediaKind.AUDIO,
        remote_rtp=("10.0.0.1", 4000),
        remote_rtcp=None,
        codecs=(PCMU,),
        direction=Direction.SENDONLY,
    )
    s.configure(held, 2.0)
    s.handle_timer(50.0)
    assert not [e for e in s.events() if isinstance(e, MediaTimedOut)]
    s.send_rtp(pt=0, payload=b"x", ts_offset=0, marker=False, now=50.0)
    assert [c for c, _, _ in s.datagrams_to_send()].count(Channel.RTP) == 1


def test_timeout_and_dtmf_events():
    s = _session()
    s.receive_rtp(
        build_rtp(pt=101, seq=5, ts=800, ssrc=77, payload=_ev(5, True, 400)),
        ("10.0.0.1", 4000),
        0.5,
        0,
    )
    assert s.events() == [DigitReceived(digit="5")]
    s.handle_timer(10.4)
    assert s.events() == []
    s.handle_timer(10.6)
    assert s.events() == [MediaTimedOut(reason="no audio RTP for 10 s")]


# ----- speaker detection ---------------------------------------------------------------
def test_speaker_needs_margin_hold_and_dwell():
    d = SpeakerDetector(hold_s=0.2, dwell_s=0.5)
    t = 0.0
    for _ in range(20):
        t += 0.02
        d.update({"a": 1e6, "b": 1e4}, t)
    assert d.current == "a"
    changed_at = None
    for _ in range(100):
        t += 0.02
        if d.update({"a": 1e4, "b": 1e6}, t):
            changed_at = t
            break
    assert d.current == "b" and d.previous == "a" and changed_at is not None
    assert changed_at >= 0.5  # dwell respected
    # equal levels never flap
    for _ in range(100):
        t += 0.02
        assert not d.update({"a": 1e6, "b": 1e6}, t)


def test_latch_does_not_flap_between_two_live_sources():
    s = _session(window=5.0)
    first, second = ("203.0.113.5", 31000), ("203.0.113.9", 32000)
    assert s.receive_rtp(_rtp(seq=1), first, 0.10, 0) is Verdict.MEDIA
    assert s.receive_rtp(_rtp(seq=2), second, 0.12, 0) is Verdict.STRAY  # first still live
    assert s.rtp_dest == first
    # the SDP address itself may always take over inside the window
    assert s.receive_rtp(_rtp(seq=3), ("10.0.0.1", 4000), 0.14, 0) is Verdict.MEDIA
    # a NAT rebinding (old source silent) inside the window is followed
    assert s.receive_rtp(_rtp(seq=4), second, 1.0, 0) is Verdict.MEDIA
    assert s.rtp_dest == second


def test_rtcp_mux_routes_reports_to_rtp_port():
    s = RtpSession(kind=MediaKind.AUDIO, cname="t", ssrc=5, rng=random.Random(2))
    s.configure(
        LegConfig(
            kind=MediaKind.AUDIO,
            remote_rtp=("10.0.0.1", 4000),
            remote_rtcp=None,
            codecs=(PCMU,),
            rtcp_mux=True,
        ),
        0.0,
    )
    s.receive_rtp(_rtp(), ("192.0.2.7", 5555), 0.1, 0)
    s.handle_timer(100.0)
    rtcp = [(c, a) for c, _, a in s.datagrams_to_send() if c is Channel.RTCP]
    assert rtcp and rtcp[-1][1] == ("192.0.2.7", 5555)


# ----- mixer across codecs (no sockets) ---------------------------------------------------
def test_mixer_mixes_narrow_and_wideband_minus_self():
    from gateway.rtp.codecs import AudioCodec
    from gateway.rtp.mixer import AudioMixer
    from tests.rtp.helpers import goertzel_power, tone

    g722 = Codec(payload_type=9, name="G722", clock_rate=8000)
    mixer = AudioMixer()
    mixer.add("n", PCMU)
    mixer.add("w", g722)
    assert mixer.rate == 16000
    enc = {"n": AudioCodec(PCMU), "w": AudioCodec(g722)}
    dec = {"n": AudioCodec(PCMU), "w": AudioCodec(g722)}
    heard = {"n": [], "w": []}
    for k in range(40):
        mixer.receive("n", k, k * 160, enc["n"].encode(tone(500, 160, 8000, 160 * k)), k * 0.02)
        mixer.receive("w", k, k * 160, enc["w"].encode(tone(3000, 320, 16000, 320 * k)), k * 0.02)
        for f in mixer.tick(k * 0.02).frames:
            heard[f.pid].append(dec[f.pid].decode(f.payload))
    n_pcm = np.concatenate(heard["n"][-20:])
    w_pcm = np.concatenate(heard["w"][-20:])
    # 3 kHz fits in narrowband, so the PCMU participant hears the G.722 one, and vice versa
    assert goertzel_power(n_pcm, 3000, 8000) > 0.3 and goertzel_power(n_pcm, 500, 8000) < 0.02
    assert goertzel_power(w_pcm, 500, 16000) > 0.3 and goertzel_power(w_pcm, 3000, 16000) < 0.02


def test_old_style_hold_address_sends_nothing():
    s = _session()
    s.configure(
        LegConfig(
            kind=MediaKind.AUDIO, remote_rtp=("0.0.0.0", 4000), remote_rtcp=None, codecs=(PCMU,)
        ),
        1.0,
    )
    s.send_rtp(pt=0, payload=b"x", ts_offset=0, marker=False, now=1.0)
    s.handle_timer(100.0)
    assert s.rtp_dest is None and s.datagrams_to_send() == []


@given(st.text(min_size=1, max_size=60), st.integers(0, 0xFFFFFFFF))
def test_sdes_cname_is_aligned_and_parses(cname, ssrc):
    from gateway.rtp.packets import RtcpSdesPacket, sdes_cname

    raw = sdes_cname(ssrc, cname)
    assert len(raw) % 4 == 0
    chunk_nulls = len(raw) - 4 - 6 - len(cname.encode()[:255])
    assert 1 <= chunk_nulls <= 4
    (sdes,) = parse_rtcp(_rr() + raw)[1:]
    assert isinstance(sdes, RtcpSdesPacket) and sdes.chunks[0].ssrc == ssrc


def _rr() -> bytes:
    from gateway.rtp.packets import RtcpRrPacket

    return bytes(RtcpRrPacket(ssrc=1))


@given(st.lists(st.binary(max_size=64), max_size=30))
def test_session_survives_arbitrary_datagrams(datagrams):
    s = _session()
    for i, d in enumerate(datagrams):
        s.receive_rtp(d, ("10.0.0.1", 4000), 0.1 + i / 100, i)
        s.receive_rtcp(d, ("10.0.0.1", 4001), 0.1 + i / 100)
    s.handle_timer(50.0)
    s.fold_log()
    assert s.rx_packets + s.stray_dropped + s.malformed_dropped >= 0
    assert all(c in (Channel.RTP, Channel.RTCP) for c, _, _ in s.datagrams_to_send())


def test_play_all_reaches_everyone_but_the_lobby_and_the_tap():
    from gateway.rtp.codecs import AudioCodec
    from gateway.rtp.mixer import AudioMixer
    from tests.rtp.helpers import goertzel_power, tone

    mixer = AudioMixer()
    for pid in ("a", "b", "lobby"):
        mixer.add(pid, PCMU)
    mixer.set_lobby("lobby", True)
    h = mixer.play_all(tone(1000, 3200, 16000), 16000)
    dec = AudioCodec(PCMU)
    heard: dict[str, list[np.ndarray]] = {"a": [], "b": [], "lobby": []}
    taps = []
    for k in range(10):
        res = mixer.tick(k * 0.02)
        taps.append(res.mix)
        for f in res.frames:
            heard[f.pid].append(dec.decode(f.payload))
    assert h.done
    for pid in ("a", "b"):
        assert goertzel_power(np.concatenate(heard[pid]), 1000) > 0.5
    assert np.abs(np.concatenate(heard["lobby"]).astype(np.int32)).max() < 50
    assert goertzel_power(np.concatenate(taps), 1000) > 0.5


def test_digit_after_a_loss_run_is_marked_suspect() -> None:
    """docs/keypad.md rule 4: a whole lost keypress shows as a run of lost packets."""
    from gateway.rtp.session import DigitReceived, RtpSession
    from gateway.rtp.types import Codec, LegConfig, MediaKind

    s = RtpSession(kind=MediaKind.AUDIO, cname="t", ssrc=5)
    s.configure(LegConfig(kind=MediaKind.AUDIO, remote_rtp=("127.0.0.1", 4000), remote_rtcp=None,
                          codecs=(Codec(payload_type=0, name="PCMU", clock_rate=8000),
                                  Codec(payload_type=101, name="TELEPHONE-EVENT", clock_rate=8000)),
                          telephone_event_pt=101), 0.0)
    src = ("127.0.0.1", 4000)

    def event(seq: int, ts: int, digit: int, end: bool) -> bytes:
        return bytes([0x80, 101]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + b"\0\0\0\1" + \
            bytes([digit, 0x8A if end else 0x0A, 0, 160])

    def voice(seq: int) -> bytes:
        return bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + b"\0\0\0\1" + bytes(160)

    seq = 100
    for _ in range(3):  # '*' (event 10), end packet sent three times
        s.receive_rtp(event(seq, 1000, 10, True), src, 0.1, 0)
        seq += 1
    s.receive_rtp(voice(seq), src, 0.2, 0)
    seq += 6  # the '9' keypress (6 packets) is lost entirely
    for _ in range(3):  # '7'
        s.receive_rtp(event(seq, 9000, 7, True), src, 0.5, 0)
        seq += 1
    s.receive_rtp(voice(seq + 1), src, 0.6, 0)  # one isolated lost packet: not a keypress
    for _ in range(3):  # '4'
        s.receive_rtp(event(seq + 2, 20000, 4, True), src, 0.9, 0)
        seq += 1
    digits = [(e.digit, e.suspect) for e in s.events() if isinstance(e, DigitReceived)]
    assert digits == [("*", False), ("7", True), ("4", False)]
