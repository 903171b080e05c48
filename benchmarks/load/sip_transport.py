"""Asyncio adapter for the load UAC: TLS, TCP or UDP connections, bytes in and out.

`SipClient` owns a `uac.Uac` and a pool of connections; each call is bound to
one connection (``calls_per_connection`` calls share one; 1 gives every call its
own, like room systems each with their own TLS connection). It feeds parsed
messages to the core, sends what the core wants sent on the call's connection,
keeps one loop timer at the core's `get_timer()`, and hands every core event
to the `on_event` callback. No SIP logic lives here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from benchmarks.load.uac import CallRequest, Event, Outgoing, SipTransport, Uac, UacConfig
from gateway.sip.errors import SipParseError
from gateway.sip.parser import StreamFramer, parse_message

# what an old room system offers: TLS 1.2 only, ECDHE-RSA suites only (no ECDSA)
LEGACY_RSA_CIPHERS = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"


class ResumingContext(ssl.SSLContext):
    """A client context that offers ``session`` (the last one the gateway gave this
    generator) on every new connection, as a device reconnecting with its session ticket
    would: resumed handshakes skip the server's certificate signature. asyncio has no
    per-connection session argument, so the offer goes in at ``wrap_bio``."""

    session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session if session is not None else self.session)


def client_tls_context(*, resume: bool = False, legacy_rsa: bool = False) -> ssl.SSLContext:
    """TLS 1.2+ client that accepts the gateway's self-signed certificate (a load test,
    not a trust decision). ``resume``: offer the last session on each new connection
    (`ResumingContext`). ``legacy_rsa``: TLS 1.2 with ECDHE-RSA suites only, like room
    systems that cannot verify ECDSA (the gateway must answer with its RSA certificate)."""
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT) if resume else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy_rsa:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(LEGACY_RSA_CIPHERS)
    return ctx


class _Connection(asyncio.Protocol, asyncio.DatagramProtocol):
    """One transport to the gateway; stream or datagram."""

    def __init__(self, client: SipClient, reliable: bool) -> None:
        self.client = client
        self.reliable = reliable
        self.transport: Any = None
        self.framer = StreamFramer() if reliable else None
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self.calls = 0  # calls bound so far
        self.open_calls = 0
        self.closed = asyncio.get_running_loop().create_future()
        self.handshake_s = 0.0
        self.resumed = False  # TLS: the handshake resumed an earlier session
        self.tls_info: tuple[str, str] | None = None  # TLS: (version, cipher)
        self._session_pending = isinstance(client.tls, ResumingContext)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.local = transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            self.client.send_failures += 1
            return
        if self.reliable:
            self.transport.write(data)
        else:
            self.transport.sendto(data)

    def data_received(self, data: bytes) -> None:
        assert self.framer is not None
        if self._session_pending:  # TLS 1.3 tickets arrive after the handshake: take it now
            self._session_pending = False
            sslobj = self.transport.get_extra_info("ssl_object")
            ctx = self.client.tls
            if sslobj is not None and isinstance(ctx, ResumingContext) and sslobj.session is not None:
                ctx.session = sslobj.session
        for item in self.framer.feed(data):
            if item.keepalive is not None:
                self.send(b"\r\n")
            elif item.message is not None:
                self.client.deliver(item.message, self)
            else:
                self.client.parse_errors += 1
        if self.framer.broken:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = parse_message(data, datagram=True)
        except SipParseError:
            self.client.parse_errors += 1
            return
        self.client.deliver(msg, self)

    def error_received(self, exc: Exception) -> None:
        self.client.send_failures += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class SipClient:
    """Many load calls over a pool of connections to one gateway."""

    def __init__(
        self,
        config: UacConfig,
        *,
        on_event: Callable[[Event], None],
        calls_per_connection: int = 1,
        tls: ssl.SSLContext | None = None,
        local_host: str = "127.0.0.1",
        tls_resume: bool = False,
        tls_legacy_rsa: bool = False,
    ) -> None:
        self.config = config
        self.uac = Uac(config)
        self.on_event = on_event
        self.per_conn = max(1, calls_per_connection)
        self.tls = tls if tls is not None else (
            client_tls_context(resume=tls_resume, legacy_rsa=tls_legacy_rsa)
            if config.transport is SipTransport.TLS else None)
        self.local_host = local_host
        self.loop = asyncio.get_running_loop()
        self._pool: dict[int, asyncio.Future[_Connection]] = {}
        self._conn_of: dict[str, _Connection] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.connections: list[_Connection] = []
        self.connect_failures = 0
        self.send_failures = 0
        self.parse_errors = 0

    def now(self) -> float:
        # not loop.time(): uvloop's clock moves in whole milliseconds, too coarse for SRD
        return time.monotonic()

    # --- connections -------------------------------------------------------------------------
    async def _open(self) -> _Connection:
        t0 = time.perf_counter()
        reliable = self.config.transport.reliable
        conn = _Connection(self, reliable)
        host, port = self.config.target
        if reliable:
            await self.loop.create_connection(lambda: conn, host, port, ssl=self.tls,
                                              server_hostname="" if self.tls else None)
        else:
            await self.loop.create_datagram_endpoint(lambda: conn, local_addr=(self.local_host, 0),
                                                     remote_addr=(host, port))
        conn.handshake_s = time.perf_counter() - t0
        if (sslobj := conn.transport.get_extra_info("ssl_object")) is not None:
            conn.resumed = sslobj.session_reused
            conn.tls_info = (sslobj.version() or "", (sslobj.cipher() or ("",))[0])
        self.connections.append(conn)
        return conn

    async def bind(self, call_id: str, call_index: int) -> _Connection:
        """The connection call number `call_index` uses (opened on first use)."""
        slot = call_index // self.per_conn
        fut = self._pool.get(slot)
        if fut is None:
            fut = self.loop.create_task(self._open())
            self._pool[slot] = fut
        try:
            conn = await fut
        except OSError:
            self.connect_failures += 1
            self._pool.pop(slot, None)
            raise
        conn.calls += 1
        conn.open_calls += 1
        if conn.calls >= self.per_conn and self.per_conn > 1:
            pass  # the slot is full; later calls use the next slot
        self._conn_of[call_id] = conn
        return conn

    def release(self, call_id: str) -> None:
        """The call is over: forget it; close its connection when its last call ended
        and no more calls will be bound to it."""
        conn = self._conn_of.pop(call_id, None)
        self.uac.forget(call_id)
        if conn is None:
            return
        conn.open_calls -= 1
        if conn.open_calls == 0 and conn.calls >= self.per_conn and conn.reliable:
            conn.transport.close()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*(asyncio.wait_for(c.closed, 5) for c in self.connections),
                             return_exceptions=True)

    # --- driving the core -----------------------------------------------------------------
    def invite(self, req: CallRequest) -> None:
        self.uac.invite(req, self.now())
        self._flush()

    def send_digits(self, call_id: str, digits: str) -> None:
        self.uac.send_digits(call_id, digits, self.now())
        self._flush()

    def bye(self, call_id: str) -> None:
        self.uac.bye(call_id, self.now())
        self._flush()

    def deliver(self, msg: Any, conn: _Connection) -> None:
        events = self.uac.receive_message(msg, self.now())
        self._flush(conn)
        for ev in events:
            self.on_event(ev)

    def _flush(self, default: _Connection | None = None) -> None:
        out: list[Outgoing] = self.uac.data_to_send()
        for o in out:
            conn = self._conn_of.get(o.call_id, default)
            if conn is not None:
                conn.send(o.data)
        self._schedule()

    def _schedule(self) -> None:
        at = self.uac.get_timer()
        if at is None or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_later(max(0.0, at - self.now()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        events = self.uac.handle_timer(self.now())
        self._flush()
        for ev in events:
            self.on_event(ev)
