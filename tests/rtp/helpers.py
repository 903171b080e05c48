"""Synthetic RTP devices over real loopback sockets, for the media plane's tests."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from gateway.rtp.packets import build_rtp
from gateway.rtp.ports import PortRange
from gateway.rtp.types import Codec, LegConfig, MediaKind
from tests.conftest import free_port

PCMU = Codec(payload_type=0, name="PCMU", clock_rate=8000)
TEL = Codec(payload_type=101, name="TELEPHONE-EVENT", clock_rate=8000)
H264 = Codec(payload_type=126, name="H264", clock_rate=90000, fmtp="packetization-mode=1")


def port_range(pairs: int = 40) -> PortRange:
    """A range of free-looking ports near an ephemeral port (bind failures are retried)."""
    base = free_port(socket.SOCK_DGRAM) & ~1
    base = min(base, 65535 - 2 * pairs)
    return PortRange(low=base, high=base + 2 * pairs - 1)


class Device:
    """A UDP endpoint pair playing the room system: sends RTP, collects what arrives."""

    def __init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.rtcp.setblocking(False)
        self.seq = 1000
        self.ts = 5000
        self.ssrc = 0x1234ABCD

    @property
    def rtp_addr(self) -> tuple[str, int]:
        return self.rtp.getsockname()

    @property
    def rtcp_addr(self) -> tuple[str, int]:
        return self.rtcp.getsockname()

    def config(self, *, kind: MediaKind = MediaKind.AUDIO, codecs=(PCMU, TEL), **kw) -> LegConfig:
        return LegConfig(
            kind=kind,
            remote_rtp=self.rtp_addr,
            remote_rtcp=self.rtcp_addr,
            codecs=tuple(codecs),
            telephone_event_pt=101,
            **kw,
        )

    def packet(
        self, payload: bytes, *, pt: int = 0, marker: bool = False, step: int = 160
    ) -> bytes:
        data = build_rtp(
            pt=pt, seq=self.seq, ts=self.ts, ssrc=self.ssrc, payload=payload, marker=marker
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + step) & 0xFFFFFFFF
        return data

    def send(self, data: bytes, port: int) -> None:
        self.rtp.sendto(data, ("127.0.0.1", port))

    async def recv(self, sock: socket.socket | None = None, timeout: float = 3.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(sock or self.rtp, 4096), timeout)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


def tone(freq: float, n: int, rate: int = 8000, start: int = 0, amp: float = 8000) -> np.ndarray:
    t = (np.arange(n) + start) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def goertzel_power(x: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Relative power of ``freq`` in ``x`` (normalised by total energy)."""
    x = x.astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > freq - 25) & (freqs < freq + 25)
    return float(spec[band].sum() / max(spec.sum(), 1e-9))


def write_pcap(path, datagrams) -> None:
    """A classic pcap (LINKTYPE_RAW, IPv4/UDP) of (src, dst, payload) datagrams, for tshark."""
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i, ((sh, sp), (dh, dp), payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            i & 0xFFFF,
            0,
            64,
            17,
            0,
            socket.inet_aton(sh),
            socket.inet_aton(dh),
        )
        s = sum(struct.unpack("!10H", ip))
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
        pkt = ip + udp
        out.append(
            struct.pack("<IIII", 1_700_000_000 + i // 50, (i % 50) * 20_000, len(pkt), len(pkt))
        )
        out.append(pkt)
    with open(path, "wb") as f:
        f.write(b"".join(out))
