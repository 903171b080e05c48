"""The daemon: composes the services, prints the ready line, drains on signals.

Life cycle
- start: data dir, first-start certificate and API token, meeting store, media
  plane, SIP and H.323 services, admin API. Port 0 binds a free port; once every
  listener is up, one JSON line goes to stdout:
  ``{"event": "ready", "pid": ..., "sip_tls": 5061, "h323": 1720, "api": 8080, ...}``.
- SIGTERM/SIGINT: stop taking new calls (SIP 503 + Retry-After, H.323 release
  cause 42), /readyz turns 503, calls may go on for ``drain_s``; then every call is
  hung up and the process exits 0. A second SIGINT/SIGTERM skips the wait.
- SIGHUP: reload the TLS certificate (and log level) from the same sources.

A listener that cannot bind (port in use, no permission) ends start-up with a
:class:`ConfigError` naming the key, which the CLI turns into exit status 2.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import logs
from gateway.api.app import build_app
from gateway.config import Config, ConfigError
from gateway.meetings.store import SQLiteMeetingStore
from gateway.metrics import Metrics
from gateway.tlsconf import CertificateError, ensure_generated_pairs, ensure_self_signed, server_context

log = logs.get_logger("vtcgw.daemon")


def _bind_error(key: str, exc: OSError, port: int | None) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(key, f"port {port} is already in use")
    if exc.errno == errno.EACCES:
        return ConfigError(key, f"no permission to bind port {port}")
    return ConfigError(key, f"cannot bind port {port}: {exc.strerror or exc}")


def _sip_settings(c: Config, pairs: list[tuple[Path, Path]]) -> Any:
    from gateway.sip.settings import SipSettings

    (cert, key), *extra = pairs
    return SipSettings(
        bind_host=c.bind_host, advertise_host=c.media_advertise_host, tls_port=c.sip_tls_port,
        tcp_port=c.sip_tcp_port, udp_port=c.sip_udp_port, cert_path=str(cert), key_path=str(key),
        extra_cert_paths=tuple((str(ec), str(ek)) for ec, ek in extra),
        client_ca_path=str(c.tls_client_ca) if c.tls_client_ca else None,
        require_client_cert=c.tls_client_ca is not None, require_srtp_on_tls=c.require_srtp_on_tls,
        session_expires_s=c.session_expires_s, min_se_s=c.min_se_s, rate_limit_per_source=c.sip_rate_limit,
        domains=frozenset(c.sip_domains), node_id=c.node_id, region=c.region)


def _api_token(config: Config) -> str:
    if config.api_token:
        return config.api_token
    path = config.data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class Gateway:
    """Everything one node runs, started and stopped in order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.draining = False
        self.started = False
        self.ports: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.store: SQLiteMeetingStore | None = None
        self.media: Any = None
        self.sip: Any = None
        self.h323: Any = None
        self.app: Any = None
        self.reflector: Any = None

    def _tls_pairs(self) -> list[tuple[Path, Path]]:
        """(certificate, key) pairs to serve, one per key type, the primary first: the
        configured ones, else the generated RSA pair and the ECDSA pair beside it
        (gateway.tlsconf.ensure_generated_pairs); tls_cert2/tls_key2 replace the second."""
        c = self.config
        first = (c.path("tls_cert"), c.path("tls_key"))
        if c.tls_cert2 is not None:
            if c.tls_cert is None:
                ensure_self_signed(*first)
            return [first, (c.path("tls_cert2"), c.path("tls_key2"))]
        return ensure_generated_pairs(*first) if c.tls_cert is None else [first]

    def ssl_context(self) -> Any:
        (cert, key), *extra = self._tls_pairs()
        try:
            return server_context(cert, key, self.config.tls_client_ca, extra_certs=extra)
        except CertificateError as exc:
            raise ConfigError("tls_cert2" if extra and str(extra[0][0]) in str(exc) else "tls_cert",
                              str(exc)) from None

    async def start(self) -> dict[str, int]:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        self.ssl_context()  # fail early, naming tls_cert, if the certificate is unusable
        self.store = SQLiteMeetingStore(c.path("database"))
        from gateway.h323.service import H323Service, H323Settings
        from gateway.meetings.application import MeetingsApplication
        from gateway.rtp.plane import MediaPlane
        from gateway.sip.service import SipService

        self.media = MediaPlane(sip_range=c.media_range, h323_range=c.h323_media_range,
                                bind_host=c.bind_host, advertise_host=c.media_advertise_host,
                                quarantine_s=c.media_quarantine_s, media_timeout_s=c.media_timeout_s)
        self.media.on_tick = self.metrics.observe_tick
        await self.media.start()
        self.app = MeetingsApplication(config=c, store=self.store, media=self.media,
                                       metrics=self.metrics, draining=lambda: self.draining)
        await self.app.start()
        if c.reflector_port is not None:
            await self._start_reflector()
        if any(p is not None for p in (c.sip_tls_port, c.sip_tcp_port, c.sip_udp_port)):
            self.sip = SipService(_sip_settings(c, self._tls_pairs()), self.app, self.media,
                                  metrics=self.metrics.adapter_view())
            try:
                self.ports.update(await self.sip.start())
            except OSError as exc:
                key = getattr(exc, "config_key", "sip_tls_port")
                raise _bind_error(key, exc, getattr(c, key)) from None
        if c.h323_port is not None:
            self.h323 = H323Service(H323Settings.from_config(c), self.app, self.media,
                                    metrics=self.metrics.adapter_view())
            try:
                self.ports.update(await self.h323.start())
            except OSError as exc:
                raise _bind_error("h323_port", exc, c.h323_port) from None
        api = build_app(token=_api_token(c), store=self.store, metrics_=self.metrics,
                        ready=lambda: self.started and not self.draining,
                        extra_routes=self.app.add_routes)
        self._runner = web.AppRunner(api, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, c.api_host, c.api_port, reuse_address=False)
        try:
            await site.start()
        except OSError as exc:
            raise _bind_error("api_port", exc, c.api_port) from None
        self.ports["api"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.started = True
        return self.ports

    async def _start_reflector(self) -> None:
        from gateway.reflector import Reflector
        from gateway.rtp.types import Pool

        c = self.config
        for pool in (Pool.SIP, Pool.H323):  # calls never get the reflector's port pair
            r = self.media.allocator(pool).range
            if c.reflector_port and r.low <= c.reflector_port <= r.high:
                self.media.allocator(pool).reserve(c.reflector_port)
        self.reflector = Reflector(host=c.bind_host, port=c.reflector_port or 0, token=c.reflector_token or "",
                                   allowed_ranges=[(r.low, r.high) for r in (c.media_range, c.h323_media_range)],
                                   per_source_pps=c.reflector_rate_pps, total_pps=c.reflector_total_pps)
        try:
            self.ports["reflector"] = await self.reflector.start()
        except OSError as exc:
            raise _bind_error("reflector_port", exc, c.reflector_port) from None

    def stop_accepting(self) -> None:
        self.draining = True
        for svc in (self.sip, self.h323):
            if svc is not None:
                svc.stop_accepting()

    def active_calls(self) -> int:
        return self.app.active_calls() if self.app is not None else 0

    async def close(self) -> None:
        for svc in (self.sip, self.h323):
            if svc is not None:
                await svc.close()
        if self.reflector is not None:
            await self.reflector.close()
        if self.app is not None:
            await self.app.close()
        if self.media is not None:
            await self.media.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            self.store.close()

    def reload(self) -> None:
        if self.sip is not None:
            (cert, key), *extra = self._tls_pairs()
            try:
                self.ssl_context()  # validate before touching the live context
                self.sip.reload_tls(str(cert), str(key), tuple((str(c), str(k)) for c, k in extra))
            except (ConfigError, ValueError) as exc:
                log.error("tls reload failed; keeping the old certificate", error=str(exc))
                return
            log.info("tls reloaded", cert=str(cert))


async def serve(config: Config, *, shutdown_trigger: asyncio.Event | None = None, out: Any = None) -> int:
    out = out or sys.stdout
    gw = Gateway(config)
    stop = shutdown_trigger or asyncio.Event()
    force = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(signame: str) -> None:
        if stop.is_set():
            log.warning("second signal: not waiting for calls", signal=signame)
            force.set()
        else:
            log.info("draining", signal=signame, drain_s=config.drain_s)
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, gw.reload)
    try:
        try:
            ports = await gw.start()
        except BaseException:
            await gw.close()
            raise
        tune_runtime()
        print(json.dumps({"event": "ready", "pid": os.getpid(), **ports}), file=out, flush=True)
        log.info("ready", **ports)
        await stop.wait()
        gw.stop_accepting()
        if gw.app is not None and gw.active_calls():
            waits = {asyncio.ensure_future(gw.app.idle.wait()), asyncio.ensure_future(force.wait())}
            _, pending = await asyncio.wait(waits, timeout=config.drain_s, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
        log.info("stopping", calls_left=gw.active_calls())
        await gw.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


GC_THRESHOLDS = (10_000, 5, 1_000)


def tune_runtime() -> None:
    """Once started: what start-up loaded (modules, config, TLS, the meeting cache) moves to
    the collector's permanent generation, and the young generation is collected per 10,000
    allocations instead of 700. Every call allocates thousands of short-lived objects (parsed
    headers, transactions, SDP); with the defaults each call paid several young passes plus
    full passes over every live transaction (~6% of call set-up in bench_sip's profile).
    The middle generation is collected every 5 young passes: each survivor (transactions
    lingering for Timer I/J) is scanned by exactly one such pass whatever the threshold, so a
    small one splits the same work into short pauses; at 50, 2,000 calls/s over UDP piled
    260,000 objects into one 120 ms pause, the SRD p99. Full passes stay as rare as before
    (every 5,000 young passes).
    (The malloc side is set at process start: gateway.cli.fix_mmap_threshold.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(config: Config) -> int:
    import uvloop

    logs.configure(fmt=config.log_format, level=config.log_level)
    try:
        return uvloop.run(serve(config))
    except ConfigError as exc:
        print(f"vtcgw: {exc}", file=sys.stderr)
        return 2
