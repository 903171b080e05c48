"""Two server certificates (RSA for old room systems, ECDSA for the rest), session
resumption, and the TLS stream transport's batched writes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config import Config, ConfigError
from gateway.tlsconf import (
    CertificateError,
    KeyType,
    certificate_key_type,
    companion_paths,
    ensure_generated_pairs,
    ensure_self_signed,
    server_context,
)
from tests.conftest import require_binary
from tests.daemon import Daemon, start_daemon

LEGACY_RSA = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"


def _client(*, version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _peer_key(der: bytes) -> str:
    key = x509.load_der_x509_certificate(der).public_key()
    return "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa" if isinstance(key, rsa.RSAPublicKey) else "?"


def _connect(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
             ) -> tuple[str, str, bool, ssl.SSLSession | None]:
    """(peer key type, TLS version, resumed, session to resume next time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"\r\n\r\n")  # a SIP keepalive ping: the pong carries TLS 1.3 tickets along
            tls.recv(16)
            return _peer_key(der) if der else "?", tls.version() or "", tls.session_reused, tls.session


@pytest.fixture
def pairs(tmp_path: Path) -> list[tuple[Path, Path]]:
    return ensure_generated_pairs(tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")


@pytest.fixture
def tls_server(pairs: list[tuple[Path, Path]]) -> Iterator[int]:
    """A threaded TLS server with the gateway's context (both pairs): answers one read."""
    ctx = server_context(*pairs[0], extra_certs=pairs[1:], require_client_cert=False)
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    if tls.recv(16):
                        tls.sendall(b"\r\n")
            except (OSError, ssl.SSLError):
                pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        th.join(5)
        srv.close()


# ---- generated pairs -------------------------------------------------------------------


def test_first_start_writes_rsa_and_ecdsa_pairs(tmp_path: Path, pairs: list[tuple[Path, Path]]) -> None:
    (rsa_cert, rsa_key), (ec_cert, ec_key) = pairs
    assert (rsa_cert, rsa_key) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    assert (ec_cert, ec_key) == companion_paths(rsa_cert, rsa_key) == (
        tmp_path / "tls" / "cert-ecdsa.pem", tmp_path / "tls" / "key-ecdsa.pem")
    assert [certificate_key_type(c) for c, _ in pairs] == [KeyType.RSA, KeyType.ECDSA]
    assert all(k.stat().st_mode & 0o077 == 0 for _, k in pairs)
    before = [c.read_bytes() for c, _ in pairs]
    assert ensure_generated_pairs(rsa_cert, rsa_key) == pairs  # second start: nothing rewritten
    assert [c.read_bytes() for c, _ in pairs] == before


def test_existing_rsa_install_is_not_given_an_ecdsa_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert ensure_self_signed(cert, key)  # an install from before dual certificates
    assert ensure_generated_pairs(cert, key) == [(cert, key)]
    assert not any(p.exists() for p in companion_paths(cert, key))


def test_new_rsa_pair_replaces_a_stale_ecdsa_pair(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ec_cert, ec_key = companion_paths(cert, key)
    ensure_self_signed(ec_cert, ec_key, key_type=KeyType.ECDSA)
    stale = ec_cert.read_bytes()
    assert len(ensure_generated_pairs(cert, key)) == 2
    assert ec_cert.read_bytes() != stale


def test_two_certificates_of_one_key_type_are_refused(tmp_path: Path, pairs: list[tuple[Path, Path]]) -> None:
    other = (tmp_path / "b" / "cert.pem", tmp_path / "b" / "key.pem")
    ensure_self_signed(*other)  # a second RSA pair would silently replace the first
    with pytest.raises(CertificateError, match="rsa certificate"):
        server_context(*pairs[0], extra_certs=[other], require_client_cert=False)


def test_second_pair_config_keys_go_together(pairs: list[tuple[Path, Path]]) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping({"tls_cert2": str(pairs[1][0])})
    assert err.value.key == "tls_key2"
    c = Config.from_mapping({"tls_cert2": str(pairs[1][0]), "tls_key2": str(pairs[1][1])})
    assert c.path("tls_cert2") == pairs[1][0]


# ---- which certificate is served --------------------------------------------------------


@pytest.mark.parametrize(("version", "ciphers", "expect"), [
    (ssl.TLSVersion.TLSv1_3, None, ("ecdsa", "TLSv1.3")),
    (ssl.TLSVersion.TLSv1_2, None, ("ecdsa", "TLSv1.2")),
    (ssl.TLSVersion.TLSv1_2, LEGACY_RSA, ("rsa", "TLSv1.2")),  # a room system without ECDSA
])
def test_certificate_follows_client_capability(tls_server: int, version: ssl.TLSVersion,
                                               ciphers: str | None, expect: tuple[str, str]) -> None:
    assert _connect(tls_server, _client(version=version, ciphers=ciphers))[:2] == expect


@pytest.mark.parametrize(("args", "expect"), [
    (["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"], ("RSA-PSS", "2048")),
    (["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"], ("ECDSA", "256")),
    (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], ("RSA-PSS", "2048")),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], ("ECDSA", "256")),
])
def test_openssl_client_gets_the_certificate_its_signature_algorithms_allow(
        tls_server: int, args: list[str], expect: tuple[str, str]) -> None:
    openssl = require_binary("openssl")
    out = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{tls_server}", *args],
                         input="", capture_output=True, text=True, timeout=20).stdout
    sig = next(line for line in out.splitlines() if line.startswith("Peer signature type:"))
    bits = next(line for line in out.splitlines() if line.startswith("Server public key is"))
    assert sig.split(":")[1].strip() == expect[0] and f" {expect[1]} bit" in bits


