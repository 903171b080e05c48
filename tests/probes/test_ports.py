"""`vtcprobe ports` against the real daemon, a deliberately weak TLS server, and the reflector."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.reflector import Reflector
from gateway.tlsconf import ensure_self_signed
from probes.ports import sample_ports
from tests.conftest import free_port
from tests.daemon import start_daemon
from tests.probes.helpers import TOKEN, vtcprobe

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("ports") / "var")
    try:
        yield d
    finally:
        d.stop()


async def test_gateway_tls_policy_passes(daemon) -> None:
    run = await vtcprobe("ports", "127.0.0.1", "--sip-tls-port", str(daemon.ports["sip_tls"]),
                         "--h323-port", str(daemon.ports["h323"]), "--json")
    assert run.status == 0, run.stdout + run.stderr
    d = run.json()
    assert [t["state"] for t in d["tcp"]] == ["open", "open"]
    tls = d["tls"]
    assert tls["default"]["version"] == "TLSv1.3" and tls["default"]["forward_secret"]
    v = tls["versions"]
    assert v["TLSv1.3"]["accepted"] and v["TLSv1.2"]["accepted"]
    assert v["TLSv1.2"]["cipher"].startswith("ECDHE")
    assert v["TLSv1.1"]["accepted"] is False and v["TLSv1.0"]["accepted"] is False
    assert tls["non_forward_secret"]["accepted"] is False
    cert = tls["certificate"]
    assert cert["self_signed"] and cert["name_matches"] and not cert["trusted"]
    assert cert["days_left"] > 14 and cert["key"] == "EC secp256r1"  # the ECDSA pair: this client verifies ECDSA
    assert tls["chain"] and tls["chain"][0]["depth"] == 0
    names = {c["name"] for c in d["checks"]}
    assert {"tls 1.1 refused", "tls 1.0 refused", "non-forward-secret suite refused",
            "tls 1.3 preferred (chosen when offered)", "tls 1.2 suite forward secret"} <= names


async def test_name_mismatch_and_closed_port_fail(daemon) -> None:
    closed = free_port()
    run = await vtcprobe("ports", "127.0.0.1", "--sip-tls-port", str(daemon.ports["sip_tls"]),
                         "--h323-port", str(closed), "--server-name", "gw.example.org", "--json")
    assert run.status == 1
    failed = {c["name"] for c in run.json()["checks"] if not c["ok"]}
    assert failed == {f"tcp h323 {closed} open", "certificate matches gw.example.org"}


@pytest.fixture
async def weak_tls_server(tmp_path: Path):
    """A TLS server that accepts TLS 1.0 and RSA key exchange: what the probe must catch."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_self_signed(cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_weak_tls_is_caught(weak_tls_server: int) -> None:
    h323 = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        run = await vtcprobe("ports", "localhost", "--sip-tls-port", str(weak_tls_server),
                             "--h323-port", str(h323.sockets[0].getsockname()[1]), "--json")
    finally:
        h323.close()
    assert run.status == 1
    d = run.json()
    failed = {c["name"] for c in d["checks"] if not c["ok"]}
    assert "tls 1.3 preferred (chosen when offered)" in failed
    assert "non-forward-secret suite refused" in failed
    assert "tls 1.0 refused" in failed or d["tls"]["versions"]["TLSv1.0"]["accepted"] is None
    assert d["tls"]["non_forward_secret"]["cipher"].startswith(("AES", "CAMELLIA"))


async def test_udp_media_ranges_through_the_reflector(daemon) -> None:
    """Two 'ranges' of 6 free ports each; one port is held by another socket (a call)."""
    base = _free_block(12)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", base + 3))
    r = Reflector(host="127.0.0.1", port=0, token=TOKEN, allowed_ranges=[(base, base + 11)])
    rport = await r.start()
    try:
        run = await vtcprobe("ports", "127.0.0.1", "--sip-tls-port", str(daemon.ports["sip_tls"]),
                             "--h323-port", str(daemon.ports["h323"]), "--reflector-port", str(rport),
                             "--token", TOKEN, "--media-range", f"{base}-{base + 5}",
                             "--h323-media-range", f"{base + 6}-{base + 13}", "--samples", "6", "--json")
    finally:
        await r.close()
        busy.close()
    d = run.json()
    rngs = {x["name"]: x for x in d["udp"]["ranges"]}
    sip = {p["port"]: p["state"] for p in rngs["sip-media"]["ports"]}
    assert sip[base + 3].startswith("not opened")
    assert all(s == "reachable" for p, s in sip.items() if p != base + 3)
    h = {p["port"]: p["state"] for p in rngs["h323-media"]["ports"]}
    assert h[base + 13].startswith("not opened")  # the range's top end is outside the reflector's range
    assert h[base + 6] == "reachable"
    assert all(s == "reachable" for p, s in h.items() if p <= base + 11)
    assert run.status == 0, run.stdout  # ports it could not open are reported, not counted as failures


async def test_udp_with_wrong_token_fails_and_usage_errors(daemon) -> None:
    r = Reflector(host="127.0.0.1", port=0, token=TOKEN)
    rport = await r.start()
    try:
        run = await vtcprobe("ports", "127.0.0.1", "--sip-tls-port", str(daemon.ports["sip_tls"]),
                             "--h323-port", str(daemon.ports["h323"]), "--reflector-port", str(rport),
                             "--token", "the-wrong-token", "--samples", "2", "--timeout", "0.6", "--json")
    finally:
        await r.close()
    assert run.status == 1
    assert not next(c for c in run.json()["checks"] if c["name"] == "udp reflector answers")["ok"]
    bad = await vtcprobe("ports", "no-such-host.invalid")
    assert bad.status == 2 and "cannot resolve" in bad.stderr
    notoken = await vtcprobe("ports", "127.0.0.1", "--reflector-port", "9", "--sip-tls-port", str(free_port()))
    assert notoken.status == 2 and "--token" in notoken.stderr


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 65000), width=st.integers(0, 60000), n=st.integers(1, 40), seed=st.integers(0, 9))
def test_sample_ports_property(low: int, width: int, n: int, seed: int) -> None:
    high = min(65535, low + width)
    got = sample_ports(low, high, n, random.Random(seed))
    assert got == sorted(set(got))
    assert all(low <= p <= high for p in got)
    assert len(got) == min(n, 32, high - low + 1)
    if len(got) >= 2:
        assert got[0] == low and got[-1] == high


def _free_block(n: int) -> int:
    """A run of n ports that are all free right now (UDP)."""
    for _ in range(50):
        base = free_port(socket.SOCK_DGRAM)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")
