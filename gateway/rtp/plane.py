"""The media plane: port pools, legs, conferences, relays and plane-wide counters.

No protocol logic lives here: each leg's rules are in :class:`gateway.rtp.session.RtpSession`
(latching, RTCP, DTMF, timeout), its sockets in :mod:`gateway.rtp.leg`, and a meeting's media
in :mod:`gateway.rtp.conference`.

Public API (what signalling and the meetings application call)::

    plane = MediaPlane(sip_range, h323_range, bind_host, advertise_host,
                       quarantine_s=30.0, media_timeout_s=30.0)
    await plane.start()
    leg = plane.open_leg(call_id, MediaKind.AUDIO, Pool.SIP)   # raises PortsExhausted
    leg.local_rtp_port, leg.local_rtcp_port, plane.advertise_host  # -> SDP
    leg.on_dtmf = lambda digit: ...          # RFC 4733, one call per key press
    leg.on_timeout = lambda reason: ...      # "no audio RTP for 30 s" (audio legs only)
    leg.on_keyframe_request_fallback = ...   # no FIR/PLI negotiated: send SIP INFO / H.245 VFU
    leg.configure(LegConfig(...))            # after offer/answer; again on re-INVITE (idempotent)
    leg.request_keyframe() -> KeyframeMethod
    leg.stats() -> LegStats                  # cust2vc / vc2cust figures, RTT, MOS
    conf = plane.conference(meeting_key)     # created on demand, dropped when empty
    conf.join(pid, audio=leg, video=vleg); conf.leave(pid)
    conf.set_muted(pid, b); conf.set_lobby(pid, b); conf.play(pid, pcm, rate, loop=False)
    conf.play_all(pcm, rate); conf.request_keyframe(pid); conf.active_speaker; conf.on_mix = f
    plane.relay(leg_a, leg_b); plane.unrelay(leg_a)   # two-party forwarding, no mixing
    plane.counters() -> PlaneCounters
    leg.close()                              # RTCP BYE; ports go to quarantine
    await plane.close()

Quality: every leg's packet rows are pooled into one :class:`gateway.quality.engine.QualityEngine`
(it vectorizes across streams) every ``QUALITY_FLUSH_S`` or when stats are read.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.quality.engine import QualityEngine
from gateway.rtp.leg import HAVE_BATCH, DirectionStats, LegStats, RtpLeg, _bind_udp, _ub
from gateway.rtp.ports import PortAllocator, PortRange, PortsExhausted
from gateway.rtp.types import MediaKind, Pool

if TYPE_CHECKING:
    from gateway.rtp.conference import Conference
    from gateway.rtp.mixengine import MixEngine
    from gateway.rtp.relayhub import RelayHub

__all__ = ["DirectionStats", "LegStats", "MediaPlane", "PlaneCounters", "PortsExhausted", "RtpLeg"]

log = structlog.get_logger(__name__)

QUALITY_FLUSH_S = 2.0
FORGET_AFTER_S = 10.0  # a closed leg's quality state is dropped this long after release


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaneCounters:
    legs_open: int
    exhausted: int
    bind_failures: int
    stray_dropped: int
    malformed_dropped: int
    srtp_failures: int


class MediaPlane:
    def __init__(
        self,
        sip_range: PortRange,
        h323_range: PortRange,
        bind_host: str,
        advertise_host: str,
        quarantine_s: float = 30.0,
        media_timeout_s: float = 30.0,
        *,
        mix_talkers: int = 4,
        use_batch: bool | None = None,
    ) -> None:
        # conference tick observer: (tick duration s, lateness vs its 20 ms slot s)
        self.on_tick: Callable[[float, float], None] | None = None
        self.bind_host = bind_host
        self.advertise_host = advertise_host
        self.media_timeout_s = media_timeout_s
        self.mix_talkers = mix_talkers
        self._allocators = {
            Pool.SIP: PortAllocator(sip_range, quarantine_s=quarantine_s),
            Pool.H323: PortAllocator(h323_range, quarantine_s=quarantine_s),
        }
        if sip_range.overlaps(h323_range):
            self._allocators[Pool.H323] = self._allocators[Pool.SIP]
        self.legs: dict[int, RtpLeg] = {}
        self.conferences: dict[str, Conference] = {}
        self.bind_failures = 0
        self._closed_stray = self._closed_malformed = self._closed_srtp = 0
        self.ntp_offset_s = time.time() - time.monotonic()
        self.clock_offset_ns = time.time_ns() - time.monotonic_ns()  # kernel stamps -> monotonic
        self._loop: asyncio.AbstractEventLoop | None = None
        self.use_batch = HAVE_BATCH if use_batch is None else (use_batch and _ub is not None)
        # created on first use: the shared G.711 mixer (gateway.rtp.mixengine) and the relay
        # hub (gateway.rtp.relayhub); use_relay_hub None: the hub's own default
        self._mix_engine: MixEngine | None = None
        self._relay_hub: RelayHub | None = None
        self.use_relay_hub: bool | None = None
        self.batch_buffers = _ub.BatchBuffers(64, 2048) if self.use_batch else None
        # relay_batch's per-row verdicts for the shared batch buffers (one batch at a time)
        self.batch_accepted = np.zeros(
            self.batch_buffers.capacity if self.batch_buffers is not None else 0, np.uint8
        )
        # one engine for every leg: it vectorizes across streams, so legs' rows are pooled
        # and folded in together (QUALITY_FLUSH_S, or when someone reads stats)
        self.quality = QualityEngine()
        self._quality_rows: list[tuple[int, np.ndarray]] = []
        self._quality_known: set[int] = set()
        self._quality_timer: asyncio.TimerHandle | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._quality_timer is not None:
            self._quality_timer.cancel()
            self._quality_timer = None
        for conf in list(self.conferences.values()):
            await conf.aclose()
        for leg in list(self.legs.values()):
            leg.close()

    def allocator(self, pool: Pool) -> PortAllocator:
        return self._allocators[pool]

    def open_leg(self, call_id: str, kind: MediaKind, pool: Pool) -> RtpLeg:
        """Bind an RTP/RTCP pair from the pool's range; raises PortsExhausted when none binds."""
        alloc = self._allocators[pool]
        tries = alloc.range.pairs()
        for _ in range(tries):
            pair = alloc.allocate(time.monotonic())  # raises PortsExhausted (counted there)
            try:
                rtp = _bind_udp(self.bind_host, pair.rtp)
            except OSError:
                self.bind_failures += 1
                alloc.release(pair, time.monotonic())
                continue
            try:
                rtcp = _bind_udp(self.bind_host, pair.rtcp)
            except OSError:
                rtp.close()
                self.bind_failures += 1
                alloc.release(pair, time.monotonic())
                continue
            leg = RtpLeg(self, call_id, kind, pool, pair, rtp, rtcp)
            self.legs[leg.id] = leg
            return leg
        alloc.exhausted_count += 1
        raise PortsExhausted(f"no bindable media port pair in {alloc.range}")

    def _quality_pending(
        self, leg_id: int, rows: np.ndarray, clock_rate: int, encoding: str | None
    ) -> None:
        if leg_id not in self._quality_known:
            self._quality_known.add(leg_id)
            self.quality.stream_id(leg_id, clock_rate=clock_rate, encoding=encoding)
        self._quality_rows.append((leg_id, rows))
        if self._quality_timer is None and self._loop is not None:
            self._quality_timer = self._loop.call_later(QUALITY_FLUSH_S, self.quality_flush)

    def quality_flush(self) -> None:
        if self._quality_timer is not None:
            self._quality_timer.cancel()
            self._quality_timer = None
        rows, self._quality_rows = self._quality_rows, []
        if rows:
            self.quality.update_streams(rows)

    def relay(self, a: RtpLeg, b: RtpLeg) -> None:
        """Forward media between two legs as-is (two-party call, no mixing or transcoding).

        Telephone-events are still taken out and reported by each leg's ``on_dtmf``; RTCP stays
        terminated per leg. With recvmmsg available, clean batches are forwarded with one
        sendmmsg and no per-packet Python; with the relay hub (gateway.rtp.relayhub, the
        default with the native build) every relayed leg is read on one epoll reader."""
        a.relay_peer, b.relay_peer = b, a
        a.media_sink = lambda _leg, data, _t: b.send_forwarded(data)
        b.media_sink = lambda _leg, data, _t: a.send_forwarded(data)
        from gateway.rtp import relayhub

        if relayhub.wanted(self):
            hub = self._relay_hub
            if hub is None:
                hub = self._relay_hub = relayhub.RelayHub(self)
            hub.join(a, b)

    def unrelay(self, leg: RtpLeg) -> None:
        """Undo :meth:`relay` for the pair ``leg`` is in (e.g. the call moves into a meeting)."""
        hub = self._relay_hub
        if hub is not None:
            hub.leave(leg)  # figures folded in, both legs read their own sockets again
        peer = leg.relay_peer
        for x in (leg, peer):
            if x is not None:
                x.relay_peer = None
                x.media_sink = None

    def _release(self, leg: RtpLeg) -> None:
        if self.legs.pop(leg.id, None) is None:
            return
        self._closed_stray += leg.session.stray_dropped
        self._closed_malformed += leg.session.malformed_dropped
        self._closed_srtp += leg.srtp_failures
        self._allocators[leg.pool].release(leg.pair, time.monotonic())
        if self._loop is not None:  # final figures are still read just after close (CDR, quality log)
            self._loop.call_later(FORGET_AFTER_S, self._forget_quality, leg.id)

    def _forget_quality(self, leg_id: int) -> None:
        self.quality_flush()
        self._quality_known.discard(leg_id)
        self.quality.forget(leg_id)

    def conference(self, key: str) -> Conference:
        """The meeting's conference, created on first use; it removes itself when empty."""
        conf = self.conferences.get(key)
        if conf is None:
            from gateway.rtp.conference import Conference

            conf = Conference(self, key, max_talkers=self.mix_talkers)
            self.conferences[key] = conf
        return conf

    def _conference_empty(self, key: str) -> None:
        self.conferences.pop(key, None)

    @property
    def mix_engine(self) -> MixEngine | None:
        """The shared 20 ms mixer of every G.711 audio-only meeting (created on first use);
        None when turned off (``VTCGW_NO_MIX_ENGINE=1``): each meeting then ticks alone."""
        engine = self._mix_engine
        if engine is None and not os.environ.get("VTCGW_NO_MIX_ENGINE"):
            from gateway.rtp.mixengine import MixEngine

            engine = self._mix_engine = MixEngine(self)
        return engine

    def counters(self) -> PlaneCounters:
        legs = list(self.legs.values())
        exhausted = sum(
            a.exhausted_count for a in {id(a): a for a in self._allocators.values()}.values()
        )
        return PlaneCounters(
            legs_open=len(legs),
            exhausted=exhausted,
            bind_failures=self.bind_failures,
            stray_dropped=self._closed_stray + sum(leg.session.stray_dropped for leg in legs),
            malformed_dropped=self._closed_malformed
            + sum(leg.session.malformed_dropped for leg in legs),
            srtp_failures=self._closed_srtp + sum(leg.srtp_failures for leg in legs),
        )