@pytest.mark.parametrize(("version", "ciphers"), [
    (ssl.TLSVersion.TLSv1_3, None), (ssl.TLSVersion.TLSv1_2, None), (ssl.TLSVersion.TLSv1_2, LEGACY_RSA)])
def test_sessions_resume(tls_server: int, version: ssl.TLSVersion, ciphers: str | None) -> None:
    ctx = _client(version=version, ciphers=ciphers)
    key, _, resumed, session = _connect(tls_server, ctx)
    assert not resumed and session is not None
    key2, _, resumed2, _ = _connect(tls_server, ctx, session)
    assert resumed2 and key2 == key


# ---- the daemon ------------------------------------------------------------------------


def _wait_log(d: Daemon, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in d.log()


def test_daemon_first_start_serves_both_and_keeps_them_on_reload(data_dir: Path) -> None:
    d = start_daemon(data_dir)
    try:
        tls = data_dir / "tls"
        assert {p.name for p in tls.iterdir()} >= {"cert.pem", "key.pem", "cert-ecdsa.pem", "key-ecdsa.pem"}
        assert (tls / "key-ecdsa.pem").stat().st_mode & 0o077 == 0
        port = d.ports["sip_tls"]
        assert _connect(port, _client())[:2] == ("ecdsa", "TLSv1.3")
        assert _connect(port, _client(version=ssl.TLSVersion.TLSv1_2, ciphers=LEGACY_RSA))[:2] == ("rsa", "TLSv1.2")
        ctx = _client()
        session = _connect(port, ctx)[3]
        assert _connect(port, ctx, session)[2]  # a device reconnecting with its ticket resumes
        d.proc.send_signal(signal.SIGHUP)
        _wait_log(d, "tls reloaded")
        assert _connect(port, _client())[0] == "ecdsa"
        assert _connect(port, _client(version=ssl.TLSVersion.TLSv1_2, ciphers=LEGACY_RSA))[0] == "rsa"
    finally:
        d.stop()


def test_daemon_serves_configured_second_pair(data_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    rsa_pair = (own / "rsa.pem", own / "rsa.key")
    ec_pair = (own / "ec.pem", own / "ec.key")
    ensure_self_signed(*rsa_pair, hostnames=["gw.example"])
    ensure_self_signed(*ec_pair, hostnames=["gw.example"], key_type=KeyType.ECDSA)
    d = start_daemon(data_dir, "--tls-cert", str(rsa_pair[0]), "--tls-key", str(rsa_pair[1]),
                     env={"VTCGW_TLS_CERT2": str(ec_pair[0]), "VTCGW_TLS_KEY2": str(ec_pair[1])})
    try:
        with socket.create_connection(("127.0.0.1", d.ports["sip_tls"]), timeout=5) as raw:
            with _client().wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
        assert der == x509.load_pem_x509_certificate(ec_pair[0].read_bytes()).public_bytes(Encoding.DER)
        assert _connect(d.ports["sip_tls"], _client(version=ssl.TLSVersion.TLSv1_2, ciphers=LEGACY_RSA))[0] == "rsa"
        assert not (data_dir / "tls").exists()  # configured certificates: nothing generated
    finally:
        d.stop()


def test_daemon_refuses_two_pairs_of_one_key_type(data_dir: Path, tmp_path: Path) -> None:
    a, b = (tmp_path / "a.pem", tmp_path / "a.key"), (tmp_path / "b.pem", tmp_path / "b.key")
    ensure_self_signed(*a)
    ensure_self_signed(*b)
    env = {**os.environ, "VTCGW_TLS_CERT2": str(b[0]), "VTCGW_TLS_KEY2": str(b[1])}
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data_dir),
                          "--tls-cert", str(a[0]), "--tls-key", str(a[1]), "--sip-tls-port", "0",
                          "--h323-port", "0", "--api-port", "0"],
                         capture_output=True, text=True, env=env, timeout=30,
                         cwd=Path(__file__).resolve().parent.parent.parent)
    assert out.returncode == 2
    assert "tls_cert2" in out.stderr and "rsa certificate" in out.stderr


