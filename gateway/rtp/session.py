"""One leg's RTP session: latching, RTCP termination, DTMF, media timeout (sans-I/O).

Datagrams in (``receive_rtp`` / ``receive_rtcp`` with ``now``), datagrams out
(``datagrams_to_send()``), events out (``events()``), timers via
``get_timer()`` / ``handle_timer(now)``. ``now`` is monotonic seconds; wall-clock NTP time
is ``now + ntp_offset_s`` (the adapter measures the offset once).

Latching (symmetric RTP, the NAT rule; see INTEROP.md "one-way audio behind NAT"):
- Before a source is latched, a datagram is accepted only if it is valid RTP whose payload
  type was negotiated; the first such source is latched, and we send there from then on.
- The latch may move only within ``latch_window_s`` of the last configure() that changed
  the remote (a re-INVITE reopens it), and then only to the SDP address or after the latched
  source fell silent for ``RELATCH_QUIET_S`` (no flapping between two live sources). Outside
  the window, RTP from any other source is dropped and counted (``stray``): no injection.
- RTCP latches separately (to the source of the first valid RTCP from the latched host), or
  to the RTP source with rtcp-mux.

RTCP (RFC 3550 section 6): reports every 5 s x uniform(0.5, 1.5) / (e - 3/2); SR when we sent RTP since
the last report, else RR; one report block about the device's stream with LSR/DLSR from the
last SR it sent us; SDES CNAME always. Device RR blocks about our SSRC give the
gateway->device loss, jitter and RTT (A - LSR - DLSR, accepted within 0..10 s).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from gateway.quality.records import PacketLog
from gateway.rtp.dtmf import DtmfReceiver
from gateway.rtp.packets import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTP_HEADER,
    MalformedPacket,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    fir_packet,
    ntp_middle,
    ntp_now,
    parse_rtcp,
    pli_packet,
    sdes_cname,
)
from gateway.rtp.reception import ReceptionState
from gateway.rtp.types import Direction, LegConfig, MediaKind

Addr = tuple[str, int]

RTCP_MIN_INTERVAL_S = 5.0
LATCH_WINDOW_S = 5.0
RELATCH_QUIET_S = 0.5  # within the window, a new source takes over only after this silence


# A keypress is several telephone-event packets (the end packet alone is sent three
# times), so losing a whole digit shows as a run of at least this many lost packets.
SUSPECT_LOSS_RUN = 3
MAX_DROPOUT = 3000  # RFC 3550 A.1: larger jumps are restarts, not loss

class Channel(enum.Enum):
    RTP = "rtp"
    RTCP = "rtcp"


class Verdict(enum.Enum):
    MEDIA = "media"  # valid media, hand to the consumer
    DTMF = "dtmf"  # telephone-event, consumed here
    STRAY = "stray"  # wrong source after latching, or un-negotiated PT before it
    MALFORMED = "malformed"
    NOT_CONFIGURED = "not-configured"
    INACTIVE = "inactive"  # direction says the device should not send; dropped


class KeyframeMethod(enum.Enum):
    FIR = "fir"
    PLI = "pli"
    SIGNALLING = "signalling"  # SIP INFO picture_fast_update / H.245 videoFastUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    digit: str
    # a run of >= SUSPECT_LOSS_RUN lost RTP packets came since the previous digit: a whole
    # keypress may have vanished (docs/keypad.md rule 4)
    suspect: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTimedOut:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyframeRequested:
    """The device asked us (RTCP PLI/FIR) for a keyframe of what we send it."""

    method: KeyframeMethod


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerBye:
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NackReceived:
    seqs: tuple[int, ...]


Event = DigitReceived | MediaTimedOut | KeyframeRequested | PeerBye | NackReceived


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteReport:
    """What the device's last RR said about our stream (gateway -> device direction)."""

    fraction_lost: int
    packets_lost: int
    jitter_ts: int
    rtt_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCounters:
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    rtcp_rx_packets: int
    rtcp_rx_bytes: int
    rtcp_tx_packets: int
    rtcp_tx_bytes: int
    stray_dropped: int
    malformed_dropped: int


