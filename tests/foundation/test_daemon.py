"""The real daemon as a subprocess: ready line, TLS policy, H.323 port, signals, bind errors."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import Daemon, ephemeral_args, start_daemon


@pytest.fixture
def daemon(data_dir: Path) -> Daemon:
    d = start_daemon(data_dir)
    yield d
    d.stop()


def _handshake(port: int, *, version: ssl.TLSVersion, ciphers: str | None = None) -> tuple[str, str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version() or "", tls.cipher()[0]


def test_first_start_creates_cert_db_token(daemon: Daemon) -> None:
    d = daemon.data_dir
    assert (d / "tls" / "cert.pem").exists() and (d / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    assert (d / "vtcgw.sqlite3").exists()
    assert set(daemon.ports) >= {"sip_tls", "h323", "api"}


def test_tls13_preferred_and_tls12_ecdhe_accepted(daemon: Daemon) -> None:
    port = daemon.ports["sip_tls"]
    assert _handshake(port, version=ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    version, cipher = _handshake(port, version=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and cipher.startswith(("ECDHE", "DHE"))


def test_no_forward_secrecy_and_old_versions_refused(daemon: Daemon) -> None:
    port = daemon.ports["sip_tls"]
    with pytest.raises(ssl.SSLError):
        _handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256:AES256-SHA")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            ctx.wrap_socket(raw)


def test_h323_port_accepts_tcp(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.ports["h323"]), timeout=5):
        pass


def test_sigterm_drains_and_exits_zero(daemon: Daemon) -> None:
    assert daemon.stop(signal.SIGTERM) == 0
    assert '"draining"' in daemon.log() or "draining" in daemon.log()


def test_sighup_reloads_certificate(daemon: Daemon) -> None:
    import time

    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "tls reloaded" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "tls reloaded" in daemon.log()
    assert _handshake(daemon.ports["sip_tls"], version=ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"


def test_port_in_use_exits_2_naming_the_key(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ephemeral_args(data_dir)
        args[args.index("--h323-port") + 1] = str(port)
        r = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "h323_port" in last and "in use" in last, r.stderr


def test_ready_line_is_one_json_object(daemon: Daemon) -> None:
    assert all(isinstance(v, int) and v > 0 for v in daemon.ports.values())
    json.dumps(daemon.ports)
