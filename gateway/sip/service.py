"""SipService: the asyncio shell around :class:`gateway.sip.core.SipCore`.

    service = SipService(settings, app, media_plane, metrics=..., message_log=...)
    ports = await service.start()      # {"sip_tls": 5061, "sip_tcp": 5060, "sip_udp": 5060}
    service.stop_accepting()           # new INVITEs -> 503 + Retry-After
    service.reload_tls(cert, key, extra)  # new handshakes use the new certificate(s)
    await service.close()              # BYE every call, close the transports

The core's clock is the event loop's; one timer handle follows ``core.get_timer()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.calls import CallApplication
from gateway.rtp.types import MediaKind, Pool
from gateway.sip.core import SipCore
from gateway.sip.errors import SipParseError
from gateway.sip.message import Message, Origin
from gateway.sip.metrics import Metrics, as_metrics
from gateway.sip.settings import SipSettings
from gateway.sip.transport import (
    ConnectionRegistry,
    Sink,
    UdpEndpoint,
    server_tls_context,
    start_stream_server,
    start_udp,
)

log = structlog.get_logger(__name__)
MessageLog = Callable[[dict[str, Any]], None]
SWEEP_INTERVAL_S = 30.0
CLOSE_GRACE_S = 2.0


class SipService(Sink):
    def __init__(self, settings: SipSettings, app: CallApplication, media: Any, *,
                 metrics: Metrics | Callable[[str, float], None] | None = None,
                 message_log: MessageLog | None = None) -> None:
        self.settings = settings
        self.media = media
        self.message_log = message_log
        self._loop: asyncio.AbstractEventLoop | None = None
        self.core = SipCore(settings, app, self._open_leg, clock=self._now, metrics=as_metrics(metrics),
                            on_message=self._log if message_log is not None else None)
        self.core.wakeup = self.flush
        self._udp: UdpEndpoint | None = None
        self._servers: list[Any] = []
        self._tls_ctx: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.registry = ConnectionRegistry(max_connections=settings.max_connections,
                                           idle_timeout_s=settings.idle_timeout_s, in_use=self._conn_in_use)

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> dict[str, int]:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        ports: dict[str, int] = {}
        if s.tls_port is not None:
            if not s.cert_path or not s.key_path:
                raise ValueError("TLS is on (tls_port set) but cert_path/key_path are not configured")
            self._tls_ctx = server_tls_context(s.cert_path, s.key_path, client_ca_path=s.client_ca_path,
                                               require_client_cert=s.require_client_cert,
                                               extra_cert_paths=s.extra_cert_paths)
            srv = await start_stream_server(self, self.registry, s.bind_host, s.tls_port, ssl_ctx=self._tls_ctx,
                                            handshake_timeout_s=s.tls_handshake_timeout_s)
            self._servers.append(srv)
            ports["sip_tls"] = srv.sockets[0].getsockname()[1]
        if s.tcp_port is not None:
            srv = await start_stream_server(self, self.registry, s.bind_host, s.tcp_port, ssl_ctx=None,
                                            handshake_timeout_s=s.tls_handshake_timeout_s)
            self._servers.append(srv)
            ports["sip_tcp"] = srv.sockets[0].getsockname()[1]
        if s.udp_port is not None:
            self._udp = await start_udp(self, s.bind_host, s.udp_port)
            ports["sip_udp"] = self._udp.local[1]
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="sip-idle-sweep")
        return ports

    def stop_accepting(self) -> None:
        self.core.accepting = False

    def reload_tls(self, cert_path: str, key_path: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        """New handshakes use these pairs (a pair replaces the loaded one of its key type)."""
        if self._tls_ctx is None:
            raise ValueError("TLS is not running")
        for cert, key in ((cert_path, key_path), *extra):
            try:
                self._tls_ctx.load_cert_chain(cert, key)
            except (OSError, Exception) as exc:
                raise ValueError(f"cannot load TLS certificate {cert!r} / key {key!r}: {exc}") from exc

    async def close(self) -> None:
        self.core.accepting = False
        self.core.calls.close_all("shutdown", self._now())
        self.flush()
        deadline = self._now() + CLOSE_GRACE_S
        while self.core._client and self._now() < deadline:  # BYE transactions settle
            await asyncio.sleep(0.05)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._timer is not None:
            self._timer.cancel()
        for srv in self._servers:
            srv.close()
        self.registry.close_all()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    @property
    def active_calls(self) -> int:
        return self.core.calls.active_count()

    # ---- Sink -------------------------------------------------------------------------------
    # A bug in the core must cost one message, never the service: it is logged and dropped.
    def on_datagram(self, data: bytes, origin: Origin) -> None:
        try:
            self.core.receive_datagram(data, origin, self._now())
        except Exception:  # noqa: BLE001
            log.exception("sip.core_error", peer=origin.addr, transport=origin.transport)

    def on_message(self, msg: Message, raw: bytes, origin: Origin) -> None:
        try:
            self.core.receive_message(msg, origin, self._now(), raw=raw)
        except Exception:  # noqa: BLE001
            log.exception("sip.core_error", peer=origin.addr, transport=origin.transport, call_id=msg.call_id)

    def on_parse_error(self, exc: SipParseError, raw: bytes, origin: Origin) -> None:
        self.core.receive_parse_error(exc, raw, origin, self._now())

    def flush(self) -> None:
        for origin, data in self.core.data_to_send():
            if origin.transport == "udp":
                if self._udp is not None:
                    self._udp.send(data, origin.addr)
            else:
                conn = self.registry.get(origin.conn_id)
                if conn is not None:
                    conn.write(data)
        self._arm_timer()

    # ---- internals --------------------------------------------------------------------------
    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def _open_leg(self, call_id: str, kind: MediaKind) -> Any:
        return self.media.open_leg(call_id, kind, Pool.SIP)

    def _arm_timer(self) -> None:
        when = self.core.get_timer()
        if when is None or (self._timer_at is not None and self._timer_at <= when and self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self._now())
        except Exception:  # noqa: BLE001
            log.exception("sip.timer_error")
        self.flush()

    def _conn_in_use(self, conn_id: int) -> bool:
        return any(c.origin.conn_id == conn_id for c in self.core.calls.calls.values())

    async def _sweep_loop(self) -> None:
        interval = min(SWEEP_INTERVAL_S, max(0.5, self.settings.idle_timeout_s / 2))
        while True:
            await asyncio.sleep(interval)
            self.registry.sweep(self._now())

    def _log(self, direction: str, raw: bytes, call_id: str) -> None:
        assert self.message_log is not None
        self.message_log({"node_id": self.settings.node_id, "region": self.settings.region,
                          "event_timestamp": int(time.time() * 1000), "call_id": call_id,
                          "direction": direction, "sip_message": raw.decode("utf-8", "replace")})
