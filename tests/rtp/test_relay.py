"""Two-party relay over loopback, with the recvmmsg batch path and the recvfrom fallback."""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.rtp import udpbatch
from gateway.rtp.packets import RtpHeader
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from tests.rtp.helpers import Device, port_range

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("batch", [True, False, "python"])
async def test_relay_forwards_both_ways_and_drops_strays(batch, monkeypatch):
    if batch is True and not udpbatch.HAVE_NATIVE:
        if os.environ.get("VTCGW_ALLOW_NO_NATIVE"):
            pytest.skip("gateway._udpbatch is not built and VTCGW_ALLOW_NO_NATIVE is set")
        pytest.fail("gateway._udpbatch is not built: run the native build (make)")
    if batch == "python":  # the batch path on the pure-Python twins (no compiler)
        py = udpbatch.IMPLEMENTATIONS["python"]
        for name in ("recv_batch", "send_batch", "relay_batch"):
            monkeypatch.setattr(udpbatch, name, getattr(py, name))
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1", use_batch=bool(batch))
    await plane.start()
    a, b, intruder = Device(), Device(), Device()
    try:
        la = plane.open_leg("a", MediaKind.AUDIO, Pool.SIP)
        lb = plane.open_leg("b", MediaKind.AUDIO, Pool.SIP)
        for leg in (la, lb):
            leg.session.latch_window_s = 0.0
        la.configure(a.config())
        lb.configure(b.config())
        await a.recv(), await b.recv()  # keep-alives
        plane.relay(la, lb)
        digits = []
        la.on_dtmf = lambda d, suspect: digits.append(d)
        sent = [a.packet(bytes([i]) * 160) for i in range(200)]
        for i, pkt in enumerate(sent):
            a.send(pkt, la.local_rtp_port)
            if i % 50 == 0:
                intruder.send(intruder.packet(b"\x00" * 160), la.local_rtp_port)
                await asyncio.sleep(0.001)
        got = []
        while len(got) < len(sent):
            got.append(await b.recv())
        missing = [RtpHeader.parse(x).seq for x in set(sent) - set(got)]
        extra = [(RtpHeader.parse(x).seq, x[12]) for x in set(got) - set(sent)]
        assert not missing and not extra, (missing, extra)
        assert sorted(got) == sorted(sent)  # payload and header passed through unchanged
        b.send(b.packet(b"\x42" * 160), lb.local_rtp_port)
        back = RtpHeader.parse(await a.recv())
        assert back.ssrc == b.ssrc
        await asyncio.sleep(0.05)
        assert la.session.stray_dropped == 4
        if batch:
            assert la.vector_batches > 0  # the recvmmsg/sendmmsg path carried some of them
        st = la.stats()
        assert st.cust2vc.rtp_packets == 200 and st.cust2vc.packets_lost == 0
        assert lb.stats().vc2cust.rtp_packets == 201  # keep-alive + 200 forwarded
        from gateway.rtp.packets import TelephoneEvent

        a.send(
            a.packet(bytes(TelephoneEvent(event=4, end=True, volume=5, duration=400)), pt=101),
            la.local_rtp_port,
        )
        await asyncio.wait_for(_until(lambda: digits == ["4"]), 3)
    finally:
        await plane.close()
        for d in (a, b, intruder):
            d.close()


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.005)
