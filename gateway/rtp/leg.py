"""One RTP leg's asyncio adapter: its two UDP sockets, timer, SRTP and relay fast paths.

The rules live in :class:`gateway.rtp.session.RtpSession`; this module moves datagrams
between the sockets and the session and calls the application's callbacks
(``on_dtmf``, ``on_timeout``, ``on_keyframe_request_fallback``). See
:mod:`gateway.rtp.plane` for the public API overview.

Reading: a non-blocking socket drained on ``loop.add_reader``, either by a recvmmsg batch
reader (``gateway.rtp.udpbatch``, native build) or a ``recvfrom`` loop. A relayed leg
(:meth:`MediaPlane.relay`) forwards clean media from its latched source without the event
machinery: each batch goes through ``udpbatch.relay_batch`` (one C call: match, log, sendmmsg).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.quality.engine import StreamSummary
from gateway.rtp.ports import PortPair
from gateway.rtp.reception import pt_mask
from gateway.rtp.session import (
    Channel,
    DigitReceived,
    KeyframeMethod,
    KeyframeRequested,
    MediaTimedOut,
    RtpSession,
    Verdict,
)
from gateway.rtp.srtp import SrtpContext, SrtpError
from gateway.rtp.types import LegConfig, MediaKind, Pool

if TYPE_CHECKING:
    from gateway.rtp.plane import MediaPlane

__all__ = ["HAVE_BATCH", "DirectionStats", "LegStats", "RtpLeg"]

log = structlog.get_logger(__name__)

READ_BUDGET = 256  # datagrams per reader wake-up before yielding to the loop
try:  # recvmmsg/sendmmsg batching (native/udpbatch.c); the recvfrom loop is the fallback
    from gateway.rtp import udpbatch as _ub

    HAVE_BATCH = _ub.HAVE_NATIVE
except ImportError:  # pragma: no cover - the module ships with the package
    _ub = None  # type: ignore[assignment]
    HAVE_BATCH = False
_leg_ids = itertools.count(1)
_SEQ_TS_SSRC = struct.Struct("!HII")


def _addr_slot(addr: tuple) -> bytes:
    """An address as the 28-byte kernel sockaddr slot the batch calls compare and send to."""
    slot = np.zeros(1, _ub.ADDR_DTYPE)
    _ub.set_addr(slot, 0, addr)
    return slot.tobytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectionStats:
    rtp_packets: int
    rtp_bytes: int
    rtcp_packets: int
    rtcp_bytes: int
    packets_lost: int | None
    jitter_us: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegStats:
    """One leg's quality snapshot (SPEC.md per-call media figures; cust = device)."""

    call_id: str
    kind: MediaKind
    local_rtp_port: int
    remote: tuple[str, int] | None
    cust2vc: DirectionStats  # device -> gateway, measured by us
    vc2cust: DirectionStats  # gateway -> device, from the device's RTCP RR
    rtt_us: int | None
    mos: float | None  # estimated from the device->gateway stream (gateway.quality)
    stray_dropped: int
    malformed_dropped: int
    srtp_failures: int


def _bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.bind((host, port))
    except OSError:
        s.close()
        raise
    return s


