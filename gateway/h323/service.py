"""H.323 dial-in service: listens on TCP 1720 (H.225.0 call signalling) and runs calls.

Public API::

    svc = H323Service(H323Settings(...), app, media, metrics=None)
    ports = await svc.start()        # {"h323": port}; port 0 in settings = ephemeral
    svc.stop_accepting()             # new Setups -> ReleaseComplete cause 42; calls go on
    await svc.close()                # ends every call (EndSessionCommand + ReleaseComplete 16)

Each accepted connection is one :class:`CallConnection` (one call). A separate H.245
connection, when the caller neither tunnels nor offers an h245Address, listens on a TCP port
taken from ``h245_range`` through a :class:`PortAllocator` owned by this service: the
default is the same numbers as the H.323 media range (5100-6200, SPEC.md firewall table),
which does not collide with the media plane because media is UDP and H.245 is TCP.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from gateway.calls import CallApplication
from gateway.h323 import asn1
from gateway.h323 import messages as m
from gateway.h323.call import CallTimers
from gateway.h323.connection import CallConnection
from gateway.h323.h245 import H245Timers
from gateway.rtp.ports import PortAllocator, PortRange
from gateway.rtp.types import MediaKind

if TYPE_CHECKING:
    from gateway.rtp.plane import MediaPlane

log = structlog.get_logger(__name__)

DEFAULT_CAPABILITIES = (
    m.MediaCapability(format=m.MediaFormat.G722, frames=20),
    m.MediaCapability(format=m.MediaFormat.PCMU, frames=20),
    m.MediaCapability(format=m.MediaFormat.PCMA, frames=20),
    # 1.4 Mbit/s (SPEC.md HD profile), level 3.1 (720p30)
    m.MediaCapability(format=m.MediaFormat.H264, max_bitrate_100bps=14000, h264_level=71),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class H323Settings:
    bind_host: str = "0.0.0.0"
    advertise_host: str = "127.0.0.1"  # put in h245Address and OLC media addresses
    port: int = 1720
    h245_range: PortRange = field(default_factory=lambda: PortRange(low=5100, high=6200))
    h245_quarantine_s: float = 5.0
    h245_bind_attempts: int = 8
    h245_connect_timeout_s: float = 5.0
    # without Fast Start media depends on H.245: a separate connection must be up by then
    h245_wait_s: float = 20.0
    fast_start: bool = True
    tunnelling: bool = True
    video: bool = True
    capabilities: tuple[m.MediaCapability, ...] = DEFAULT_CAPABILITIES
    call_timers: CallTimers = field(default_factory=CallTimers)
    h245_timers: H245Timers = field(default_factory=H245Timers)
    drain_timeout_s: float = 2.0
    linger_s: float = 2.0  # after ReleaseComplete: half-closed, waiting for the peer's FIN

    def __post_init__(self) -> None:
        # H.225.0/H.245 TransportAddress carries IPv4 here (ipAddress / iPAddress)
        try:
            ipaddress.IPv4Address(self.advertise_host)
        except ValueError:
            raise ValueError(
                f"H.323 advertise_host {self.advertise_host!r} must be an IPv4 address"
            ) from None
        if not any(not c.format.is_video for c in self.capabilities):
            raise ValueError("H.323 capabilities need at least one audio format")

    @property
    def media_kinds(self) -> tuple[MediaKind, ...]:
        return (MediaKind.AUDIO, MediaKind.VIDEO) if self.video else (MediaKind.AUDIO,)

    @classmethod
    def from_config(cls, config: Any) -> H323Settings:
        """From the daemon's :class:`gateway.config.Config`."""
        return cls(
            bind_host=config.bind_host,
            advertise_host=config.media_advertise_host,
            port=config.h323_port if config.h323_port is not None else 1720,
            h245_range=config.h323_media_range,
        )


class H323Service:
    def __init__(
        self, settings: H323Settings, app: CallApplication, media: MediaPlane, metrics: Any = None
    ) -> None:
        self.settings = settings
        self.app = app
        self.media = media
        self.metrics = metrics
        self.draining = False
        self.connections: set[CallConnection] = set()
        self.lingering: set[asyncio.Transport] = set()
        self.h245_ports = PortAllocator(
            settings.h245_range, quarantine_s=settings.h245_quarantine_s
        )
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> dict[str, int]:
        await asyncio.get_running_loop().run_in_executor(None, asn1.preload)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: CallConnection(self),
            self.settings.bind_host,
            self.settings.port,
            reuse_address=True,
        )
        port = self._server.sockets[0].getsockname()[1]
        log.info("h323.listening", port=port)
        return {"h323": port}

    def stop_accepting(self) -> None:
        """Keep the port open, answer new Setups with cause 42 (switching equipment congestion)."""
        self.draining = True

    async def close(self) -> None:
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort("gateway shutting down")
        for transport in list(self.lingering):
            transport.close()
        self.lingering.clear()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), self.settings.drain_timeout_s)
            except TimeoutError:
                log.warning("h323.close_timeout", connections=len(self.connections))
            self._server = None

    @property
    def active_calls(self) -> int:
        return len(self.connections)

    # metrics are optional (tests run without them)
    def count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name)

    def gauge_add(self, name: str, amount: float) -> None:
        if self.metrics is not None:
            self.metrics.add(name, amount)
