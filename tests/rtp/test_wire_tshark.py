"""tshark judges what the leg puts on the wire: RTP, SR/RR, SDES, BYE, FIR, PLI."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess

import pytest

from gateway.rtp.packets import RtcpSenderInfo, RtcpSrPacket, ntp_now
from gateway.rtp.plane import MediaPlane
from gateway.rtp.types import MediaKind, Pool
from tests.conftest import require_binary
from tests.rtp.helpers import H264, Device, port_range, write_pcap

pytestmark = [pytest.mark.timeout(60), pytest.mark.peer]


async def test_tshark_decodes_our_rtp_and_rtcp_without_errors(tmp_path):
    tshark = require_binary("tshark")
    plane = MediaPlane(port_range(), port_range(), "127.0.0.1", "127.0.0.1")
    await plane.start()
    audio_dev, video_dev = Device(), Device()
    captured = []
    rtcp_ports = {audio_dev.rtcp_addr[1], video_dev.rtcp_addr[1]}
    try:
        audio = plane.open_leg("c", MediaKind.AUDIO, Pool.SIP)
        video = plane.open_leg("c", MediaKind.VIDEO, Pool.SIP)
        audio.configure(audio_dev.config())
        video.configure(
            video_dev.config(kind=MediaKind.VIDEO, codecs=(H264,), rtcp_fb=frozenset({"ccm fir"}))
        )
        for k in range(5):
            audio.send_audio(pt=0, payload=b"\xff" * 160, ts_offset=160 * (k + 1))
        # the device's SR, so our report carries LSR/DLSR
        sr = RtcpSrPacket(
            ssrc=audio_dev.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp_now(plane.ntp_offset_s + 1),
                rtp_timestamp=0,
                packet_count=0,
                octet_count=0,
            ),
        )
        audio_dev.send(audio_dev.packet(b"\xff" * 160), audio.local_rtp_port)
        audio_dev.rtcp.sendto(bytes(sr), ("127.0.0.1", audio.local_rtcp_port))
        await asyncio.sleep(0.1)
        audio.session._next_report = 0.0
        audio._on_timer()
        video.request_keyframe()  # FIR
        video.configure(dataclasses.replace(video.config, rtcp_fb=frozenset({"nack pli"})))
        video.request_keyframe()  # PLI
        audio.close()  # RTCP BYE
        await asyncio.sleep(0.1)
        for dev, leg_ports in (
            (audio_dev, (audio.local_rtp_port, audio.local_rtcp_port)),
            (video_dev, (video.local_rtp_port, video.local_rtcp_port)),
        ):
            for sock, src_port in ((dev.rtp, leg_ports[0]), (dev.rtcp, leg_ports[1])):
                while True:
                    try:
                        data = sock.recv(4096)
                    except BlockingIOError:
                        break
                    captured.append((("127.0.0.1", src_port), sock.getsockname(), data))
    finally:
        await plane.close()
        audio_dev.close()
        video_dev.close()
    pcap = tmp_path / "leg.pcap"
    write_pcap(pcap, captured)
    args = [tshark, "-r", str(pcap), "-n"]
    for _, (_, port), _ in captured:
        proto = "rtcp" if port in rtcp_ports else "rtp"
        args += ["-d", f"udp.port=={port},{proto}"]
    fields = (
        await asyncio.to_thread(
            subprocess.run,
            args
            + [
                "-T",
                "fields",
                "-e",
                "rtcp.pt",
                "-e",
                "rtp.ssrc",
                "-e",
                "rtcp.ssrc.dlsr",
                "-e",
                "rtcp.psfb.fmt",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    ).stdout
    rows = [line.split("\t") for line in fields.splitlines()]
    pts = {int(v) for r in rows for v in r[0].split(",") if v}
    assert {200, 202, 203, 206} <= pts  # SR, SDES, BYE, PSFB
    assert any(r[1] for r in rows)  # RTP decoded
    assert any(r[2] for r in rows)  # our report block carried DLSR for the device's SR
    fb = {int(v) for r in rows if len(r) > 3 for v in r[3].split(",") if v}
    assert {1, 4} <= fb  # PLI and FIR
    expert = (
        await asyncio.to_thread(
            subprocess.run,
            args + ["-q", "-z", "expert,warn"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    ).stdout
    assert "Malformed" not in expert and "malformed" not in expert, expert
