"""The relay hub: relayed legs read on one epoll reader, over real loopback sockets.

Two synthetic devices stream 50 pps to each other through ``plane.relay``; a DTMF key press
in the middle and a stranger's packets take the Python path; figures, unrelay and close
are checked. Runs on the C hub and on its Python twin.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.rtp import relayhub
from gateway.rtp.packets import TelephoneEvent
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from tests.rtp.helpers import Device, port_range

pytestmark = pytest.mark.timeout(60)

PACKETS = 40  # each way, 20 ms apart: 0.8 s of a call


async def _until(cond, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


@pytest.fixture(params=["native", "python"])
async def setup(request, monkeypatch):
    if request.param == "native":
        if not relayhub.HAVE_NATIVE:
            if os.environ.get("VTCGW_ALLOW_NO_NATIVE"):
                pytest.skip("gateway._relayhub is not built and VTCGW_ALLOW_NO_NATIVE is set")
            pytest.fail("gateway._relayhub is not built: run the native build")
    else:
        monkeypatch.setattr(relayhub, "hub_relay", relayhub.IMPLEMENTATIONS["python"])
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    plane.use_relay_hub = True  # also on the recvfrom fallback plane (no native build)
    await plane.start()
    devs = [Device(), Device(), Device()]
    try:
        yield plane, devs
    finally:
        await plane.close()
        for d in devs:
            d.close()


async def _pair(plane: MediaPlane, a: Device, b: Device):
    la = plane.open_leg("a", MediaKind.AUDIO, Pool.SIP)
    lb = plane.open_leg("b", MediaKind.AUDIO, Pool.SIP)
    la.configure(a.config())
    lb.configure(b.config())
    await a.recv(), await b.recv()  # keep-alives
    plane.relay(la, lb)
    return la, lb


async def test_two_way_stream_through_the_hub(setup):
    plane, (a, b, stranger) = setup
    la, lb = await _pair(plane, a, b)
    hub = plane._relay_hub
    assert la in hub and lb in hub and len(hub) == 2
    assert la._batch_reader is None and lb._batch_reader is None  # the hub reads them
    digits: list[tuple[str, bool]] = []
    la.on_dtmf = lambda d, suspect: digits.append((d, suspect))
    sent_ab, sent_ba, got_ab, got_ba = [], [], [], []
    dtmf = 0

    async def collect(dev: Device, into: list, n: int) -> None:
        while len(into) < n:
            into.append(await dev.recv())

    readers = [
        asyncio.create_task(collect(b, got_ab, PACKETS)),
        asyncio.create_task(collect(a, got_ba, PACKETS)),
    ]
    for i in range(PACKETS):
        pa, pb = a.packet(bytes([i]) * 160), b.packet(bytes([255 - i]) * 160)
        sent_ab.append(pa), sent_ba.append(pb)
        a.send(pa, la.local_rtp_port)
        b.send(pb, lb.local_rtp_port)
        if i == PACKETS // 2:  # a key press: three end packets, like a phone sends
            for _ in range(3):
                ev = TelephoneEvent(event=7, end=True, volume=10, duration=800)
                a.send(a.packet(bytes(ev), pt=101, step=0), la.local_rtp_port)
                dtmf += 1
            stranger.send(stranger.packet(b"\x00" * 160), la.local_rtp_port)
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert got_ab == sent_ab and got_ba == sent_ba  # intact, in order, no DTMF forwarded
    await _until(lambda: digits)
    assert digits == [("7", False)]  # no loss run among the hub's rows: not suspect
    assert hub.accepted >= 2 * PACKETS - 4  # first packets latch on the Python path
    assert hub.fallback >= dtmf + 1 + 2
    assert hub.wakeups > 0 and hub.calls >= hub.wakeups
    await _until(lambda: la.session.stray_dropped == 1)

    sa, sb = la.stats(), lb.stats()
    size = len(sent_ab[0])
    dtmf_size = 12 + 4
    assert sa.cust2vc.rtp_packets == PACKETS + dtmf
    assert sa.cust2vc.rtp_bytes == PACKETS * size + dtmf * dtmf_size
    assert sa.cust2vc.packets_lost == 0 and sa.cust2vc.jitter_us is not None
    assert sb.cust2vc.rtp_packets == PACKETS and sb.cust2vc.rtp_bytes == PACKETS * size
    assert sb.vc2cust.rtp_packets == 1 + PACKETS  # keep-alive + forwarded
    assert sa.vc2cust.rtp_packets == 1 + PACKETS
    assert sb.vc2cust.rtp_bytes == lb.session.tx_bytes > PACKETS * size
    assert sa.mos is not None and sb.mos is not None
    assert la.vector_batches > 0 and lb.send_failures == 0 and la.send_failures == 0
    assert la.session.last_rx_at is not None

    plane.unrelay(la)
    assert len(hub) == 0 and la not in hub and la.relay_peer is None
    before = la.session.rx_packets
    a.send(a.packet(b"\x01" * 160), la.local_rtp_port)  # read by the leg's own reader again
    await _until(lambda: la.session.rx_packets == before + 1)
    b.send(b.packet(b"\x01" * 160), lb.local_rtp_port)
    await _until(lambda: lb.session.rx_packets == PACKETS + 1)

    plane.relay(la, lb)
    assert len(hub) == 2
    a.send(a.packet(b"\x02" * 160), la.local_rtp_port)
    assert (await b.recv())[12] == 2
    la.close()
    assert len(hub) == 0 and lb.relay_peer is None
    assert not hub._reading  # the hub's own reader is off the loop with no legs
    before = lb.session.rx_packets
    b.send(b.packet(b"\x03" * 160), lb.local_rtp_port)
    await _until(lambda: lb.session.rx_packets == before + 1)


async def test_new_destination_and_hold_reach_the_table(setup):
    plane, (a, b, c) = setup
    la, lb = await _pair(plane, a, b)
    hub = plane._relay_hub
    a.send(a.packet(b"\x05" * 160), la.local_rtp_port)  # latches la on the Python path
    assert (await b.recv())[12] == 5
    a.send(a.packet(b"\x06" * 160), la.local_rtp_port)  # now on the C path
    assert (await b.recv())[12] == 6
    lb.session.latch_window_s = 0.0
    lb.configure(c.config())  # re-INVITE: b's side moved to c
    await c.recv()  # keep-alive to the new address
    hub.sync_all()  # what the hub's FOLD_S timer does
    a.send(a.packet(b"\x07" * 160), la.local_rtp_port)
    assert (await c.recv())[12] == 7
    from gateway.rtp.types import Direction

    lb.configure(c.config(direction=Direction.RECVONLY))  # b holds: nothing goes to it
    hub.sync_all()
    before = la.session.rx_packets + int(hub.counters[hub._slot_of[la.id], relayhub.C_RX_PACKETS])
    a.send(a.packet(b"\x08" * 160), la.local_rtp_port)
    await _until(
        lambda: la.stats().cust2vc.rtp_packets == before + 1  # logged and counted, not sent
    )
    with pytest.raises(TimeoutError):
        await c.recv(timeout=0.1)


async def test_full_log_regions_are_folded_at_once(setup, monkeypatch):
    plane, (a, b, _c) = setup
    monkeypatch.setattr(relayhub, "LOG_ROWS", 4)  # a region fills after 4 rows
    la, lb = await _pair(plane, a, b)
    a.send(a.packet(b"\x00" * 160), la.local_rtp_port)  # latch
    await b.recv()
    sent = [a.packet(bytes([i]) * 160) for i in range(1, 31)]
    for pkt in sent:  # one burst: the hub reads them in runs of at most 4 per region
        a.send(pkt, la.local_rtp_port)
    got = [await b.recv() for _ in sent]
    assert got == sent
    st = la.stats()
    assert st.cust2vc.rtp_packets == 31 and st.cust2vc.packets_lost == 0
    assert lb.stats().vc2cust.rtp_packets == 32  # keep-alive + 31


def test_wanted_follows_the_plane_and_the_environment(monkeypatch):
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    monkeypatch.delenv("VTCGW_NO_RELAY_HUB", raising=False)
    assert relayhub.wanted(plane) == (plane.use_batch and relayhub.HAVE_NATIVE)
    monkeypatch.setenv("VTCGW_NO_RELAY_HUB", "1")
    assert not relayhub.wanted(plane)
    plane.use_relay_hub = True
    assert relayhub.wanted(plane)
