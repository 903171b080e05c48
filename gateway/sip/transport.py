"""Thin asyncio transports for SIP: UDP datagrams, TCP and TLS streams (RFC 3261 section 18).

No SIP logic here: bytes in go to a sink with an :class:`Origin`, bytes out are written
back on the same socket or connection. Streams are framed by
:class:`gateway.sip.parser.StreamFramer`; a double-CRLF ping is answered with CRLF
(RFC 5626 section 3.5.1); a stream that can no longer be framed is answered and closed.

TLS policy lives in :func:`server_tls_context` (one place): TLS 1.2 minimum (1.3
preferred by negotiation), forward-secret AEAD suites only (ECDHE/DHE with AES-GCM or
ChaCha20-Poly1305; every TLS 1.3 suite already is), no compression, no renegotiation,
optional client-certificate verification.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.sip.errors import SipParseError
from gateway.sip.message import Message, Origin
from gateway.sip.parser import StreamFramer
from gateway.tlsconf import CertificateError, server_context


def server_tls_context(cert_path: str, key_path: str, *, client_ca_path: str | None = None,
                       require_client_cert: bool = False,
                       extra_cert_paths: Sequence[tuple[str, str]] = ()) -> ssl.SSLContext:
    """The project's one TLS policy (gateway.tlsconf), with clear certificate diagnostics.
    ``extra_cert_paths``: more (certificate, key) pairs of other key types (ECDSA beside RSA)."""
    try:
        return server_context(Path(cert_path), Path(key_path), Path(client_ca_path) if client_ca_path else None,
                              require_client_cert=require_client_cert,
                              extra_certs=[(Path(c), Path(k)) for c, k in extra_cert_paths])
    except CertificateError as exc:  # clear certificate diagnostics (INTEROP.md report 9)
        raise ValueError(f"cannot load TLS certificate {cert_path!r} / key {key_path!r}: {exc}") from exc


class Sink:
    """What the transports feed (implemented by the service)."""

    def on_datagram(self, data: bytes, origin: Origin) -> None: ...

    def on_message(self, msg: Message, raw: bytes, origin: Origin) -> None: ...

    def on_parse_error(self, exc: SipParseError, raw: bytes, origin: Origin) -> None: ...

    def flush(self) -> None: ...


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sink.on_datagram(data, Origin(transport="udp", addr=addr[:2], local=self.local))
        self.sink.flush()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for earlier sends: nothing to do (RFC 3261 18.4 would report them)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.sock is not None:
            try:
                self.sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass  # buffer full: let the transport queue it
            except OSError:
                return  # unreachable peer etc.: UDP is best effort (RFC 3261 18.4)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


_conn_ids = itertools.count(1)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection a device opened."""

    def __init__(self, sink: Sink, registry: ConnectionRegistry, transport_name: str) -> None:
        self.sink = sink
        self.registry = registry
        self.name = transport_name
        self.conn_id = next(_conn_ids)
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.origin: Origin | None = None
        self.last_activity = 0.0
        # while a receive is handled, what is written to this connection waits here and
        # goes out as one transport write: one TLS record and one send() for a 100 Trying
        # and its 200 OK instead of one each
        self._batch: list[bytes] | None = None
        self.loop_time = asyncio.get_running_loop().time  # made by the loop's server: one is running

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.registry.add(self):
            transport.close()
            return
        peer = transport.get_extra_info("peername")[:2]
        local = transport.get_extra_info("sockname")[:2]
        self.origin = Origin(transport=self.name, addr=peer, conn_id=self.conn_id, local=local)
        self.last_activity = self.loop_time()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None and self.origin is not None
        self.last_activity = self.loop_time()
        self._batch = batch = []
        try:
            for item in self.framer.feed(data):
                if item.keepalive is not None:
                    batch.append(b"\r\n")
                elif item.error is not None:
                    self.sink.on_parse_error(item.error, item.raw, self.origin)
                elif item.message is not None:
                    self.sink.on_message(item.message, item.raw, self.origin)
            self.sink.flush()
        finally:
            self._flush_batch()
        if self.framer.broken:
            self.transport.close()  # flushed above: the answer goes out first

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.remove(self)

    def write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.transport is not None and not self.transport.is_closing():
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def close(self) -> None:
        self._flush_batch()  # an answer written just before closing still goes out
        if self.transport is not None:
            self.transport.close()


class ConnectionRegistry:
    """Open stream connections by id, with a cap and an idle sweep."""

    def __init__(self, *, max_connections: int, idle_timeout_s: float,
                 in_use: Callable[[int], bool]) -> None:
        self.conns: dict[int, StreamConnection] = {}
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.in_use = in_use

    def add(self, conn: StreamConnection) -> bool:
        if len(self.conns) >= self.max_connections:
            return False
        self.conns[conn.conn_id] = conn
        return True

    def remove(self, conn: StreamConnection) -> None:
        self.conns.pop(conn.conn_id, None)

    def get(self, conn_id: int) -> StreamConnection | None:
        return self.conns.get(conn_id)

    def sweep(self, now: float) -> int:
        closed = 0
        for conn in list(self.conns.values()):
            if now - conn.last_activity > self.idle_timeout_s and not self.in_use(conn.conn_id):
                conn.close()
                closed += 1
        return closed

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()


async def start_stream_server(sink: Sink, registry: ConnectionRegistry, host: str, port: int, *,
                              ssl_ctx: ssl.SSLContext | None, handshake_timeout_s: float) -> Any:
    loop = asyncio.get_running_loop()
    name = "tls" if ssl_ctx is not None else "tcp"
    kwargs: dict[str, Any] = {}
    if ssl_ctx is not None:
        kwargs = {"ssl": ssl_ctx, "ssl_handshake_timeout": handshake_timeout_s}
    return await loop.create_server(lambda: StreamConnection(sink, registry, name), host, port,
                                    reuse_address=True, backlog=1024, **kwargs)


async def start_udp(sink: Sink, host: str, port: int) -> UdpEndpoint:
    """Bind our own socket so replies go out with a plain ``sendto`` (the loop's transport
    ``sendto`` costs far more per datagram under uvloop); the loop still does the reading."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        except OSError:
            pass
    sock.setblocking(False)
    try:
        sock.bind((host, port))
        _, proto = await loop.create_datagram_endpoint(lambda: UdpEndpoint(sink), sock=sock)
    except BaseException:
        sock.close()
        raise
    proto.sock = sock
    return proto