# ---- the stream transport: one write per receive ---------------------------------------


class _AnswerTwiceSink:
    """Answers each message with two writes, and closes after answering 'BYE'."""

    def __init__(self) -> None:
        self.registry = None
        self.pending: list[tuple[int, bytes, bool]] = []

    def on_datagram(self, data: bytes, origin: object) -> None: ...

    def on_message(self, msg: object, raw: bytes, origin: object) -> None:
        close = raw.startswith(b"BYE")
        self.pending += [(origin.conn_id, b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n", False),
                         (origin.conn_id, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", close)]

    def on_parse_error(self, exc: object, raw: bytes, origin: object) -> None: ...

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for conn_id, data, close in pending:
            conn = self.registry.get(conn_id)
            conn.write(data)
            if close:
                conn.close()


def _request(method: str, n: int) -> bytes:
    return (f"{method} sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5555;branch=z9hG4bK{n}\r\n"
            f"From: <sip:a@b>;tag=1\r\nTo: <sip:1@c>\r\nCall-ID: c{n}\r\nCSeq: {n} {method}\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


async def test_stream_answers_go_out_in_order_and_before_a_close(pairs: list[tuple[Path, Path]]) -> None:
    from gateway.sip.transport import ConnectionRegistry, start_stream_server

    sink = _AnswerTwiceSink()
    reg = ConnectionRegistry(max_connections=10, idle_timeout_s=60, in_use=lambda _: False)
    sink.registry = reg
    ctx = server_context(*pairs[0], extra_certs=pairs[1:], require_client_cert=False)
    srv = await start_stream_server(sink, reg, "127.0.0.1", 0, ssl_ctx=ctx, handshake_timeout_s=5)
    try:
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client(), server_hostname="")
        writer.write(_request("OPTIONS", 1) + _request("OPTIONS", 2) + b"\r\n\r\n")
        # the pong is written as the ping is framed, the answers when the sink flushes
        want = b"\r\n" + b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n" * 2
        got = await asyncio.wait_for(reader.readexactly(len(want)), 5)
        assert got == want
        writer.write(_request("BYE", 3))
        rest = await asyncio.wait_for(reader.read(), 5)  # answered, then closed by the server
        assert rest == b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        writer.close()
    finally:
        srv.close()
        reg.close_all()