_RNG = random.Random()  # seeded once from os.urandom: SSRC, first seq and timestamp (RFC 3550 5.1)


class RtpSession:
    def __init__(
        self,
        *,
        kind: MediaKind,
        cname: str,
        ssrc: int | None = None,
        media_timeout_s: float = 30.0,
        latch_window_s: float = LATCH_WINDOW_S,
        ntp_offset_s: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.kind = kind
        self.cname = cname
        self._rng = rng or _RNG
        self.ssrc = ssrc if ssrc is not None else self._rng.getrandbits(32)
        self.media_timeout_s = media_timeout_s
        self.latch_window_s = latch_window_s
        self.ntp_offset_s = ntp_offset_s
        self.cfg: LegConfig | None = None
        self.clock_rate = 8000
        self._media_pts: frozenset[int] = frozenset()
        self._accept_pts: frozenset[int] = frozenset()
        # latching
        self.rtp_dest: Addr | None = None
        self.rtcp_dest: Addr | None = None
        self.latched_rtp: Addr | None = None
        self.latched_rtcp: Addr | None = None
        self._latch_until = 0.0
        self._sdp_rtp: Addr | None = None
        # send state
        self.seq = self._rng.getrandbits(16)
        self.ts_base = self._rng.getrandbits(32)
        self._last_tx_ts: int | None = None
        self._last_tx_at = 0.0
        self._sent_since_report = False
        self._fir_seq = 0
        # receive state
        self.log = PacketLog(256)
        self.reception = ReceptionState(8000)
        self.last_rx_at: float | None = None
        self._timeout_from = 0.0
        self._timed_out = False
        self._last_sr_lsr = 0
        self._last_sr_at: float | None = None
        self.remote: RemoteReport | None = None
        self.dtmf = DtmfReceiver()
        self._prev_seq: int | None = None
        self._loss_run_since_digit = 0
        self.batch_sinks: list = []  # callables(rows, clock_rate) after each report (quality engine)
        # counters
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self.tx_payload_bytes = 0
        self.rtcp_rx_packets = self.rtcp_rx_bytes = self.rtcp_tx_packets = self.rtcp_tx_bytes = 0
        self.stray_dropped = self.malformed_dropped = 0
        self._next_report: float | None = None
        self._out: list[tuple[Channel, bytes, Addr]] = []
        self._events: list[Event] = []

    # ----- configuration -------------------------------------------------------------
    def configure(self, cfg: LegConfig, now: float) -> None:
        """Apply an offer/answer result; identical configs are no-ops (re-INVITE, Poly)."""
        if cfg == self.cfg:
            return
        old = self.cfg
        self.cfg = cfg
        if cfg.codecs:
            self.clock_rate = cfg.codecs[0].clock_rate
        self._media_pts = frozenset(
            c.payload_type for c in cfg.codecs if c.name.upper() != "TELEPHONE-EVENT"
        )
        pts = set(self._media_pts)
        if cfg.telephone_event_pt is not None:
            pts.add(cfg.telephone_event_pt)
        self._accept_pts = frozenset(pts)
        if self.reception.clock_rate != self.clock_rate:
            self.reception = ReceptionState(self.clock_rate)
        # port 0 or c=0.0.0.0 (RFC 3264 section 8.4 hold, old style): nothing to send to
        remote = (
            cfg.remote_rtp
            if cfg.remote_rtp and cfg.remote_rtp[1] and cfg.remote_rtp[0] not in ("0.0.0.0", "::")
            else None
        )
        if old is None or remote != self._sdp_rtp:
            self.rtp_dest = remote
            self._sdp_rtp = remote
            if cfg.rtcp_mux:
                self.rtcp_dest = remote
            else:
                self.rtcp_dest = (cfg.remote_rtcp or (remote[0], remote[1] + 1)) if remote else None
            self.latched_rtp = self.latched_rtcp = None
            self._latch_until = now + self.latch_window_s
        self._timeout_from = now
        self._timed_out = False
        if self._next_report is None:
            self._next_report = now + self._rtcp_interval() / 2  # first report early (6.2)

    @property
    def sending(self) -> bool:
        return self.cfg is not None and self.cfg.direction in (
            Direction.SENDRECV,
            Direction.SENDONLY,
        )

    @property
    def expects_media(self) -> bool:
        return self.cfg is not None and self.cfg.direction in (
            Direction.SENDRECV,
            Direction.RECVONLY,
        )

    # ----- receive -------------------------------------------------------------------
    def receive_rtp(self, data: bytes, addr: Addr, now: float, arrival_ns: int) -> Verdict:
        """The hot path: validate, latch, log one row. No statistics here."""
        n = len(data)
        if n < 12 or data[0] >> 6 != 2:
            self.malformed_dropped += 1
            return Verdict.MALFORMED
        cfg = self.cfg
        if cfg is None:
            self.stray_dropped += 1
            return Verdict.NOT_CONFIGURED
        b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        pt = b1 & 0x7F
        if addr != self.latched_rtp:
            if self.latched_rtp is not None and (
                now > self._latch_until
                or (addr != self._sdp_rtp and now - (self.last_rx_at or 0.0) < RELATCH_QUIET_S)
            ):
                self.stray_dropped += 1
                return Verdict.STRAY
            if pt not in self._accept_pts:
                self.stray_dropped += 1
                return Verdict.STRAY
            self.latched_rtp = addr
            self.rtp_dest = addr
            if cfg.rtcp_mux:
                self.latched_rtcp = addr
                self.rtcp_dest = addr
        if pt not in self._accept_pts:
            self.stray_dropped += 1
            return Verdict.STRAY
        self.rx_packets += 1
        self.rx_bytes += n
        self.last_rx_at = now
        self.log.append(arrival_ns, seq, ts, ssrc, pt, bool(b1 & 0x80), n)
        prev = self._prev_seq
        if prev is None or (seq - prev) & 0xFFFF < 0x8000:  # newer (RFC 1982 order)
            if prev is not None and (gap := (seq - prev - 1) & 0xFFFF) > self._loss_run_since_digit \
                    and gap < MAX_DROPOUT:
                self._loss_run_since_digit = gap
            self._prev_seq = seq
        if pt == cfg.telephone_event_pt:
            off = 12 + 4 * (b0 & 0x0F)
            self.dtmf.receive(data[off : off + 4], ts, now)
            self._take_digits()
            return Verdict.DTMF
        if cfg.direction in (Direction.INACTIVE, Direction.SENDONLY):
            return Verdict.INACTIVE
        return Verdict.MEDIA

    def _take_digits(self) -> None:
        for d in self.dtmf.digits():
            suspect = self._loss_run_since_digit >= SUSPECT_LOSS_RUN
            self._loss_run_since_digit = 0
            self._events.append(DigitReceived(digit=d, suspect=suspect))

    def receive_rtcp(self, data: bytes, addr: Addr, now: float) -> None:
        if self.cfg is None:
            self.stray_dropped += 1
            return
        if addr != self.latched_rtcp:
            host_ok = self.latched_rtp is not None and addr[0] == self.latched_rtp[0]
            if self.latched_rtcp is not None and now > self._latch_until and not host_ok:
                self.stray_dropped += 1
                return
        try:
            packets = parse_rtcp(data)
        except MalformedPacket:
            self.malformed_dropped += 1
            return
        if addr != self.latched_rtcp:
            self.latched_rtcp = addr
            self.rtcp_dest = addr
        self.rtcp_rx_packets += 1
        self.rtcp_rx_bytes += len(data)
        for p in packets:
            if isinstance(p, RtcpSrPacket):
                self._last_sr_lsr = ntp_middle(p.sender_info.ntp_timestamp)
                self._last_sr_at = now
                self._take_blocks(p.reports, now)
            elif isinstance(p, RtcpRrPacket):
                self._take_blocks(p.reports, now)
            elif isinstance(p, RtcpPsfbPacket):
                if p.fmt == RTCP_PSFB_PLI:
                    self._events.append(KeyframeRequested(method=KeyframeMethod.PLI))
                elif p.fmt == RTCP_PSFB_FIR:
                    self._events.append(KeyframeRequested(method=KeyframeMethod.FIR))
            elif isinstance(p, RtcpRtpfbPacket) and p.fmt == 1:
                self._events.append(NackReceived(seqs=tuple(p.lost)))
            elif isinstance(p, RtcpByePacket):
                self._events.append(PeerBye(ssrcs=tuple(p.sources)))

    def _take_blocks(self, blocks: list, now: float) -> None:
        for b in blocks:
            if b.ssrc != self.ssrc:
                continue
            rtt_ms = None
            if b.lsr:
                a = ntp_middle(ntp_now(now + self.ntp_offset_s))
                rtt = (a - b.lsr - b.dlsr) & 0xFFFFFFFF
                if rtt < 10 * 65536:
                    rtt_ms = rtt * 1000 / 65536
            if rtt_ms is None and self.remote is not None:
                rtt_ms = self.remote.rtt_ms
            self.remote = RemoteReport(
                fraction_lost=b.fraction_lost,
                packets_lost=b.packets_lost,
                jitter_ts=b.jitter,
                rtt_ms=rtt_ms,
            )

    # ----- send ----------------------------------------------------------------------
    def send_rtp(
        self, *, pt: int, payload: bytes, ts_offset: int, marker: bool, now: float
    ) -> None:
        """Queue one RTP packet of ours (ts is relative to our random base)."""
        if not self.sending or self.rtp_dest is None:
            return
        ts = (self.ts_base + ts_offset) & 0xFFFFFFFF
        data = (
            RTP_HEADER.pack(0x80, (0x80 if marker else 0) | pt, self.seq, ts, self.ssrc) + payload
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self._note_sent(ts, len(data), len(payload), now)
        self._out.append((Channel.RTP, data, self.rtp_dest))

    def send_forwarded(self, data: bytes, now: float) -> None:
        """Queue an already-rewritten RTP packet (video switch, relay)."""
        if not self.sending or self.rtp_dest is None:
            return
        ts = int.from_bytes(data[4:8], "big")
        self._note_sent(ts, len(data), len(data) - 12, now)
        self._out.append((Channel.RTP, data, self.rtp_dest))

    def _note_sent(self, ts: int, size: int, payload: int, now: float) -> None:
        self.tx_packets += 1
        self.tx_bytes += size
        self.tx_payload_bytes += payload
        self._last_tx_ts = ts
        self._last_tx_at = now
        self._sent_since_report = True

    def request_keyframe(self, now: float) -> KeyframeMethod:
        """Ask the device for an intra frame: FIR if it does ccm fir, else PLI, else signalling."""
        fb = self.cfg.rtcp_fb if self.cfg else frozenset()
        media_ssrc = self.reception.ssrc or 0
        if "ccm fir" in fb:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            self._queue_rtcp(self._compound(now) + fir_packet(self.ssrc, media_ssrc, self._fir_seq))
            return KeyframeMethod.FIR
        if "nack pli" in fb:
            self._queue_rtcp(self._compound(now) + pli_packet(self.ssrc, media_ssrc))
            return KeyframeMethod.PLI
        return KeyframeMethod.SIGNALLING

    # ----- RTCP reports --------------------------------------------------------------
    def _rtcp_interval(self) -> float:
        # RFC 3550 6.3.1/A.7: Td = Tmin (our bandwidth share never exceeds it), randomized
        # by U(0.5, 1.5) and divided by e - 3/2 to compensate for timer reconsideration
        return RTCP_MIN_INTERVAL_S * self._rng.uniform(0.5, 1.5) / (math.e - 1.5)

    def note_forwarded_batch(self, count: int, nbytes: int, last_ts: int, now: float) -> None:
        self.tx_packets += count
        self.tx_bytes += nbytes
        self.tx_payload_bytes += nbytes - 12 * count
        self._last_tx_ts = last_ts
        self._last_tx_at = now
        self._sent_since_report = True

    def fold_log(self) -> None:
        """Move logged rows into the reception state and hand them to batch sinks."""
        if len(self.log) == 0:
            return
        rows = self.log.take()
        self.reception.consume(rows, self._media_pts)
        for sink in self.batch_sinks:
            sink(rows, self.clock_rate)

    def _compound(self, now: float) -> bytes:
        self.fold_log()
        blocks = []
        dlsr = 0
        if self._last_sr_at is not None:
            dlsr = int((now - self._last_sr_at) * 65536) & 0xFFFFFFFF
        block = self.reception.report_block(
            lsr=self._last_sr_lsr, dlsr=dlsr if self._last_sr_lsr else 0
        )
        if block is not None:
            blocks.append(block)
        if self._sent_since_report and self._last_tx_ts is not None:
            ntp = ntp_now(now + self.ntp_offset_s)
            rtp_ts = (
                self._last_tx_ts + int((now - self._last_tx_at) * self.clock_rate)
            ) & 0xFFFFFFFF
            info = RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_ts,
                packet_count=self.tx_packets & 0xFFFFFFFF,
                octet_count=self.tx_payload_bytes & 0xFFFFFFFF,
            )
            head = bytes(RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=blocks))
        else:
            head = bytes(RtcpRrPacket(ssrc=self.ssrc, reports=blocks))
        self._sent_since_report = False
        return head + sdes_cname(self.ssrc, self.cname)

    def _queue_rtcp(self, data: bytes) -> None:
        if self.rtcp_dest is None:
            return
        self.rtcp_tx_packets += 1
        self.rtcp_tx_bytes += len(data)
        self._out.append((Channel.RTCP, data, self.rtcp_dest))

    def bye(self, now: float) -> None:
        if self.cfg is not None:
            self._queue_rtcp(self._compound(now) + bytes(RtcpByePacket(sources=[self.ssrc])))

    # ----- timers --------------------------------------------------------------------
    def get_timer(self) -> float | None:
        candidates = [t for t in (self._next_report, self.dtmf.get_timer()) if t is not None]
        if self.kind is MediaKind.AUDIO and self.cfg is not None and not self._timed_out:
            candidates.append((self.last_rx_at or self._timeout_from) + self.media_timeout_s)
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        self.dtmf.handle_timer(now)
        self._take_digits()
        if self._next_report is not None and now >= self._next_report:
            self._queue_rtcp(self._compound(now))
            self._next_report = now + self._rtcp_interval()
        if (
            self.kind is MediaKind.AUDIO
            and self.cfg is not None
            and not self._timed_out
            and self.expects_media
        ):
            since = self.last_rx_at if self.last_rx_at is not None else self._timeout_from
            since = max(since, self._timeout_from)
            if now - since >= self.media_timeout_s:
                self._timed_out = True
                self._events.append(
                    MediaTimedOut(reason=f"no audio RTP for {self.media_timeout_s:g} s")
                )

    # ----- pulled outputs ------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[Channel, bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def counters(self) -> SessionCounters:
        return SessionCounters(
            rx_packets=self.rx_packets,
            rx_bytes=self.rx_bytes,
            tx_packets=self.tx_packets,
            tx_bytes=self.tx_bytes,
            rtcp_rx_packets=self.rtcp_rx_packets,
            rtcp_rx_bytes=self.rtcp_rx_bytes,
            rtcp_tx_packets=self.rtcp_tx_packets,
            rtcp_tx_bytes=self.rtcp_tx_bytes,
            stray_dropped=self.stray_dropped,
            malformed_dropped=self.malformed_dropped,
        )

    def media_payload_types(self) -> frozenset[int]:
        return self._media_pts