class RtpLeg:
    """One m-line's UDP sockets and RTP session."""

    def __init__(
        self,
        plane: MediaPlane,
        call_id: str,
        kind: MediaKind,
        pool: Pool,
        pair: PortPair,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
    ) -> None:
        self.plane = plane
        self.call_id = call_id
        self.kind = kind
        self.pool = pool
        self.pair = pair
        self.id = next(_leg_ids)
        self._rtp_sock, self._rtcp_sock = rtp_sock, rtcp_sock
        self.session = RtpSession(
            kind=kind,
            cname=f"vtcgw-{self.id}@{plane.advertise_host}",
            media_timeout_s=plane.media_timeout_s,
            ntp_offset_s=plane.ntp_offset_s,
        )
        self.on_dtmf: Callable[[str, bool], None] | None = None  # (digit, suspect)
        self.on_timeout: Callable[[str], None] | None = None
        self.on_keyframe_request_fallback: Callable[[], None] | None = None
        # set by a Conference / relay: plaintext RTP of verdict MEDIA, with its arrival time
        self.media_sink: Callable[[RtpLeg, bytes, int], None] | None = None
        # set by a Conference: the device asked us for a keyframe (RTCP PLI/FIR)
        self.on_keyframe_requested: Callable[[RtpLeg], None] | None = None
        self._srtp: SrtpContext | None = None
        self.srtp_failures = 0
        self.send_failures = 0
        self.vector_batches = 0  # relay batches forwarded by relay_batch (one sendmmsg each)
        self.session.batch_sinks.append(self._feed_quality)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = False
        # relay (two-party, no mixing): media goes straight to the peer leg
        self.relay_peer: RtpLeg | None = None
        self._rtp_fd = rtp_sock.fileno()
        self._relay_for: tuple[str, int] | None = None  # latched source the two below are for
        self._relay_pts: frozenset[int] | None = None
        self._relay_expect = b""
        self._relay_mask = b""
        self._dest_slot = b""  # our rtp_dest as a sockaddr slot, when a peer relays to us
        self._dest_for: tuple[str, int] | None = None
        loop = plane.loop
        self._batch_reader = None
        if plane.use_batch:
            _ub.enable_timestamps(rtp_sock)
            self._batch_reader = _ub.add_batch_reader(
                loop, rtp_sock, self._on_rtp_batch, buffers=plane.batch_buffers
            )
        else:
            loop.add_reader(rtp_sock.fileno(), self._read, rtp_sock, Channel.RTP)
        loop.add_reader(rtcp_sock.fileno(), self._read, rtcp_sock, Channel.RTCP)

    # ----- public API ----------------------------------------------------------------
    @property
    def local_rtp_port(self) -> int:
        return self.pair.rtp

    @property
    def local_rtcp_port(self) -> int:
        return self.pair.rtcp

    @property
    def config(self) -> LegConfig | None:
        return self.session.cfg

    @property
    def ssrc(self) -> int:
        return self.session.ssrc

    def configure(self, cfg: LegConfig) -> None:
        """Apply negotiated media (idempotent; call again on re-INVITE/hold)."""
        if self.closed or cfg == self.session.cfg:
            return
        if cfg.srtp_tx is not None and cfg.srtp_rx is not None:
            cur = self._srtp
            if cur is None or cur.tx_params != cfg.srtp_tx or cur.rx_params != cfg.srtp_rx:
                self._srtp = SrtpContext(cfg.srtp_tx, cfg.srtp_rx)
        else:
            self._srtp = None
        old_dest = self.session.rtp_dest
        self.session.configure(cfg, time.monotonic())
        engine = self.plane._mix_engine
        if engine is not None:  # the mix engine carries this leg's fast path: look again
            engine.leg_changed(self)
        if self.session.rtp_dest != old_dest and self.kind is MediaKind.AUDIO:
            self._keepalive()
        self._flush()
        self._reschedule()

    def request_keyframe(self) -> KeyframeMethod:
        """Ask the device for an intra frame (FIR, else PLI, else the signalling fallback)."""
        method = self.session.request_keyframe(time.monotonic())
        self._flush()
        if method is KeyframeMethod.SIGNALLING and self.on_keyframe_request_fallback is not None:
            self.on_keyframe_request_fallback()
        return method

    def send_audio(self, *, pt: int, payload: bytes, ts_offset: int, marker: bool = False) -> None:
        self.session.send_rtp(
            pt=pt, payload=payload, ts_offset=ts_offset, marker=marker, now=time.monotonic()
        )
        self._flush()

    def send_forwarded(self, data: bytes) -> None:
        """Send an RTP packet whose header is already ours (video switch, relay)."""
        self.session.send_forwarded(data, time.monotonic())
        self._flush()

    def stats(self) -> LegStats:
        engine = self.plane._mix_engine
        if engine is not None:  # the mix engine holds rows and counters between its syncs
            engine.sync_leg(self)
        hub = self.plane._relay_hub
        if hub is not None:  # so does the relay hub (gateway.rtp.relayhub)
            hub.sync_leg(self)
        return _leg_stats(self)

    def take_reader(self) -> None:
        """Stop reading the RTP socket here: the mix engine drains it at each tick
        (gateway.rtp.mixengine) and hands back what it does not take through ``receive``."""
        if self._batch_reader is not None:
            self._batch_reader.close()
            self._batch_reader = None
        elif not self.closed:
            self.plane.loop.remove_reader(self._rtp_fd)

    def give_reader(self) -> None:
        """Read the RTP socket on the event loop again (undo :meth:`take_reader`)."""
        if self.closed or self._batch_reader is not None:
            return
        loop = self.plane.loop
        if self.plane.use_batch:
            self._batch_reader = _ub.add_batch_reader(
                loop, self._rtp_sock, self._on_rtp_batch, buffers=self.plane.batch_buffers
            )
        else:
            loop.remove_reader(self._rtp_fd)
            loop.add_reader(self._rtp_fd, self._read, self._rtp_sock, Channel.RTP)

    def close(self) -> None:
        if self.closed:
            return
        hub = self.plane._relay_hub
        if hub is not None:  # off the relay hub (figures folded in) before the socket closes
            hub.leave(self, closing=True)
        engine = self.plane._mix_engine
        if engine is not None:  # nor may the mix engine read its fd once it is closed
            engine.leg_closed(self)
        self.session.bye(time.monotonic())
        self._flush()
        self.closed = True
        loop = self.plane.loop
        if self._batch_reader is not None:
            self._batch_reader.close()
        else:
            loop.remove_reader(self._rtp_sock.fileno())
        loop.remove_reader(self._rtcp_sock.fileno())
        for s in (self._rtp_sock, self._rtcp_sock):
            s.close()
        if self.relay_peer is not None:
            self.relay_peer.relay_peer = None
            self.relay_peer.media_sink = None
            self.relay_peer = None
        if self._timer is not None:
            self._timer.cancel()
        self.plane._release(self)
        # what referred back to this leg (the session's quality sink, the reader's and the
        # timer's bound methods, the application's callbacks) goes now: the leg is freed by
        # reference counting when its call lets go, not in a collector pass that, at 1,500
        # calls/s, swept 100,000 such objects at once and stalled the loop for 200 ms
        self.session.fold_log()  # the last rows reach the quality engine (final figures)
        self.session.batch_sinks.clear()
        self._batch_reader = self._timer = None
        self.media_sink = self.on_dtmf = self.on_timeout = None
        self.on_keyframe_request_fallback = self.on_keyframe_requested = None

    # ----- I/O -----------------------------------------------------------------------
    def _keepalive(self) -> None:
        cfg = self.session.cfg
        if cfg is None or not cfg.codecs:
            return
        from gateway.rtp.codecs import silence_payload

        self.session.send_rtp(
            pt=cfg.codecs[0].payload_type,
            payload=silence_payload(cfg.codecs[0]),
            ts_offset=0,
            marker=True,
            now=time.monotonic(),
        )

    def _read(self, sock: socket.socket, channel: Channel) -> None:
        for _ in range(READ_BUDGET):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP port unreachable surfaces here on Linux
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                raise
            if (
                channel is not Channel.RTP
                or self.relay_peer is None
                or not self._relay_one(data, addr, time.monotonic_ns())
            ):
                self.receive(data, addr[:2], channel, time.monotonic_ns())
        self._flush()

    def _relay_one(self, data: bytes, addr: tuple, arrival_ns: int) -> bool:
        """Relay fast path for one datagram: plain media from the latched source goes to the
        peer with one log row and no event machinery. False: take the general path."""
        s = self.session
        peer = self.relay_peer
        n = len(data)
        if (
            addr != s.latched_rtp
            or n < 12
            or data[0] & 0xF0 != 0x80
            or self._srtp is not None
            or peer is None
            or peer._srtp is not None
            or peer.closed
            or not s.expects_media
        ):
            return False
        b1 = data[1]
        pt = b1 & 0x7F
        if pt not in s._media_pts:
            return False
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        s.log.append(arrival_ns, seq, ts, ssrc, pt, b1 > 127, n)
        s.rx_packets += 1
        s.rx_bytes += n
        now = arrival_ns / 1e9
        s.last_rx_at = now
        ps = peer.session
        dest = ps.rtp_dest
        if dest is not None and ps.sending:
            ps.tx_packets += 1
            ps.tx_bytes += n
            ps.tx_payload_bytes += n - 12
            ps._last_tx_ts, ps._last_tx_at, ps._sent_since_report = ts, now, True
            try:
                peer._rtp_sock.sendto(data, dest)
            except OSError as exc:  # UDP: a full buffer or ICMP error is loss, like the network's
                peer._send_failed(exc)
        return True

    def receive(
        self, data: bytes, addr: tuple[str, int], channel: Channel, arrival_ns: int
    ) -> None:
        """One datagram in (batch readers call this per datagram, then ``_flush``)."""
        s = self.session
        now = arrival_ns / 1e9
        if channel is Channel.RTP and not (
            s.cfg is not None and s.cfg.rtcp_mux and len(data) > 1 and 192 <= data[1] <= 223
        ):
            if self._srtp is not None:
                try:
                    data = self._srtp.unprotect(data)
                except SrtpError:
                    self.srtp_failures += 1
                    return
            verdict = s.receive_rtp(data, addr, now, arrival_ns)
            if verdict is Verdict.MEDIA:
                sink = self.media_sink
                if sink is not None:
                    sink(self, data, arrival_ns)
            elif verdict is Verdict.DTMF:
                self._dispatch_events()
                self._reschedule()
            return
        if self._srtp is not None:
            try:
                data = self._srtp.unprotect_rtcp(data)
            except SrtpError:
                self.srtp_failures += 1
                return
        s.receive_rtcp(data, addr, now)
        self._dispatch_events()

    def _on_rtp_batch(self, b, count: int) -> None:
        """A recvmmsg batch. A relay leg hands it to ``udpbatch.relay_batch`` (native/relay.c:
        plain media from the latched source is logged and sent to the peer in one call);
        whatever it does not accept, and every datagram of other legs, goes through
        ``receive``."""
        now_ns = time.monotonic_ns()
        off = self.plane.clock_offset_ns
        peer = self.relay_peer
        s = self.session
        if (
            peer is not None
            and s.latched_rtp is not None
            and self._srtp is None
            and peer._srtp is None
            and not peer.closed
            and s.expects_media
        ):
            if self._relay_for is not s.latched_rtp or self._relay_pts is not s._media_pts:
                self._relay_expect = _addr_slot(s.latched_rtp)
                self._relay_mask = bytes(1 if pt in s._media_pts else 0 for pt in range(128))
                self._relay_for, self._relay_pts = s.latched_rtp, s._media_pts
            ps = peer.session
            dest = ps.rtp_dest if ps.sending else None
            if dest is not None and peer._dest_for is not dest:
                peer._dest_slot, peer._dest_for = _addr_slot(dest), dest
            rows = s.log.reserve(count)
            acc = self.plane.batch_accepted
            n_acc, nbytes, n_sent, last_ts, err = _ub.relay_batch(
                b.buf, b.lengths, b.addrs, b.ts_ns, count, self._relay_expect,
                self._relay_mask, rows, acc, off, now_ns,
                peer._rtp_fd if dest is not None else -1,
                peer._dest_slot if dest is not None else None,
            )  # fmt: skip
            if n_acc:
                self.vector_batches += 1
                s.log.commit(n_acc)
                s.rx_packets += n_acc
                s.rx_bytes += nbytes
                now = now_ns / 1e9
                s.last_rx_at = now
                if dest is not None:
                    ps.note_forwarded_batch(n_acc, nbytes, last_ts, now)
                if err:
                    peer._send_failed(OSError(err, os.strerror(err)))
            if n_acc == count:
                return
            if n_acc:
                s.log.unordered = True  # the rest is logged after this batch's accepted rows
            for i in np.flatnonzero(acc[:count] == 0).tolist():
                ts = int(b.ts_ns[i])
                self.receive(
                    b.payload(i),
                    _ub.get_addr(b.addrs, i)[:2],
                    Channel.RTP,
                    ts - off if ts else now_ns,
                )
            self._flush()
            return
        for i in range(count):
            ts = int(b.ts_ns[i])
            arrival = ts - off if ts else now_ns
            self.receive(b.payload(i), _ub.get_addr(b.addrs, i)[:2], Channel.RTP, arrival)
        self._flush()

    def _flush(self) -> None:
        out = self.session.datagrams_to_send()
        if not out or self.closed:
            return
        srtp = self._srtp
        for channel, data, dest in out:
            if channel is Channel.RTP:
                sock = self._rtp_sock
                if srtp is not None:
                    data = srtp.protect(data)
            else:
                sock = (
                    self._rtp_sock
                    if self.session.cfg and self.session.cfg.rtcp_mux
                    else self._rtcp_sock
                )
                if srtp is not None:
                    data = srtp.protect_rtcp(data)
            try:
                sock.sendto(data, dest)
            except (BlockingIOError, InterruptedError):
                pass  # UDP: a full socket buffer is loss, like the network's
            except OSError as exc:
                self._send_failed(exc)

    def _send_failed(self, exc: OSError) -> None:
        """Count send errors (ICMP unreachable, full buffers); log only the first per leg."""
        self.send_failures += 1
        if self.send_failures == 1:
            log.info("rtp.send_failed", call_id=self.call_id, error=str(exc))

    def _dispatch_events(self) -> None:
        for ev in self.session.events():
            if isinstance(ev, DigitReceived):
                if self.on_dtmf is not None:
                    self.on_dtmf(ev.digit, ev.suspect)
            elif isinstance(ev, MediaTimedOut):
                log.info("rtp.media_timeout", call_id=self.call_id, reason=ev.reason)
                if self.on_timeout is not None:
                    self.on_timeout(ev.reason)
            elif isinstance(ev, KeyframeRequested) and self.on_keyframe_requested is not None:
                self.on_keyframe_requested(self)

    def _reschedule(self) -> None:
        if self.closed:
            return
        at = self.session.get_timer()
        if at is None or at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.plane.loop.call_later(max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.closed:
            return
        self.session.handle_timer(time.monotonic())
        self._flush()
        self._dispatch_events()
        self._reschedule()

    def _feed_quality(self, rows: np.ndarray, clock_rate: int) -> None:
        """Batch sink: the plane's quality engine gets every row once, off the hot path."""
        media = self.session.media_payload_types()
        if media:
            rows = rows[pt_mask(media)[rows["pt"]]]
        if len(rows):
            cfg = self.session.cfg
            enc = cfg.codecs[0].name if cfg and cfg.codecs else None
            self.plane._quality_pending(self.id, rows, clock_rate, enc)


def _quality_summary(leg: RtpLeg) -> StreamSummary | None:
    """The one call into gateway.quality (device->gateway stream summary with MOS)."""
    q = leg.plane.quality
    leg.plane.quality_flush()
    if leg.id not in leg.plane._quality_known:
        return None
    remote = leg.session.remote
    q.note_rtt(leg.id, remote.rtt_ms * 1000 if remote and remote.rtt_ms is not None else None)
    return q.summary(leg.id)


def _leg_stats(leg: RtpLeg) -> LegStats:
    """The one place that turns session state into the API's figures."""
    s = leg.session
    s.fold_log()
    rx = s.reception.snapshot()
    remote = s.remote
    summary = _quality_summary(leg)
    clock = s.clock_rate or 8000
    return LegStats(
        call_id=leg.call_id,
        kind=leg.kind,
        local_rtp_port=leg.local_rtp_port,
        remote=s.rtp_dest,
        cust2vc=DirectionStats(
            rtp_packets=s.rx_packets,
            rtp_bytes=s.rx_bytes,
            rtcp_packets=s.rtcp_rx_packets,
            rtcp_bytes=s.rtcp_rx_bytes,
            packets_lost=max(0, rx.lost) if rx.expected else None,
            jitter_us=rx.jitter_us if rx.expected else None,
        ),
        vc2cust=DirectionStats(
            rtp_packets=s.tx_packets,
            rtp_bytes=s.tx_bytes,
            rtcp_packets=s.rtcp_tx_packets,
            rtcp_bytes=s.rtcp_tx_bytes,
            packets_lost=remote.packets_lost if remote else None,
            jitter_us=int(remote.jitter_ts * 1e6 / clock) if remote else None,
        ),
        rtt_us=int(remote.rtt_ms * 1000) if remote and remote.rtt_ms is not None else None,
        mos=summary.mos.value if summary is not None and summary.mos is not None else None,
        stray_dropped=s.stray_dropped,
        malformed_dropped=s.malformed_dropped,
        srtp_failures=leg.srtp_failures,
    )
