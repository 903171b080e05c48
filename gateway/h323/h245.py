"""H.245 control channel core (sans-I/O), tunnelled in H.225.0 or on its own TCP connection.

Works on whole MultimediaSystemControlMessage PDUs: :meth:`H245Session.receive_pdu` takes
one, :meth:`pdus_to_send` hands ours out (the call core tunnels them in h245Control; on a
separate connection :meth:`receive_data` / :meth:`data_to_send` add TPKT framing, H.323
section 8.2). Time is a parameter; :meth:`get_timer` / :meth:`handle_timer` drive T101,
T103, T105 and T106.

Signalling entities and their states (H.245 section 8; one table per procedure below):

- CESE, capability exchange (8.3): outgoing IDLE -> AWAITING_RESPONSE (T101) -> IDLE;
  every incoming TerminalCapabilitySet is acknowledged (we understand a subset and say so
  by using only that subset).
- MSDSE, master/slave determination (8.2): IDLE, OUTGOING_AWAITING, INCOMING_AWAITING,
  DONE; T106; N100 retries on identical numbers. terminalType 190 (MCU with A/V MP) makes
  the gateway master against any terminal (50) so channel conflicts resolve our way.
- LCSE, uni-directional logical channels (8.4): ours RELEASED -> AWAITING_ESTABLISHMENT
  (T103) -> ESTABLISHED -> AWAITING_RELEASE (T103) -> RELEASED; the peer's are acked at
  once when the data type is one we take (G.711 A/µ, G.722, H.264, H.263) and rejected
  otherwise.
- RTDSE, round trip delay (8.9): IDLE -> AWAITING_RESPONSE (T105) -> IDLE.
- Commands/indications without procedure: UserInputIndication (digits), MiscellaneousCommand
  videoFastUpdatePicture (keyframe), FlowControlCommand, EndSessionCommand.

A timer expiry that leaves the session useless (T101, T106 after retries, T105) gives a
:class:`SessionFailed` event; the call core then releases with cause 102.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.h323 import asn1
from gateway.h323 import messages as m
from gateway.h323.errors import Cause
from gateway.h323.tpkt import TpktReader, frame
from gateway.rtp.types import MediaKind

TERMINAL_TYPE_MCU = 190  # H.323 table 1: MCU with audio/video MP
N100 = 3  # MSD retries on indeterminate result (H.245 C.2)
H264_PT = 97
KEYPAD = frozenset("0123456789*#ABCD")
STATIC_PT = {m.MediaFormat.PCMU: 0, m.MediaFormat.PCMA: 8, m.MediaFormat.G722: 9}


@dataclass(frozen=True, slots=True, kw_only=True)
class H245Timers:
    t101_s: float = 30.0  # capability exchange
    t103_s: float = 30.0  # logical channel signalling
    t105_s: float = 30.0  # round trip delay
    t106_s: float = 30.0  # master slave determination
    keepalive_s: float | None = 30.0  # RoundTripDelayRequest period once started (None: off)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalMedia:
    """Where we receive one kind of media (from the media plane's leg)."""

    rtp: m.Address
    rtcp: m.Address


# ------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteCapabilities:
    capabilities: m.TerminalCapabilitySet


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterSlaveResolved:
    master: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelReceiving:
    """The peer opened a channel towards us (we acked with our RTP/RTCP address)."""

    number: int
    kind: MediaKind
    capability: m.MediaCapability
    payload_type: int
    remote_rtcp: m.Address | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSending:
    """Our channel towards the peer is established: send RTP to ``remote_rtp``."""

    number: int
    kind: MediaKind
    capability: m.MediaCapability
    payload_type: int
    remote_rtp: m.Address | None
    remote_rtcp: m.Address | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClosed:
    number: int
    kind: MediaKind
    ours: bool  # True: our sending channel; False: the peer's


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRejected:
    number: int
    kind: MediaKind
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInputReceived:
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyframeRequested:
    channel: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowControlReceived:
    channel: int | None
    max_bitrate_100bps: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTripMeasured:
    rtt_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded:
    """The peer sent EndSessionCommand (H.323 section 8.5 phase E)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailed:
    reason: str
    cause: Cause = Cause.RECOVERY_ON_TIMER_EXPIRY


Event = (
    RemoteCapabilities
    | MasterSlaveResolved
    | ChannelReceiving
    | ChannelSending
    | ChannelClosed
    | ChannelRejected
    | UserInputReceived
    | KeyframeRequested
    | FlowControlReceived
    | RoundTripMeasured
    | SessionEnded
    | SessionFailed
)


# ------------------------------------------------------------------------------- states


class CapState(enum.Enum):
    IDLE = "idle"
    AWAITING_RESPONSE = "awaiting-response"


class MsdState(enum.Enum):
    IDLE = "idle"
    OUTGOING_AWAITING = "outgoing-awaiting-response"
    INCOMING_AWAITING = "incoming-awaiting-response"
    DONE = "done"


class LcState(enum.Enum):
    RELEASED = "released"
    AWAITING_ESTABLISHMENT = "awaiting-establishment"
    ESTABLISHED = "established"
    AWAITING_RELEASE = "awaiting-release"


class Timer(enum.Enum):
    KEEPALIVE = "keepalive"  # not in H.245: our period for RoundTripDelayRequest liveness checks
    T101 = "T101"
    T103 = "T103"
    T105 = "T105"
    T106 = "T106"


@dataclass(slots=True)
class _OutChannel:
    number: int
    kind: MediaKind
    capability: m.MediaCapability
    payload_type: int
    state: LcState = LcState.AWAITING_ESTABLISHMENT


@dataclass(slots=True)
class _State:
    cap_out: CapState = CapState.IDLE
    msd: MsdState = MsdState.IDLE
    msd_retries: int = 0
    master: bool | None = None
    remote_caps: m.TerminalCapabilitySet | None = None
    out: dict[int, _OutChannel] = field(default_factory=dict)
    incoming: dict[int, MediaKind] = field(default_factory=dict)
    timers: dict[tuple[Timer, int], float] = field(default_factory=dict)
    rtd_sent_at: float | None = None
    refused: set[MediaKind] = field(default_factory=set)  # not retried until a new TCS


def choose(
    ours: tuple[m.MediaCapability, ...], theirs: m.TerminalCapabilitySet, video: bool
) -> m.MediaCapability | None:
    """Our first capability of that kind the peer can receive, within its limits."""
    for cap in ours:
        if cap.format.is_video != video:
            continue
        for remote in theirs.capabilities:
            if remote.format is not cap.format:
                continue
            if cap.format is m.MediaFormat.H264:
                return m.MediaCapability(
                    format=cap.format,
                    max_bitrate_100bps=min(
                        cap.max_bitrate_100bps, remote.max_bitrate_100bps or cap.max_bitrate_100bps
                    ),
                    h264_profile=64,
                    h264_level=min(cap.h264_level, remote.h264_level),
                )
            if cap.format.is_video:
                return m.MediaCapability(
                    format=cap.format,
                    max_bitrate_100bps=min(
                        cap.max_bitrate_100bps, remote.max_bitrate_100bps or cap.max_bitrate_100bps
                    ),
                )
            return m.MediaCapability(format=cap.format, frames=min(20, remote.frames))
    return None


def payload_type(cap: m.MediaCapability, dynamic: int | None = None) -> int:
    return STATIC_PT.get(cap.format, dynamic if dynamic is not None else H264_PT)


class H245Session:
    """One H.245 session of a call; the gateway side (or the test endpoint's)."""

    def __init__(
        self,
        *,
        capabilities: tuple[m.MediaCapability, ...],
        local_media: dict[MediaKind, LocalMedia],
        terminal_type: int = TERMINAL_TYPE_MCU,
        open_kinds: frozenset[MediaKind] | None = None,
        timers: H245Timers | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.local_media = local_media
        self.terminal_type = terminal_type
        # kinds we open sending channels for by H.245 (None: every kind we have a leg for);
        # kinds Fast Start already settled are left out
        self.open_kinds = frozenset(local_media) if open_kinds is None else open_kinds
        self._next_lc = 1
        self.timers = timers or H245Timers()
        self._rng = rng or random.Random()
        self._st = _State()
        self._tcs_seq = 0
        self._rtd_seq = 0
        self._sdn = 0
        self._out: list[bytes] = []
        self._reader = TpktReader()
        self._ended = False

    # ------------------------------------------------------------------ public API

    @property
    def master(self) -> bool | None:
        return self._st.master

    @property
    def remote_capabilities(self) -> m.TerminalCapabilitySet | None:
        return self._st.remote_caps

    def start(self, now: float) -> None:
        """Phase B of H.323 section 8.2: send our TCS and start MSD."""
        self._send_tcs(now)
        if self._st.msd is MsdState.IDLE:
            self._send_msd(now)
        if self.timers.keepalive_s:
            self._st.timers[(Timer.KEEPALIVE, 0)] = now + self.timers.keepalive_s

    def send(self, msg: m.H245Message) -> None:
        self._out.append(asn1.encode_h245(msg))

    def send_user_input(self, digit: str) -> None:
        self.send(m.UserInput(text=digit))

    def register_incoming(self, number: int, kind: MediaKind) -> None:
        """A channel the peer opened by Fast Start (H.323 8.1.7): keyframe requests name it."""
        self._st.incoming[number] = kind

    def request_keyframe(self) -> None:
        """videoFastUpdatePicture on each video channel the peer sends us."""
        for number, kind in self._st.incoming.items():
            if kind is MediaKind.VIDEO:
                self.send(m.VideoFastUpdate(channel=number))

    def round_trip(self, now: float) -> None:
        if self._st.rtd_sent_at is not None:
            return
        self._rtd_seq = (self._rtd_seq + 1) % 256
        self._st.rtd_sent_at = now
        self._st.timers[(Timer.T105, 0)] = now + self.timers.t105_s
        self.send(m.RoundTripDelayRequest(sequence_number=self._rtd_seq))

    def close_channel(self, number: int, now: float) -> None:
        ch = self._st.out.get(number)
        if ch is None or ch.state is not LcState.ESTABLISHED:
            return
        ch.state = LcState.AWAITING_RELEASE
        self._st.timers[(Timer.T103, number)] = now + self.timers.t103_s
        self.send(m.CloseLogicalChannel(number=number))

    def end_session(self) -> None:
        if not self._ended:
            self._ended = True
            self._st.timers.clear()  # no procedure outlives the session (H.323 8.5)
            self.send(m.EndSession())

    def pdus_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Separate H.245 TCP connection: TPKT-framed PDUs."""
        events: list[Event] = []
        for pdu in self._reader.feed(data):
            if pdu:  # empty TPKT: keep-alive
                events += self.receive_pdu(pdu, now)
        return events

    def data_to_send(self) -> bytes:
        return b"".join(frame(p) for p in self.pdus_to_send())

    def get_timer(self) -> float | None:
        return min(self._st.timers.values(), default=None)

    # ------------------------------------------------------------------ receiving

    def receive_pdu(self, pdu: bytes, now: float) -> list[Event]:
        """One PDU in. Malformed PER raises RemoteProtocolError (cause 111): end the call."""
        try:
            msg = asn1.decode_h245(pdu)
        except asn1.UnsupportedDataType as exc:
            self.send(m.OpenLogicalChannelReject(number=exc.number, cause="dataTypeNotSupported"))
            return []
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            return []  # Unsupported or an indication we have no use for
        return handler(self, msg, now)

    def _on_tcs(self, msg: m.TerminalCapabilitySet, now: float) -> list[Event]:
        # H.245 8.3.4: acknowledge; an empty set means "close all" (third-party pause).
        # With H.245 as the media path, a set without any audio format we send is rejected
        # (8.3.4.3) and the call ends with cause 88, incompatible destination.
        ours = {c.format for c in self.capabilities if not c.format.is_video}
        if (
            MediaKind.AUDIO in self.open_kinds
            and not msg.empty
            and not any(c.format in ours for c in msg.capabilities)
        ):
            self.send(m.TerminalCapabilitySetReject(sequence_number=msg.sequence_number))
            return [
                SessionFailed(
                    reason="no common audio capability", cause=Cause.INCOMPATIBLE_DESTINATION
                )
            ]
        self._st.remote_caps = msg
        self._st.refused.clear()
        self.send(m.TerminalCapabilitySetAck(sequence_number=msg.sequence_number))
        if msg.empty:  # H.323 8.4.6: close what we send; a later full set reopens it
            for number in list(self._st.out):
                self.close_channel(number, now)
        return [RemoteCapabilities(capabilities=msg), *self._maybe_open(now)]

    def _on_tcs_ack(self, msg: m.TerminalCapabilitySetAck, now: float) -> list[Event]:
        if self._st.cap_out is CapState.AWAITING_RESPONSE and msg.sequence_number == self._tcs_seq:
            self._st.cap_out = CapState.IDLE
            self._st.timers.pop((Timer.T101, 0), None)
        return self._maybe_open(now)

    def _on_tcs_reject(self, msg: m.TerminalCapabilitySetReject, now: float) -> list[Event]:
        self._st.cap_out = CapState.IDLE
        self._st.timers.pop((Timer.T101, 0), None)
        return [
            SessionFailed(
                reason="peer rejected our capabilities", cause=Cause.INCOMPATIBLE_DESTINATION
            )
        ]

    def _on_msd(self, msg: m.MasterSlaveDetermination, now: float) -> list[Event]:
        # H.245 8.2.3 determination; table: IDLE/INCOMING/OUTGOING -> answer
        master = self._determine(msg)
        if master is None:
            if self._st.msd is MsdState.OUTGOING_AWAITING and self._st.msd_retries < N100:
                self._st.msd_retries += 1
                self._send_msd(now)
                return []
            self.send(m.MasterSlaveDeterminationReject())
            return []
        self._st.master = master
        self._st.msd = MsdState.INCOMING_AWAITING
        self._st.timers[(Timer.T106, 0)] = now + self.timers.t106_s
        # the Ack's decision is the receiver's role: we are master -> the peer is slave
        self.send(m.MasterSlaveDeterminationAck(master=not master))
        return []

    def _on_msd_ack(self, msg: m.MasterSlaveDeterminationAck, now: float) -> list[Event]:
        if self._st.msd is MsdState.OUTGOING_AWAITING:
            self._st.master = msg.master
            self.send(m.MasterSlaveDeterminationAck(master=not msg.master))
        elif self._st.msd is not MsdState.INCOMING_AWAITING:
            return []
        self._st.msd = MsdState.DONE
        self._st.timers.pop((Timer.T106, 0), None)
        return [MasterSlaveResolved(master=bool(self._st.master)), *self._maybe_open(now)]

    def _on_msd_reject(self, msg: m.MasterSlaveDeterminationReject, now: float) -> list[Event]:
        if self._st.msd is MsdState.OUTGOING_AWAITING and self._st.msd_retries < N100:
            self._st.msd_retries += 1
            self._send_msd(now)
            return []
        self._st.msd = MsdState.IDLE
        self._st.timers.pop((Timer.T106, 0), None)
        return [
            SessionFailed(reason="master/slave determination failed", cause=Cause.PROTOCOL_ERROR)
        ]

    def _on_msd_release(self, msg: m.MasterSlaveDeterminationRelease, now: float) -> list[Event]:
        self._st.msd = MsdState.IDLE
        self._st.timers.pop((Timer.T106, 0), None)
        return []

    def _on_olc(self, msg: m.OpenLogicalChannel, now: float) -> list[Event]:
        # H.245 8.4.3 incoming LCSE: accept what we can receive, at our leg's address
        params = msg.forward
        if params is None:
            self.send(
                m.OpenLogicalChannelReject(number=msg.number, cause="unsuitableReverseParameters")
            )
            return []
        kind = MediaKind.VIDEO if params.capability.format.is_video else MediaKind.AUDIO
        local = self.local_media.get(kind)
        ours = {c.format for c in self.capabilities}
        if local is None or params.capability.format not in ours:
            self.send(m.OpenLogicalChannelReject(number=msg.number, cause="dataTypeNotSupported"))
            return [ChannelRejected(number=msg.number, kind=kind, cause="dataTypeNotSupported")]
        self._st.incoming[msg.number] = kind
        self.send(
            m.OpenLogicalChannelAck(
                number=msg.number,
                session_id=params.session_id,
                media_channel=local.rtp,
                media_control=local.rtcp,
            )
        )
        return [
            ChannelReceiving(
                number=msg.number,
                kind=kind,
                capability=params.capability,
                payload_type=payload_type(params.capability, params.dynamic_pt),
                remote_rtcp=params.media_control,
            )
        ]

    def _on_olc_ack(self, msg: m.OpenLogicalChannelAck, now: float) -> list[Event]:
        ch = self._st.out.get(msg.number)
        if ch is None or ch.state is not LcState.AWAITING_ESTABLISHMENT:
            return []
        ch.state = LcState.ESTABLISHED
        self._st.timers.pop((Timer.T103, msg.number), None)
        return [
            ChannelSending(
                number=ch.number,
                kind=ch.kind,
                capability=ch.capability,
                payload_type=ch.payload_type,
                remote_rtp=msg.media_channel,
                remote_rtcp=msg.media_control,
            )
        ]

    def _on_olc_reject(self, msg: m.OpenLogicalChannelReject, now: float) -> list[Event]:
        ch = self._st.out.pop(msg.number, None)
        if ch is None:
            return []
        self._st.timers.pop((Timer.T103, msg.number), None)
        self._st.refused.add(ch.kind)
        return [ChannelRejected(number=msg.number, kind=ch.kind, cause=msg.cause)]

    def _on_clc(self, msg: m.CloseLogicalChannel, now: float) -> list[Event]:
        self.send(m.CloseLogicalChannelAck(number=msg.number))
        kind = self._st.incoming.pop(msg.number, None)
        if kind is None:
            return []
        return [ChannelClosed(number=msg.number, kind=kind, ours=False)]

    def _on_clc_ack(self, msg: m.CloseLogicalChannelAck, now: float) -> list[Event]:
        ch = self._st.out.get(msg.number)
        if ch is None or ch.state is not LcState.AWAITING_RELEASE:
            return []
        del self._st.out[msg.number]
        self._st.timers.pop((Timer.T103, msg.number), None)
        return [ChannelClosed(number=msg.number, kind=ch.kind, ours=True)]

    def _on_request_close(self, msg: m.RequestChannelClose, now: float) -> list[Event]:
        self.close_channel(msg.number, now)
        return []

    def _on_rtd_request(self, msg: m.RoundTripDelayRequest, now: float) -> list[Event]:
        self.send(m.RoundTripDelayResponse(sequence_number=msg.sequence_number))
        return []

    def _on_rtd_response(self, msg: m.RoundTripDelayResponse, now: float) -> list[Event]:
        sent = self._st.rtd_sent_at
        if sent is None or msg.sequence_number != self._rtd_seq:
            return []
        self._st.rtd_sent_at = None
        self._st.timers.pop((Timer.T105, 0), None)
        return [RoundTripMeasured(rtt_ms=(now - sent) * 1000.0)]

    def _on_user_input(self, msg: m.UserInput, now: float) -> list[Event]:
        return [UserInputReceived(digit=c) for c in msg.text.upper() if c in KEYPAD]

    def _on_vfu(self, msg: m.VideoFastUpdate, now: float) -> list[Event]:
        return [KeyframeRequested(channel=msg.channel)]

    def _on_flow(self, msg: m.FlowControl, now: float) -> list[Event]:
        return [FlowControlReceived(channel=msg.channel, max_bitrate_100bps=msg.max_bitrate_100bps)]

    def _on_end(self, msg: m.EndSession, now: float) -> list[Event]:
        self.end_session()  # H.323 8.5: answer with our own EndSessionCommand
        self._st.timers.clear()
        return [SessionEnded()]

    # ------------------------------------------------------------------ timers

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        for key, deadline in sorted(self._st.timers.items(), key=lambda kv: kv[1]):
            if deadline > now:
                continue
            del self._st.timers[key]
            timer, number = key
            if timer is Timer.T101:  # 8.3.4.2: TerminalCapabilitySetRelease
                self._st.cap_out = CapState.IDLE
                self.send(m.TerminalCapabilitySetRelease())
                events.append(SessionFailed(reason="T101: no answer to TerminalCapabilitySet"))
            elif timer is Timer.T106:  # 8.2.4: MasterSlaveDeterminationRelease
                self._st.msd = MsdState.IDLE
                self.send(m.MasterSlaveDeterminationRelease())
                events.append(SessionFailed(reason="T106: master/slave determination timed out"))
            elif timer is Timer.T103:  # 8.4.4: CloseLogicalChannel on a stuck channel
                ch = self._st.out.pop(number, None)
                if ch is not None:
                    self._st.refused.add(ch.kind)
                    if ch.state is LcState.AWAITING_ESTABLISHMENT:
                        self.send(m.CloseLogicalChannel(number=number))
                    events.append(ChannelRejected(number=number, kind=ch.kind, cause="T103"))
            elif timer is Timer.KEEPALIVE:
                self.round_trip(now)
                if self.timers.keepalive_s:
                    self._st.timers[(Timer.KEEPALIVE, 0)] = now + self.timers.keepalive_s
            elif timer is Timer.T105:  # 8.9.4: no answer, the peer is gone
                self._st.rtd_sent_at = None
                events.append(SessionFailed(reason="T105: no RoundTripDelayResponse"))
        return events

    # ------------------------------------------------------------------ internals

    def _send_tcs(self, now: float) -> None:
        self._tcs_seq = self._tcs_seq % 255 + 1
        self._st.cap_out = CapState.AWAITING_RESPONSE
        self._st.timers[(Timer.T101, 0)] = now + self.timers.t101_s
        self.send(
            m.TerminalCapabilitySet(
                sequence_number=self._tcs_seq,
                capabilities=self.capabilities,
                user_input=frozenset({"basicString", "iA5String", "dtmf"}),
                rtcp_video_control=True,  # the media plane answers RTCP FIR with a keyframe
            )
        )

    def _send_msd(self, now: float) -> None:
        self._sdn = self._rng.randrange(1 << 24)
        self._st.msd = MsdState.OUTGOING_AWAITING
        self._st.timers[(Timer.T106, 0)] = now + self.timers.t106_s
        self.send(
            m.MasterSlaveDetermination(
                terminal_type=self.terminal_type, status_determination_number=self._sdn
            )
        )

    def _determine(self, msg: m.MasterSlaveDetermination) -> bool | None:
        """H.245 8.2.3: True if we are master, None if indeterminate."""
        if msg.terminal_type != self.terminal_type:
            return self.terminal_type > msg.terminal_type
        if self._st.msd is not MsdState.OUTGOING_AWAITING:
            self._sdn = self._rng.randrange(1 << 24)
        diff = (msg.status_determination_number - self._sdn) % (1 << 24)
        if diff in (0, 1 << 23):
            return None
        return diff < (1 << 23)

    def _maybe_open(self, now: float) -> list[Event]:
        """Open our sending channels once we know what the peer receives (H.323 8.3)."""
        caps = self._st.remote_caps
        if caps is None or caps.empty or self._st.msd is not MsdState.DONE:
            return []
        busy = {ch.kind for ch in self._st.out.values()}
        for kind in (MediaKind.AUDIO, MediaKind.VIDEO):
            if kind not in self.open_kinds or kind in busy or kind in self._st.refused:
                continue
            local = self.local_media.get(kind)
            cap = choose(self.capabilities, caps, video=kind is MediaKind.VIDEO)
            if local is None or cap is None:
                continue
            number = self._next_lc
            self._next_lc = self._next_lc % 65535 + 1
            pt = payload_type(cap)
            self._st.out[number] = _OutChannel(
                number=number, kind=kind, capability=cap, payload_type=pt
            )
            self._st.timers[(Timer.T103, number)] = now + self.timers.t103_s
            self.send(
                m.OpenLogicalChannel(
                    number=number,
                    forward=m.ChannelParams(
                        capability=cap,
                        session_id=2 if kind is MediaKind.VIDEO else 1,
                        media_control=local.rtcp,
                        dynamic_pt=pt if pt >= 96 else None,
                    ),
                )
            )
        return []


_Handler = Callable[[H245Session, Any, float], list[Event]]
_HANDLERS: dict[type, _Handler] = {
    m.TerminalCapabilitySet: H245Session._on_tcs,
    m.TerminalCapabilitySetAck: H245Session._on_tcs_ack,
    m.TerminalCapabilitySetReject: H245Session._on_tcs_reject,
    m.MasterSlaveDetermination: H245Session._on_msd,
    m.MasterSlaveDeterminationAck: H245Session._on_msd_ack,
    m.MasterSlaveDeterminationReject: H245Session._on_msd_reject,
    m.MasterSlaveDeterminationRelease: H245Session._on_msd_release,
    m.OpenLogicalChannel: H245Session._on_olc,
    m.OpenLogicalChannelAck: H245Session._on_olc_ack,
    m.OpenLogicalChannelReject: H245Session._on_olc_reject,
    m.CloseLogicalChannel: H245Session._on_clc,
    m.CloseLogicalChannelAck: H245Session._on_clc_ack,
    m.RequestChannelClose: H245Session._on_request_close,
    m.RoundTripDelayRequest: H245Session._on_rtd_request,
    m.RoundTripDelayResponse: H245Session._on_rtd_response,
    m.UserInput: H245Session._on_user_input,
    m.VideoFastUpdate: H245Session._on_vfu,
    m.FlowControl: H245Session._on_flow,
    m.EndSession: H245Session._on_end,
}
