"""What one TLS handshake costs the gateway's server, apart from everything SIP does.

Two processes (each pinned by the caller): ``serve`` runs a uvloop TLS server with the
gateway's own context (`gateway.tlsconf.server_context`, the certificate pairs of a
data directory) that echoes one line and reports its process CPU time on request;
``drive`` opens connections to it, ``concurrency`` at a time, each a full handshake or
(``--resume``) offering the last session, optionally as a legacy TLS 1.2 ECDHE-RSA
client, and prints JSON: server and client CPU ms per handshake, how many resumed, the
version and suite. The SIP figures of the same variants are bench_load's setup rate.

    python -m benchmarks.load.tls_handshakes serve DIR {rsa,dual}
    python -m benchmarks.load.tls_handshakes drive PORT [--resume] [--tls12] [--legacy-rsa] [-n N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import uvloop

from benchmarks.load.sip_transport import client_tls_context

CPU_QUERY = b"cpu?\n"


async def _serve(data: Path, certs: str, num_tickets: int | None = None) -> None:
    from gateway.tlsconf import companion_paths, server_context

    cert, key = data / "cert.pem", data / "key.pem"
    extra = [companion_paths(cert, key)] if certs == "dual" else []
    ctx = server_context(cert, key, extra_certs=extra, require_client_cert=False)
    if num_tickets is not None:  # experiments: TLS 1.3 tickets sent after each handshake
        ctx.num_tickets = num_tickets

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(f"{time.process_time()}\n".encode() if data == CPU_QUERY else data)  # type: ignore[attr-defined]

    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=ctx, backlog=1024)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def _drive(port: int, n: int, resume: bool, tls12: bool, legacy_rsa: bool, concurrency: int) -> dict:
    import ssl

    ctx = client_tls_context(resume=resume, legacy_rsa=legacy_rsa)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    resumed = 0
    info: tuple[str, str] = ("", "")

    async def one(line: bytes = b"x\n") -> bytes:
        nonlocal info
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="")
        writer.write(line)
        answer = await reader.readline()  # after the answer, TLS 1.3 tickets have arrived
        sslobj = writer.get_extra_info("ssl_object")
        info = (sslobj.version() or "", sslobj.cipher()[0])
        if resume:
            ctx.session = sslobj.session  # type: ignore[attr-defined]
        writer.close()
        return answer if line == CPU_QUERY else b"r" if sslobj.session_reused else b""

    await one()  # warm: the first session to resume
    sem = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        nonlocal resumed
        async with sem:
            got = await one()  # not `resumed += await ...`: that reads `resumed` before awaiting
            resumed += got == b"r"

    s0, c0 = float(await one(CPU_QUERY)), time.process_time()
    await asyncio.gather(*(limited() for _ in range(n)))
    s1, c1 = float(await one(CPU_QUERY)), time.process_time()
    return {"handshakes": n, "resumed": resumed, "tls": f"{info[0]} {info[1]}",
            "server_cpu_ms_per_handshake": round(1000 * (s1 - s0) / (n + 1), 3),
            "client_cpu_ms_per_handshake": round(1000 * (c1 - c0) / (n + 1), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("data", type=Path, help="folder with cert.pem/key.pem (and cert-ecdsa.pem/key-ecdsa.pem)")
    s.add_argument("certs", choices=["rsa", "dual"])
    s.add_argument("--num-tickets", type=int, default=None, help="override the context's TLS 1.3 tickets")
    d = sub.add_parser("drive")
    d.add_argument("port", type=int)
    d.add_argument("-n", type=int, default=1000)
    d.add_argument("--resume", action="store_true")
    d.add_argument("--tls12", action="store_true")
    d.add_argument("--legacy-rsa", action="store_true")
    d.add_argument("--concurrency", type=int, default=8)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        uvloop.run(_serve(a.data, a.certs, a.num_tickets))
        return 0
    print(json.dumps(uvloop.run(_drive(a.port, a.n, a.resume, a.tls12, a.legacy_rsa, a.concurrency))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
