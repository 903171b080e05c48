"""asyncio adapter for one H.323 call: signalling TCP, H.245 (tunnelled or its own TCP), legs.

No protocol rules here: :class:`H225Call` (Q.931/H.225.0), :class:`H245Session` and
:mod:`faststart` decide; this class moves bytes, runs one timer, opens media legs and
talks to the :class:`CallApplication`. The H.245 transport is chosen once, at Setup
(H.323 sections 8.2.1 and 8.2.2):

1. the caller tunnels (h245Tunnelling TRUE): H.245 rides in h245Control;
2. else the caller offered an h245Address in Setup: we connect to it;
3. else we listen on a TCP port from the H.323 range and send our h245Address in Connect
   (also when Fast Start settled the media, so UserInputIndication still has a path).
"""

from __future__ import annotations

import asyncio
import enum
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gateway.calls import Admission, DialTarget, DigitSource, IncomingCall, Protocol_, Transport
from gateway.h323 import call as c
from gateway.h323 import h245 as h
from gateway.h323 import messages as m
from gateway.h323.errors import Cause, RemoteProtocolError
from gateway.h323.faststart import FastStartMedia, decode_proposals, select
from gateway.rtp.ports import PortPair, PortsExhausted
from gateway.rtp.session import KeyframeMethod
from gateway.rtp.types import Codec, LegConfig, MediaKind, Pool

if TYPE_CHECKING:
    from gateway.h323.service import H323Service
    from gateway.rtp.plane import RtpLeg

log = structlog.get_logger(__name__)

_ADMISSION_CAUSE = {
    Admission.DRAINING: Cause.SWITCHING_EQUIPMENT_CONGESTION,
    Admission.THROTTLED: Cause.SWITCHING_EQUIPMENT_CONGESTION,
    Admission.NO_MEDIA_PORTS: Cause.RESOURCE_UNAVAILABLE,
}
_CODEC = {
    m.MediaFormat.PCMU: ("PCMU", 8000, ""),
    m.MediaFormat.PCMA: ("PCMA", 8000, ""),
    m.MediaFormat.G722: ("G722", 8000, ""),
    m.MediaFormat.H264: ("H264", 90000, "packetization-mode=0"),
    m.MediaFormat.H263: ("H263", 90000, ""),
}


class H245Mode(enum.Enum):
    NONE = "none"
    TUNNELLED = "tunnelled"
    CONNECT_OUT = "connect-out"
    LISTEN = "listen"


def codec_for(cap: m.MediaCapability, pt: int) -> Codec:
    name, rate, fmtp = _CODEC[cap.format]
    return Codec(payload_type=pt, name=name, clock_rate=rate, fmtp=fmtp)


@dataclass(slots=True)
class _MediaState:
    """What signalling settled for one leg so far; turned into a LegConfig on each change."""

    send: Codec | None = None
    receive: Codec | None = None
    remote_rtp: m.Address | None = None
    remote_rtcp: m.Address | None = None
    rtcp_fb: frozenset[str] = frozenset()
    last: tuple[Codec, ...] = ()  # kept when every channel closed: the leg then just idles

    def config(self, kind: MediaKind) -> LegConfig | None:
        codecs = tuple(x for x in (self.send, self.receive) if x is not None)
        if self.send and self.receive and self.send.payload_type == self.receive.payload_type:
            codecs = (self.send,)
        codecs = codecs or self.last
        if not codecs:
            return None
        self.last = codecs
        return LegConfig(
            kind=kind,
            remote_rtp=self.remote_rtp,
            remote_rtcp=self.remote_rtcp,
            codecs=codecs,
            rtcp_fb=self.rtcp_fb,
        )


