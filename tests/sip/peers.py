"""Fixtures for real-peer tests: a running SipService on ephemeral ports, a TLS certificate,
and runners for the pjsua2 agent, SIPp and baresip subprocesses (stopped by PID)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.rtp.plane import MediaPlane
from gateway.rtp.ports import PortRange
from gateway.sip.metrics import CountingMetrics
from gateway.sip.service import SipService
from gateway.sip.settings import SipSettings
from tests.conftest import PYTHON, ROOT
from tests.sip.helpers import RecordingApp


def make_cert(directory: Path) -> tuple[str, str]:
    """A self-signed RSA certificate for 127.0.0.1 (pjsua2's OpenSSL 1.0.2 does TLS 1.2 + ECDHE-RSA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class RecordingPlane:
    """The real MediaPlane, with every leg and every LegConfig it was given recorded."""

    def __init__(self, plane: MediaPlane) -> None:
        self.plane = plane
        self.legs: list[Any] = []
        self.configs: dict[int, list[Any]] = {}

    def open_leg(self, call_id: str, kind: Any, pool: Any) -> Any:
        leg = self.plane.open_leg(call_id, kind, pool)
        self.legs.append(leg)
        log = self.configs.setdefault(id(leg), [])
        original = leg.configure

        def configure(cfg: Any) -> None:
            log.append(cfg)
            original(cfg)

        leg.configure = configure
        return leg


@dataclass
class Gateway:
    service: SipService
    app: RecordingApp
    media: RecordingPlane
    metrics: CountingMetrics
    ports: dict[str, int]
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)

    async def wait(self, kind: str, timeout: float = 10.0) -> Any:
        """Next app event of ``kind`` ("connected", "ended", "digit")."""
        async with asyncio.timeout(timeout):
            while True:
                k, v = await self.events.get()
                if k == kind:
                    return v


@contextlib.asynccontextmanager
async def running_gateway(settings: SipSettings, *, app: RecordingApp | None = None,
                          media_range: tuple[int, int] = (21000, 29000)) -> AsyncIterator[Gateway]:
    plane = MediaPlane(PortRange(low=media_range[0], high=media_range[1]), PortRange(low=media_range[1] + 2, high=media_range[1] + 100),
                       "127.0.0.1", "127.0.0.1", quarantine_s=1.0)
    await plane.start()
    app = app or RecordingApp()
    media = RecordingPlane(plane)
    metrics = CountingMetrics()
    service = SipService(settings, app, media, metrics=metrics)
    gw = Gateway(service=service, app=app, media=media, metrics=metrics, ports={})
    app.on_connected = lambda call, control: gw.events.put_nowait(("connected", (call, control)))
    app.on_ended = lambda call_id, reason: gw.events.put_nowait(("ended", (call_id, reason)))
    app.on_digit = lambda call_id, digit, source: gw.events.put_nowait(("digit", (digit, source)))
    try:
        gw.ports = await service.start()
        yield gw
    finally:
        await service.close()
        await plane.close()


def settings_for_tests(**kw: Any) -> SipSettings:
    base = SipSettings(bind_host="127.0.0.1", advertise_host="127.0.0.1", tls_port=None, tcp_port=0, udp_port=0,
                       rate_limit_per_source=None)
    return replace(base, **kw)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()


async def run_agent(spec: dict[str, Any], *, timeout: float = 30.0,
                    ready: asyncio.Event | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run probes.pjsip_agent with ``spec``; return (exit status, JSON events). ``ready`` is set
    when the agent reports its SIP port bound."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "probes.pjsip_agent", "--spec", json.dumps(spec), cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            assert proc.stdout is not None
            async for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
                    if ready is not None and events[-1].get("event") == "ready":
                        ready.set()
            await proc.wait()
    finally:
        await stop(proc)
    return proc.returncode or 0, events


async def run_sipp(args: list[str], *, cwd: Path, timeout: float = 60.0) -> tuple[int, str]:
    from tests.conftest import require_binary

    sipp = require_binary("sipp")
    proc = await asyncio.create_subprocess_exec(sipp, *args, "-nostdin", cwd=str(cwd),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    finally:
        await stop(proc)
    return proc.returncode or 0, out.decode("utf-8", "replace")
