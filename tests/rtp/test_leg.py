"""RtpLeg over real loopback sockets: latching, keep-alive, RTCP, DTMF, timeout, SRTP, ports."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from pylibsrtp import Policy, Session

from gateway.rtp.packets import (
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpHeader,
    TelephoneEvent,
    ntp_now,
    parse_rtcp,
)
from gateway.rtp.plane import MediaPlane, PortsExhausted
from gateway.rtp.ports import PortRange
from gateway.rtp.types import MediaKind, Pool, SrtpParams
from tests.rtp.helpers import Device, port_range

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def plane():
    p = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1", media_timeout_s=30.0)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def device():
    d = Device()
    try:
        yield d
    finally:
        d.close()


async def test_keepalive_then_latch_to_real_source(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    assert leg.local_rtp_port % 2 == 0 and leg.local_rtcp_port == leg.local_rtp_port + 1
    # the SDP says "somewhere else": the device is behind NAT and really sends from `device`
    nat = Device()
    try:
        leg.configure(device.config())
        ka = RtpHeader.parse(await device.recv())  # early keep-alive toward the SDP address
        assert ka.payload_type == 0
        nat.send(nat.packet(b"\xff" * 160), leg.local_rtp_port)
        await asyncio.sleep(0.05)
        leg.send_audio(pt=0, payload=b"\x7f" * 160, ts_offset=160)
        got = RtpHeader.parse(await nat.recv())
        assert got.seq == (ka.seq + 1) & 0xFFFF and got.ssrc == ka.ssrc
        assert leg.session.latched_rtp == nat.rtp_addr
    finally:
        nat.close()


async def test_stray_source_dropped_after_window(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.session.latch_window_s = 0.0
    leg.configure(device.config())
    got = []
    leg.media_sink = lambda _leg, data, _t: got.append(data)
    device.send(device.packet(b"\xff" * 160), leg.local_rtp_port)
    intruder = Device()
    try:
        for _ in range(5):
            intruder.send(intruder.packet(b"\x00" * 160), leg.local_rtp_port)
        device.send(device.packet(b"\xff" * 160), leg.local_rtp_port)
        await _until(lambda: len(got) == 2)
        await asyncio.sleep(0.05)
        assert len(got) == 2
        assert leg.stats().stray_dropped == 5
        assert plane.counters().stray_dropped == 5
    finally:
        intruder.close()


async def test_unnegotiated_payload_type_does_not_latch(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config())
    await device.recv()  # keep-alive
    other = Device()
    try:
        other.send(other.packet(b"x" * 20, pt=96), leg.local_rtp_port)
        await _until(lambda: leg.session.stray_dropped == 1)
        assert leg.session.latched_rtp is None
    finally:
        other.close()


async def test_dtmf_with_retransmitted_ends_and_no_marker(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config())
    digits: list[str] = []
    leg.on_dtmf = lambda d, suspect: digits.append(d)
    media = []
    leg.media_sink = lambda *_a: media.append(1)
    for event, ts in ((1, 8000), (11, 16000), (9, 24000)):
        for dur, end in ((160, False), (320, False), (480, True), (480, True), (480, True)):
            device.ts = ts
            device.send(
                device.packet(
                    bytes(TelephoneEvent(event=event, end=end, volume=10, duration=dur)),
                    pt=101,
                    step=0,
                ),
                leg.local_rtp_port,
            )
    await _until(lambda: len(digits) == 3)
    await asyncio.sleep(0.05)
    assert digits == ["1", "#", "9"] and not media


async def test_rtcp_sr_rr_round_trip_measures_rtt_both_ways(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config())
    await device.recv()  # keep-alive
    for _ in range(10):
        device.send(device.packet(b"\xff" * 160), leg.local_rtp_port)
    # the device sends an SR; our next report must carry LSR/DLSR for it
    sr_ntp = ntp_now(plane.ntp_offset_s + asyncio.get_running_loop().time())
    sr = RtcpSrPacket(
        ssrc=device.ssrc,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=sr_ntp, rtp_timestamp=1, packet_count=10, octet_count=1600
        ),
    )
    await asyncio.sleep(0.05)
    device.rtcp.sendto(bytes(sr), ("127.0.0.1", leg.local_rtcp_port))
    await _until(lambda: leg.session.rtcp_rx_packets == 1)
    leg.session._next_report = 0.0
    leg._reschedule()
    leg._on_timer()
    ours = parse_rtcp(await device.recv(device.rtcp))
    head = ours[0]
    assert isinstance(head, RtcpSrPacket)  # we sent RTP (the keep-alive) since the last report
    block = head.reports[0]
    assert block.ssrc == device.ssrc and block.lsr == (sr_ntp >> 16) & 0xFFFFFFFF
    assert block.packets_lost == 0 and block.highest_sequence == device.seq - 1
    # the device answers with an RR about our SSRC -> gateway->device RTT
    lsr = (head.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
    rr = RtcpRrPacket(
        ssrc=device.ssrc,
        reports=[
            type(block)(
                ssrc=head.ssrc,
                fraction_lost=0,
                packets_lost=2,
                highest_sequence=5,
                jitter=40,
                lsr=lsr,
                dlsr=0,
            )
        ],
    )
    device.rtcp.sendto(bytes(rr), ("127.0.0.1", leg.local_rtcp_port))
    await _until(lambda: leg.session.remote is not None)
    st = leg.stats()
    assert st.vc2cust.packets_lost == 2 and st.vc2cust.jitter_us == 5000
    assert st.rtt_us is not None and 0 <= st.rtt_us < 500_000
    assert st.cust2vc.rtp_packets == 10 and st.cust2vc.packets_lost == 0
    assert st.mos is not None and 1.0 <= st.mos <= 4.5


async def test_malformed_rtcp_is_counted_not_fatal(plane, device):
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config())
    for junk in (b"", b"\x80", b"\x80\xc8\x00\x10" + b"\x00" * 8, os.urandom(64)):
        device.rtcp.sendto(junk or b"\x00", ("127.0.0.1", leg.local_rtcp_port))
    await _until(lambda: leg.session.malformed_dropped >= 3)
    assert leg.session.rtcp_rx_packets == 0


async def test_media_timeout_audio_only(device):
    p = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1", media_timeout_s=0.2)
    await p.start()
    try:
        audio = p.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
        video = p.open_leg("c1", MediaKind.VIDEO, Pool.SIP)
        fired: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        audio.on_timeout = fired.set_result
        video.on_timeout = lambda r: pytest.fail("video must never time out")
        audio.configure(device.config())
        video.configure(device.config(kind=MediaKind.VIDEO))
        assert await asyncio.wait_for(fired, 3) == "no audio RTP for 0.2 s"
        await asyncio.sleep(0.3)
    finally:
        await p.close()


async def test_port_exhaustion_refuses_and_counts(device):
    rng = port_range(2)
    p = MediaPlane(rng, PortRange(low=rng.high + 1, high=rng.high + 2), "127.0.0.1", "127.0.0.1")
    await p.start()
    try:
        legs = []
        with pytest.raises(PortsExhausted):
            for _ in range(3):
                legs.append(p.open_leg("c", MediaKind.AUDIO, Pool.SIP))
        assert len(legs) <= 2 and p.counters().exhausted >= 1
        legs[0].close()  # quarantined, so still exhausted
        with pytest.raises(PortsExhausted):
            p.open_leg("c", MediaKind.AUDIO, Pool.SIP)
    finally:
        await p.close()


def _key() -> SrtpParams:
    return SrtpParams(
        suite="AES_CM_128_HMAC_SHA1_80", key_b64=base64.b64encode(os.urandom(30)).decode()
    )


async def test_srtp_leg_both_ends(plane, device):
    ours, theirs = _key(), _key()
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config(srtp_tx=ours, srtp_rx=theirs))
    dev_tx = Session(
        Policy(key=base64.b64decode(theirs.key_b64), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    )
    dev_rx = Session(Policy(key=base64.b64decode(ours.key_b64), ssrc_type=Policy.SSRC_ANY_INBOUND))
    ka = RtpHeader.parse(dev_rx.unprotect(await device.recv()))
    assert ka.payload_type == 0
    got = []
    leg.media_sink = lambda _l, data, _t: got.append(data)
    device.send(dev_tx.protect(device.packet(b"\x55" * 160)), leg.local_rtp_port)
    device.send(device.packet(b"\x55" * 160), leg.local_rtp_port)  # plaintext: must fail auth
    await _until(lambda: len(got) == 1 and leg.srtp_failures == 1)
    assert got[0][12:] == b"\x55" * 160
    leg.send_audio(pt=0, payload=b"\x33" * 160, ts_offset=160)
    pkt = dev_rx.unprotect(await device.recv())
    assert pkt[12:] == b"\x33" * 160


async def _until(cond, timeout: float = 3.0) -> None:
    async def wait() -> None:
        while not cond():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


async def test_srtp_with_rtcp_mux(plane, device):
    ours, theirs = _key(), _key()
    leg = plane.open_leg("c1", MediaKind.AUDIO, Pool.SIP)
    leg.configure(device.config(srtp_tx=ours, srtp_rx=theirs, rtcp_mux=True))
    dev_tx = Session(
        Policy(key=base64.b64decode(theirs.key_b64), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    )
    dev_rx = Session(Policy(key=base64.b64decode(ours.key_b64), ssrc_type=Policy.SSRC_ANY_INBOUND))
    dev_rx.unprotect(await device.recv())  # keep-alive, authenticated
    sr = RtcpSrPacket(
        ssrc=device.ssrc,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp_now(1e9), rtp_timestamp=1, packet_count=1, octet_count=160
        ),
    )
    device.send(dev_tx.protect(device.packet(b"\x55" * 160)), leg.local_rtp_port)
    device.send(dev_tx.protect_rtcp(bytes(sr)), leg.local_rtp_port)  # SRTCP on the RTP port
    await _until(lambda: leg.session.rtcp_rx_packets == 1)
    leg.session._next_report = 0.0
    leg._on_timer()
    report = parse_rtcp(dev_rx.unprotect_rtcp(await device.recv()))  # back on the RTP port
    assert report[0].reports[0].ssrc == device.ssrc
    assert leg.srtp_failures == 0


async def test_a_closed_leg_is_freed_without_the_cycle_collector(plane, device):
    """Media flowed, stats were read, the leg closed: once the plane lets go, reference
    counting alone frees it (no cycle left for a collector pass to sweep under load), and its
    last packets still reached the quality figures read after close."""
    import gc
    import weakref

    leg = plane.open_leg("c-free", MediaKind.AUDIO, Pool.SIP)
    leg.on_dtmf = lambda digit, suspect: None
    leg.configure(device.config())
    for _ in range(20):
        device.send(device.packet(b"\xff" * 160), leg.local_rtp_port)
    for _ in range(100):
        if leg.session.rx_packets + len(leg.session.log) >= 20:
            break
        await asyncio.sleep(0.01)
    gc.disable()
    try:
        leg.close()
        assert leg.stats().cust2vc.rtp_packets == 20  # final figures, read after close
        ref = weakref.ref(leg)
        del leg
        await asyncio.sleep(0)  # let the loop drop what it held for the closed sockets
        assert ref() is None
    finally:
        gc.enable()