class _H245Protocol(asyncio.Protocol):
    def __init__(self, owner: CallConnection) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner.h245_connected(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.owner.h245_data(data, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.h245_lost(self)


class CallConnection(asyncio.Protocol):
    """One accepted TCP connection on the H.225.0 port (one call)."""

    def __init__(self, service: H323Service) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.call = c.H225Call(
            timers=service.settings.call_timers,
            now=self.loop.time(),
            tunnelling=service.settings.tunnelling,
        )
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.incoming: IncomingCall | None = None
        self.h245: h.H245Session | None = None
        self.h245_mode = H245Mode.NONE
        self._h245_transport: asyncio.Transport | None = None
        self._h245_proto: _H245Protocol | None = None
        self._h245_server: asyncio.AbstractServer | None = None
        self._h245_sock: socket.socket | None = None
        self._h245_pair: PortPair | None = None
        self._legs: dict[MediaKind, RtpLeg] = {}
        self._media: dict[MediaKind, _MediaState] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = False
        self._admitted = False  # the app said ACCEPT: it hears call_ended whatever happens next
        self._ended = False
        self._linger_handle: asyncio.TimerHandle | None = None
        self._h245_wait: asyncio.TimerHandle | None = None
        self.log = log

    # ------------------------------------------------------------------ CallControl

    @property
    def legs(self) -> list[RtpLeg]:
        return list(self._legs.values())

    def hangup(self, reason: str) -> None:
        if self._ended:
            return
        if self.h245 is not None:
            self.h245.end_session()  # H.323 8.5 step 3
            self._flush_h245()
        self._after(self.call.release(Cause.NORMAL_CLEARING, reason))

    def request_keyframe(self) -> None:
        """RTCP FIR when the device said it takes it, and H.245 videoFastUpdatePicture."""
        leg = self._legs.get(MediaKind.VIDEO)
        if leg is not None and leg.request_keyframe() is KeyframeMethod.SIGNALLING:
            return  # the leg called on_keyframe_request_fallback: VFU already sent
        self._send_vfu()

    # ------------------------------------------------------------------ signalling TCP

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        self.log = log.bind(peer=f"{self.peer[0]}:{self.peer[1]}")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.service.connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.call.closed:
            return  # lingering after ReleaseComplete: discard
        try:
            self._after(self.call.receive_data(data, self.loop.time()))
        except Exception:
            self._internal_error()

    def _internal_error(self) -> None:
        """A bug here or in the application: end this call (cause 41), keep the service."""
        self.log.exception("h323.internal_error")
        try:
            self._after(self.call.release(Cause.TEMPORARY_FAILURE, "internal error"))
        except Exception:
            self.log.exception("h323.internal_error_release")
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool:
        if self.call.closed and self.transport is not None:
            self.transport.close()  # the peer is done too
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.service.lingering.discard(self.transport)
        if self._linger_handle is not None:
            self._linger_handle.cancel()
        self.transport = None
        self._handle(self.call.connection_lost())
        self._cleanup()

    # ------------------------------------------------------------------ event plumbing

    def _after(self, events: list[c.Event]) -> None:
        self._handle(events)
        self._flush()

    def _handle(self, events: list[c.Event]) -> None:
        for ev in events:
            try:
                if isinstance(ev, c.SetupReceived):
                    self._on_setup(ev)
                elif isinstance(ev, c.TunnelledH245):
                    for pdu in ev.pdus:
                        self._h245_pdu(pdu)
                elif isinstance(ev, c.DigitsReceived):
                    self._digits(ev.digits, DigitSource.Q931_KEYPAD)
                elif isinstance(ev, c.H245AddressReceived):
                    if (
                        self.h245_mode is H245Mode.NONE
                        or self._h245_transport is None
                        and self.h245_mode is H245Mode.LISTEN
                    ):
                        self._connect_h245(ev.address)
                elif isinstance(ev, c.CallReleased):
                    self._ended_with(ev.reason, ev.cause, ev.by_peer)
            except RemoteProtocolError as exc:
                self._handle(self.call.release(exc.cause, exc.reason))

    def _flush(self) -> None:
        data = self.call.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)
        if self.call.closed:
            self._cleanup()
            self._linger()
        else:
            self._arm()

    def _linger(self) -> None:
        """Half-close after ReleaseComplete and let the peer close its side (no RST on late
        segments it already had in flight); a short timer closes for good."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._linger_handle is not None:
            return
        if transport.can_write_eof():
            transport.write_eof()
            self.service.lingering.add(transport)
            handle = self.loop.call_later(
                self.service.settings.linger_s, self._close_lingering, transport
            )
            self._linger_handle = handle
        else:
            transport.close()

    def _close_lingering(self, transport: asyncio.Transport) -> None:
        self.service.lingering.discard(transport)
        transport.close()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        times = [
            t
            for t in (self.call.get_timer(), self.h245.get_timer() if self.h245 else None)
            if t is not None
        ]
        if times and not self._ended:
            self._timer = self.loop.call_at(min(times), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        try:
            if self.h245 is not None:
                self._h245_events(self.h245.handle_timer(now))
                self._flush_h245()
            self._after(self.call.handle_timer(now))
        except Exception:
            self._internal_error()

    # ------------------------------------------------------------------ Setup

    def _on_setup(self, ev: c.SetupReceived) -> None:
        svc, info, now = self.service, ev.info, self.loop.time()
        dialled = c.dial_string(info.destination_aliases, ev.called_number)
        source = next((a.value for a in info.source_aliases), ev.calling_number or ev.display or "")
        self.incoming = IncomingCall(
            call_id=ev.call_id,
            protocol=Protocol_.H323,
            transport=Transport.TCP,
            source=self.peer,
            from_uri=source,
            to_uri=dialled,
            target=DialTarget.parse(dialled),
            user_agent=info.product,
        )
        self.log = self.log.bind(call_id=ev.call_id)
        svc.count("InboundCallAttempts")
        if svc.draining:
            self._refuse(Cause.SWITCHING_EQUIPMENT_CONGESTION, "draining")
            return
        proposals = decode_proposals(info.fast_start) if info.fast_start else []  # may raise 100
        admission = svc.app.admit(self.incoming)
        if admission is not Admission.ACCEPT:
            if admission is Admission.THROTTLED:
                svc.count("Throttles")
            self._refuse(_ADMISSION_CAUSE[admission], admission.value)
            return
        self._admitted = True
        try:
            for kind in svc.settings.media_kinds:
                leg = svc.media.open_leg(ev.call_id, kind, Pool.H323)
                self._legs[kind] = leg
                self._media[kind] = _MediaState()
                leg.on_dtmf = lambda d, suspect: self._digits(d, DigitSource.RFC4733, suspect=suspect)
                leg.on_timeout = self._media_timeout
                if kind is MediaKind.VIDEO:
                    leg.on_keyframe_request_fallback = self._send_vfu
        except PortsExhausted:
            svc.count("MediaPortsExhausted")
            self._refuse(Cause.RESOURCE_UNAVAILABLE, "no media ports")
            return
        host = svc.settings.advertise_host
        local = {
            k: h.LocalMedia(rtp=(host, leg.local_rtp_port), rtcp=(host, leg.local_rtcp_port))
            for k, leg in self._legs.items()
        }
        answer = None
        if proposals and svc.settings.fast_start:
            answer = select(proposals, svc.settings.capabilities, local)
        self.h245 = h.H245Session(
            capabilities=svc.settings.capabilities,
            local_media=local,
            open_kinds=frozenset(self._legs)
            - frozenset(fs.kind for fs in (answer.media if answer else ()) if fs.send is not None),
            timers=svc.settings.h245_timers,
        )
        h245_address = None
        if self.call.tunnelling:
            self.h245_mode = H245Mode.TUNNELLED
            self.h245.start(now)
            self.call.tunnel_h245(self.h245.pdus_to_send())
        elif info.h245_address is not None:
            self._connect_h245(info.h245_address)
        else:
            h245_address = self._listen_h245()
            if h245_address is None and answer is None:
                svc.count("MediaPortsExhausted")
                self._refuse(Cause.RESOURCE_UNAVAILABLE, "no H.245 port and no Fast Start")
                return
        self.call.proceed(now)
        self.call.connect(
            now,
            fast_start=answer.answers if answer else None,
            fast_connect_refused=bool(info.fast_start) and answer is None,
            h245_address=h245_address,
        )
        if answer is not None:
            for fs in answer.media:
                self._apply_fast_start(fs)
        elif self.h245_mode is not H245Mode.TUNNELLED:
            self._h245_wait = self.loop.call_later(svc.settings.h245_wait_s, self._h245_missing)
        self._connected = True
        svc.count("InboundCallsAnswered")
        svc.gauge_add("InboundCallsActive", 1)
        self.log.info(
            "h323.connected",
            h245=self.h245_mode.value,
            fast_start=answer is not None,
            target=self.incoming.target.meeting_id or "menu",
        )
        svc.app.call_connected(self.incoming, self)

    def _refuse(self, cause: Cause, reason: str) -> None:
        self.service.count("InboundCallFailures")
        self.log.info("h323.refused", cause=int(cause), reason=reason)
        self._handle(self.call.release(cause, reason))

    def _apply_fast_start(self, fs: FastStartMedia) -> None:
        st = self._media[fs.kind]
        if fs.send is not None and fs.send_pt is not None:
            st.send = codec_for(fs.send, fs.send_pt)
        if fs.receive is not None and fs.receive_pt is not None:
            st.receive = codec_for(fs.receive, fs.receive_pt)
        st.remote_rtp, st.remote_rtcp = fs.remote_rtp, fs.remote_rtcp
        self._configure(fs.kind)
        if fs.receive_channel is not None and self.h245 is not None:
            self.h245.register_incoming(fs.receive_channel, fs.kind)
            if fs.kind is MediaKind.VIDEO:
                self._send_vfu()  # fresh picture on entering the meeting

    def _configure(self, kind: MediaKind) -> None:
        leg, st = self._legs.get(kind), self._media.get(kind)
        if leg is None or st is None:
            return
        cfg = st.config(kind)
        if cfg is not None:
            leg.configure(cfg)

    # ------------------------------------------------------------------ H.245

    def _h245_pdu(self, pdu: bytes) -> None:
        if self.h245 is None:
            return
        self._h245_events(self.h245.receive_pdu(pdu, self.loop.time()))
        self._flush_h245()

    def _flush_h245(self) -> None:
        if self.h245 is None or self._ended:
            return
        if self.h245_mode is H245Mode.TUNNELLED:
            if not self.call.closed:
                self.call.tunnel_h245(self.h245.pdus_to_send())
        elif self._h245_transport is not None:
            data = self.h245.data_to_send()
            if data:
                self._h245_transport.write(data)
        self._arm()

    def _h245_events(self, events: list[h.Event]) -> None:
        for ev in events:
            if self._ended:
                return
            if isinstance(ev, h.RemoteCapabilities):
                if ev.capabilities.rtcp_video_control and MediaKind.VIDEO in self._media:
                    self._media[MediaKind.VIDEO].rtcp_fb = frozenset({"ccm fir"})
                    self._configure(MediaKind.VIDEO)
            elif isinstance(ev, h.ChannelReceiving):
                st = self._media[ev.kind]
                st.receive = codec_for(ev.capability, ev.payload_type)
                st.remote_rtcp = st.remote_rtcp or ev.remote_rtcp
                self._configure(ev.kind)
            elif isinstance(ev, h.ChannelSending):
                st = self._media[ev.kind]
                st.send = codec_for(ev.capability, ev.payload_type)
                st.remote_rtp, st.remote_rtcp = ev.remote_rtp, ev.remote_rtcp or st.remote_rtcp
                self._configure(ev.kind)
                if ev.kind is MediaKind.VIDEO:
                    self._send_vfu()  # fresh picture on entering the meeting
            elif isinstance(ev, h.ChannelClosed):
                self.log.info("h245.channel_closed", number=ev.number, ours=ev.ours)
                st = self._media[ev.kind]
                if ev.ours:
                    st.send, st.remote_rtp = None, None  # stop sending (paused or closed)
                else:
                    st.receive = None
                self._configure(ev.kind)
            elif isinstance(ev, h.ChannelRejected):
                self.log.info(
                    "h245.channel_rejected", number=ev.number, kind=ev.kind.value, cause=ev.cause
                )
            elif isinstance(ev, h.UserInputReceived):
                self._digits(ev.digit, DigitSource.H245_UII)
            elif isinstance(ev, h.KeyframeRequested):
                leg = self._legs.get(MediaKind.VIDEO)
                if leg is not None and leg.on_keyframe_requested is not None:
                    leg.on_keyframe_requested(leg)
            elif isinstance(ev, h.FlowControlReceived):
                self.log.info(
                    "h245.flow_control",
                    channel=ev.channel,
                    max_bitrate_100bps=ev.max_bitrate_100bps,
                )
            elif isinstance(ev, h.RoundTripMeasured):
                self.log.debug("h245.rtt", rtt_ms=round(ev.rtt_ms, 1))
            elif isinstance(ev, h.SessionEnded):
                self._after(self.call.release(Cause.NORMAL_CLEARING, "EndSessionCommand from peer"))
            elif isinstance(ev, h.SessionFailed):
                self._after(self.call.release(ev.cause, ev.reason))

    def _send_vfu(self) -> None:
        if self.h245 is not None and not self._ended:
            self.h245.request_keyframe()
            self._flush_h245()

    def _listen_h245(self) -> m.Address | None:
        """Bind a TCP listener in the H.323 range now (so Connect can name it), serve it async."""
        svc = self.service
        for _ in range(svc.settings.h245_bind_attempts):
            try:
                pair = svc.h245_ports.allocate(self.loop.time())
            except PortsExhausted:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((svc.settings.bind_host, pair.rtp))
                sock.listen(1)
            except OSError:
                sock.close()
                svc.h245_ports.release(pair, self.loop.time())
                continue
            sock.setblocking(False)
            self._h245_pair = pair
            self._h245_sock = sock
            self.h245_mode = H245Mode.LISTEN
            self._spawn(self._serve_h245(sock))
            return (svc.settings.advertise_host, pair.rtp)
        self.log.warning("h245.no_listen_port")
        return None

    async def _serve_h245(self, sock: socket.socket) -> None:
        server = await self.loop.create_server(lambda: _H245Protocol(self), sock=sock)
        if self._ended:
            server.close()
            return
        self._h245_server = server
        self._h245_sock = None  # the server owns it now

    def _connect_h245(self, address: m.Address) -> None:
        self.h245_mode = H245Mode.CONNECT_OUT
        self._spawn(self._dial_h245(address))

    async def _dial_h245(self, address: m.Address) -> None:
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: _H245Protocol(self), address[0], address[1]),
                self.service.settings.h245_connect_timeout_s,
            )
        except (TimeoutError, OSError) as exc:
            self.log.info("h245.connect_failed", error=str(exc))
            self._after(
                self.call.release(
                    Cause.NETWORK_OUT_OF_ORDER, "cannot reach the peer's H.245 address"
                )
            )

    def _h245_missing(self) -> None:
        self._h245_wait = None
        if self._h245_transport is None and not self._ended:
            try:
                self._after(
                    self.call.release(Cause.RECOVERY_ON_TIMER_EXPIRY, "no H.245 connection")
                )
            except Exception:
                self._internal_error()

    def h245_connected(self, transport: asyncio.Transport) -> None:
        if self._h245_transport is not None or self._ended or self.h245 is None:
            transport.close()  # one H.245 connection per call
            return
        self._h245_transport = transport
        if self._h245_wait is not None:
            self._h245_wait.cancel()
            self._h245_wait = None
        if self._h245_server is not None:
            self._h245_server.close()  # stop listening once the peer is in
        self.h245.start(self.loop.time())
        self._flush_h245()

    def h245_data(self, data: bytes, proto: _H245Protocol) -> None:
        if self.h245 is None or self._ended:
            return
        try:
            events = self.h245.receive_data(data, self.loop.time())
            self._h245_events(events)
            self._flush_h245()
        except RemoteProtocolError as exc:
            self._after(self.call.release(exc.cause, exc.reason))
        except Exception:
            self._internal_error()

    def h245_lost(self, proto: _H245Protocol) -> None:
        if not self._ended and self._h245_transport is not None:
            # H.323 8.2.2: losing the H.245 channel ends the call
            self._h245_transport = None
            self._after(self.call.release(Cause.NORMAL_UNSPECIFIED, "H.245 connection closed"))

    # ------------------------------------------------------------------ app + teardown

    def _digits(self, digits: str, source: DigitSource, *, suspect: bool = False) -> None:
        if self.incoming is None or not self._connected or self._ended:
            return
        for d in digits:
            self._guarded(self.service.app.digit, self.incoming.call_id, d, source, suspect=suspect)

    def _media_timeout(self, reason: str) -> None:
        try:
            self._after(self.call.release(Cause.RECOVERY_ON_TIMER_EXPIRY, f"media: {reason}"))
        except Exception:
            self._internal_error()

    def _ended_with(self, reason: str, cause: int, by_peer: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self.log.info("h323.ended", cause=int(cause), reason=reason, by_peer=by_peer)
        if self._connected:
            self.service.gauge_add("InboundCallsActive", -1)
        if self.incoming is not None and self._admitted:
            self._guarded(self.service.app.call_ended, self.incoming.call_id, reason)

    def _guarded(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Call into the application; its bugs are logged, never our crash."""
        try:
            fn(*args, **kwargs)
        except Exception:
            self.log.exception("h323.app_error", callback=getattr(fn, "__name__", "?"))

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._h245_wait is not None:
            self._h245_wait.cancel()
            self._h245_wait = None
        for task in list(self._tasks):
            task.cancel()
        if self._h245_transport is not None:
            data = self.h245.data_to_send() if self.h245 else b""
            if data:
                self._h245_transport.write(data)
            self._h245_transport.close()
            self._h245_transport = None
        if self._h245_server is not None:
            self._h245_server.close()
            self._h245_server = None
        if self._h245_sock is not None:
            self._h245_sock.close()
            self._h245_sock = None
        if self._h245_pair is not None:
            self.service.h245_ports.release(self._h245_pair, self.loop.time())
            self._h245_pair = None
        for leg in self._legs.values():
            leg.close()
        self._legs.clear()
        self.service.connections.discard(self)

    def abort(self, reason: str) -> None:
        """Service shutdown: end the call now (EndSessionCommand, ReleaseComplete cause 16)."""
        if self._ended or self.call.closed:
            if self.transport is not None:
                self.transport.close()
            return
        self.hangup(reason)
