"""SipService over real sockets with in-memory media: TLS policy, stream framing on the wire,
keep-alives, malformed input, draining, certificate reload, BYE on close, the message log."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gateway.sip.metrics import CountingMetrics
from gateway.sip.parser import parse_message
from gateway.sip.service import SipService
from tests.sip.helpers import FakeMedia, RecordingApp, in_dialog, invite
from tests.sip.peers import make_cert, settings_for_tests

pytestmark = pytest.mark.timeout(30)


class PoolMedia(FakeMedia):
    def open_leg(self, call_id, kind, pool=None):  # the MediaPlane signature
        return super().open_leg(call_id, kind)


@pytest.fixture
async def svc(tmp_path: Path):
    cert, key = make_cert(tmp_path)
    log: list[dict] = []
    app = RecordingApp()
    metrics = CountingMetrics()
    service = SipService(settings_for_tests(tls_port=0, cert_path=cert, key_path=key, node_id="n1", region="r1"),
                         app, PoolMedia(), metrics=metrics, message_log=log.append)
    ports = await service.start()
    try:
        yield service, ports, app, log, metrics, tmp_path
    finally:
        await service.close()


class Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.q.put_nowait(data)


async def udp_client(port: int):
    loop = asyncio.get_running_loop()
    tr, proto = await loop.create_datagram_endpoint(Udp, remote_addr=("127.0.0.1", port))
    return tr, proto


async def test_udp_options_and_message_log(svc) -> None:
    service, ports, app, log, metrics, _ = svc
    tr, proto = await udp_client(ports["sip_udp"])
    try:
        opt = invite(sdp=None).replace(b"INVITE sip", b"OPTIONS sip").replace(b"1 INVITE", b"1 OPTIONS")
        tr.sendto(opt)
        resp = parse_message(await asyncio.wait_for(proto.q.get(), 5))
        assert resp.status == 200 and "INVITE" in resp.header("Allow")
    finally:
        tr.close()
    assert {e["call_id"] for e in log} == {"c1"} and len(log) == 2
    assert set(log[0]) >= {"node_id", "region", "event_timestamp", "call_id", "sip_message"}
    assert log[0]["node_id"] == "n1" and log[1]["sip_message"].startswith("SIP/2.0 200")
    assert metrics.counts["Sip2xxCodes"] == 1


async def test_stop_accepting_then_close_byes_active_calls(svc) -> None:
    service, ports, app, log, metrics, _ = svc
    tr, proto = await udp_client(ports["sip_udp"])
    try:
        tr.sendto(invite())
        ok = parse_message(await asyncio.wait_for(proto.q.get(), 5))
        assert ok.status == 200
        tr.sendto(in_dialog("ACK", ok.to.tag, cseq=1, branch="z9hG4bKack"))
        service.stop_accepting()
        tr.sendto(invite(call_id="c2", branch="z9hG4bKc2"))
        refused = parse_message(await asyncio.wait_for(proto.q.get(), 5))
        assert refused.status == 503 and refused.header("Retry-After")
        closing = asyncio.create_task(service.close())
        bye = parse_message(await asyncio.wait_for(proto.q.get(), 5))
        assert bye.method == "BYE"
        ok_bye = bytes(bye).replace(b"BYE sip", b"x")  # answer the BYE so close() need not wait
        resp = (b"SIP/2.0 200 OK\r\n" + b"\r\n".join(
            f"{k}: {v}".encode() for k, v in bye.headers if k in ("Via", "From", "To", "Call-ID", "CSeq"))
            + b"\r\nContent-Length: 0\r\n\r\n")
        tr.sendto(resp)
        await asyncio.wait_for(closing, 5)
        assert ok_bye and app.ended == [("c1", "shutdown")]
    finally:
        tr.close()


async def test_tcp_keepalive_framing_and_malformed_close(svc) -> None:
    service, ports, *_ = svc
    reader, writer = await asyncio.open_connection("127.0.0.1", ports["sip_tcp"])
    try:
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"  # RFC 5626 pong
        opt = invite(sdp=None).replace(b"INVITE sip", b"OPTIONS sip").replace(b"1 INVITE", b"1 OPTIONS")
        writer.write(opt[:30])
        await writer.drain()
        writer.write(opt[30:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200")
        writer.write(invite(sdp=None).replace(b"Content-Length: 0\r\n", b""))  # no Content-Length on a stream
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 400 Missing Content-Length")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
    finally:
        writer.close()


def _client_ctx(**kw) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        if k == "ciphers":
            ctx.set_ciphers(v)
        else:
            setattr(ctx, k, v)
    return ctx


async def _handshake(port: int, ctx: ssl.SSLContext) -> tuple[str, str, bytes] | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    except (ssl.SSLError, ConnectionError, OSError):
        return None
    sslobj = writer.get_extra_info("ssl_object")
    out = (sslobj.version(), sslobj.cipher()[0], sslobj.getpeercert(binary_form=True))
    writer.close()
    return out


async def test_tls_policy(svc) -> None:
    service, ports, *_ = svc
    port = ports["sip_tls"]
    tls13 = await _handshake(port, _client_ctx())
    assert tls13 is not None and tls13[0] == "TLSv1.3"
    tls12 = await _handshake(port, _client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2,
                                               ciphers="ECDHE-RSA-AES128-GCM-SHA256"))  # what pjsua2 speaks
    assert tls12 is not None and tls12[:2] == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    no_fs = await _handshake(port, _client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256"))
    assert no_fs is None  # static RSA key exchange: no forward secrecy, refused
    cbc = await _handshake(port, _client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-SHA"))
    assert cbc is None  # not AEAD


async def test_reload_tls_serves_the_new_certificate(svc, tmp_path: Path) -> None:
    service, ports, *_ = svc
    before = await _handshake(ports["sip_tls"], _client_ctx())
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    cert, key = make_cert(new_dir)
    service.reload_tls(cert, key)
    after = await _handshake(ports["sip_tls"], _client_ctx())
    assert before and after and before[2] != after[2]
    with pytest.raises(ValueError, match="cannot load TLS certificate"):
        service.reload_tls(str(tmp_path / "missing.pem"), key)


async def test_tls_without_certificate_is_a_clear_error() -> None:
    service = SipService(settings_for_tests(tls_port=0), RecordingApp(), PoolMedia())
    with pytest.raises(ValueError, match="cert_path"):
        await service.start()


async def test_garbage_datagram_answered_or_dropped_never_fatal(svc) -> None:
    service, ports, *_ = svc
    tr, proto = await udp_client(ports["sip_udp"])
    try:
        tr.sendto(b"\x00\xff garbage")  # unanswerable: dropped
        tr.sendto(invite(sdp=None).replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"))
        data = await asyncio.wait_for(proto.q.get(), 5)
        assert data.startswith(b"SIP/2.0 400 Bad CSeq")
    finally:
        tr.close()


async def test_client_certificate_required_when_configured(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    service = SipService(settings_for_tests(tls_port=0, cert_path=cert, key_path=key, client_ca_path=cert,
                                            require_client_cert=True), RecordingApp(), PoolMedia())
    ports = await service.start()
    try:
        refused = await _handshake_and_talk(ports["sip_tls"], _client_ctx())
        assert refused is False
        ctx = _client_ctx()
        ctx.load_cert_chain(cert, key)  # a client certificate the CA file vouches for
        assert await _handshake_and_talk(ports["sip_tls"], ctx) is True
    finally:
        await service.close()


async def _handshake_and_talk(port: int, ctx: ssl.SSLContext) -> bool:
    """TLS 1.3 reports a refused client certificate after the handshake: talk to find out."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
        writer.write(b"\r\n\r\n")
        pong = await asyncio.wait_for(reader.read(2), 5)
        writer.close()
        return pong == b"\r\n"
    except (ssl.SSLError, ConnectionError, OSError):
        return False


async def test_idle_connection_is_closed(tmp_path: Path) -> None:
    service = SipService(settings_for_tests(idle_timeout_s=0.6), RecordingApp(), PoolMedia())
    ports = await service.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["sip_tcp"])
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the sweep, no traffic
        writer.close()
    finally:
        await service.close()
