"""An H.323 caller (tests and `vtcgw-load calls --protocol h323`): its own small state machine over our wire modules.

It speaks TPKT/Q.931 through :mod:`gateway.h323.q931` and PER through the pycrate wrapper
:mod:`gateway.h323.asn1`, but shares no state machine with the gateway: the call states,
Fast Start proposals and the minimal H.245 terminal below are written from the caller's
side of H.323 (sections 8.1.7 and 8.2-8.5), so a bug in the gateway's cores is not mirrored.

Modes (how the caller runs H.245): FAST_START (proposals in Setup, tunnelling on),
TUNNEL (no Fast Start, h245Tunnelling), SEPARATE (neither: the gateway offers an
h245Address in Connect and we connect to it), SEPARATE_OFFER (we listen and put our
h245Address in Setup; the gateway connects to us).
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import struct
from dataclasses import dataclass, field

from gateway.h323 import asn1, q931
from gateway.h323 import messages as m
from gateway.h323.q931 import MessageType
from gateway.h323.tpkt import TpktReader, frame


class Mode(enum.Enum):
    FAST_START = "fast-start"
    TUNNEL = "tunnel"
    SEPARATE = "separate"
    SEPARATE_OFFER = "separate-offer"


class EpState(enum.Enum):
    IDLE = "idle"
    SETUP_SENT = "setup-sent"  # H.323 8.1.1: awaiting CallProceeding/Alerting/Connect
    PROCEEDING = "proceeding"
    CONNECTED = "connected"
    RELEASED = "released"


PCMU = m.MediaCapability(format=m.MediaFormat.PCMU, frames=20)
G722 = m.MediaCapability(format=m.MediaFormat.G722, frames=20)
H264 = m.MediaCapability(format=m.MediaFormat.H264, max_bitrate_100bps=5000, h264_level=43)


@dataclass
class Media:
    """What the endpoint learned about one kind: where to send and what."""

    send_to: m.Address | None = None
    send_rtcp: m.Address | None = None
    send_format: m.MediaFormat | None = None
    receive_format: m.MediaFormat | None = None


@dataclass
class EndpointCore:
    """Sans-I/O caller: H.225.0 call + a minimal H.245 terminal (terminalType 50)."""

    dial: str
    mode: Mode
    audio: tuple[m.Address, m.Address]  # our RTP, RTCP
    video: tuple[m.Address, m.Address] | None = None
    h245_listen: m.Address | None = None
    audio_formats: tuple[m.MediaCapability, ...] = (PCMU, G722)
    alias_kind: m.AliasKind = m.AliasKind.DIALED_DIGITS
    raw_fast_start: tuple[bytes, ...] | None = None  # sent instead of real proposals (bad input)
    fast_start_video: bool = True  # False: Fast Start audio only, video later by H.245
    state: EpState = EpState.IDLE
    call_reference: int = field(
        default_factory=lambda: int.from_bytes(os.urandom(2), "big") & 0x7FFF or 1
    )
    guid: bytes = field(default_factory=lambda: os.urandom(16))
    media: dict[str, Media] = field(default_factory=lambda: {"audio": Media(), "video": Media()})
    gateway_h245: m.Address | None = None
    release_cause: int | None = None
    received: list[tuple[str, object]] = field(default_factory=list)  # log of what came in
    h245_msgs: list[m.H245Message] = field(default_factory=list)
    status_causes: list[int] = field(default_factory=list)
    connect_fast_start: bool = False
    _reader: TpktReader = field(default_factory=TpktReader)
    _out: list[bytes] = field(default_factory=list)
    _h245_out: list[bytes] = field(default_factory=list)
    _h245_started: bool = False
    _tcs_acked: bool = False
    _remote_tcs: m.TerminalCapabilitySet | None = None
    _opened: bool = False

    # ------------------------------------------------------------------ H.225.0

    @property
    def tunnelling(self) -> bool:
        return self.mode in (Mode.FAST_START, Mode.TUNNEL)

    def setup(self) -> None:
        fast = None
        if self.mode is Mode.FAST_START:
            fast = self.raw_fast_start or tuple(asn1.encode_olc(o) for o in self._proposals())
        ui = m.UserInformation(
            body=m.Body.SETUP,
            call_identifier=self.guid,
            conference_id=os.urandom(16),
            source_aliases=(m.Alias(kind=m.AliasKind.H323_ID, value="Test Room"),),
            destination_aliases=(m.Alias(kind=self.alias_kind, value=self.dial),),
            fast_start=fast,
            h245_tunnelling=self.tunnelling,
            h245_address=self.h245_listen if self.mode is Mode.SEPARATE_OFFER else None,
        )
        self._send(
            MessageType.SETUP, ui, bearer=q931.BEARER_UNRESTRICTED_DIGITAL, display="Test Room"
        )
        self.state = EpState.SETUP_SENT

    def _proposals(self) -> list[m.OpenLogicalChannel]:
        rtp, rtcp = self.audio
        out: list[m.OpenLogicalChannel] = []
        n = 1
        for cap in self.audio_formats:  # we transmit (forward) ...
            out.append(
                m.OpenLogicalChannel(
                    number=n,
                    forward=m.ChannelParams(capability=cap, session_id=1, media_control=rtcp),
                )
            )
            n += 1
        for cap in self.audio_formats:  # ... and receive (reverse, nullData forward)
            out.append(
                m.OpenLogicalChannel(
                    number=n,
                    forward=None,
                    reverse=m.ChannelParams(
                        capability=cap, session_id=1, media_channel=rtp, media_control=rtcp
                    ),
                )
            )
            n += 1
        if self.video is not None and self.fast_start_video:
            vrtp, vrtcp = self.video
            out.append(
                m.OpenLogicalChannel(
                    number=n,
                    forward=m.ChannelParams(
                        capability=H264, session_id=2, media_control=vrtcp, dynamic_pt=97
                    ),
                )
            )
            out.append(
                m.OpenLogicalChannel(
                    number=n + 1,
                    forward=None,
                    reverse=m.ChannelParams(
                        capability=H264,
                        session_id=2,
                        media_channel=vrtp,
                        media_control=vrtcp,
                        dynamic_pt=97,
                    ),
                )
            )
        return out

    def send_keypad(self, digits: str) -> None:
        self._send(
            MessageType.INFORMATION,
            m.UserInformation(
                body=m.Body.INFORMATION, call_identifier=self.guid, h245_tunnelling=self.tunnelling
            ),
            keypad=digits,
        )

    def hangup(self, cause: int = 16) -> None:
        if self.state is EpState.RELEASED:
            return
        self._send(
            MessageType.RELEASE_COMPLETE,
            m.UserInformation(
                body=m.Body.RELEASE_COMPLETE,
                call_identifier=self.guid,
                h245_tunnelling=self.tunnelling,
            ),
            cause=cause,
        )
        self.state = EpState.RELEASED

    def send_raw(self, payload: bytes) -> None:
        self._out.append(frame(payload))

    def data_to_send(self) -> bytes:
        if (
            self.tunnelling
            and self._h245_out
            and self.state in (EpState.PROCEEDING, EpState.CONNECTED)
        ):
            pdus, self._h245_out = self._h245_out, []
            self._send(
                MessageType.FACILITY,
                m.UserInformation(
                    body=m.Body.EMPTY, h245_tunnelling=True, h245_control=tuple(pdus)
                ),
            )
        out, self._out = self._out, []
        return b"".join(out)

    def receive_data(self, data: bytes) -> None:
        for payload in self._reader.feed(data):
            msg = q931.decode(payload)
            ui = asn1.decode_user_information(msg.user_user) if msg.user_user else None
            self.received.append((MessageType(msg.message_type).name, ui))
            if not msg.from_destination or msg.call_reference != self.call_reference:
                self.received.append(("bad-call-reference", msg.call_reference))
            self._on_message(msg, ui)

    def _on_message(self, msg: q931.Message, ui: m.UserInformation | None) -> None:
        t = msg.message_type
        if t is MessageType.RELEASE_COMPLETE:
            self.state = EpState.RELEASED
            self.release_cause = msg.cause
            return
        if t is MessageType.STATUS:
            self.status_causes.append(msg.cause or 0)
            return
        if (
            t in (MessageType.CALL_PROCEEDING, MessageType.ALERTING)
            and self.state is EpState.SETUP_SENT
        ):
            self.state = EpState.PROCEEDING
        if t is MessageType.CONNECT and self.state in (EpState.SETUP_SENT, EpState.PROCEEDING):
            self.state = EpState.CONNECTED
        if ui is None:
            return
        if ui.fast_start:
            self.connect_fast_start = True
            for raw in ui.fast_start:
                self._on_fast_start_answer(asn1.decode_olc(raw))
        if ui.h245_address:
            self.gateway_h245 = ui.h245_address
        for pdu in ui.h245_control:
            self.h245_receive(pdu)

    def _on_fast_start_answer(self, olc: m.OpenLogicalChannel) -> None:
        # H.323 8.1.7.1: a forward answer names where the gateway receives what we send;
        # a reverse answer tells what it will send us
        if olc.forward is not None:
            kind = "video" if olc.forward.capability.format.is_video else "audio"
            self.media[kind].send_to = olc.forward.media_channel
            self.media[kind].send_rtcp = olc.forward.media_control
            self.media[kind].send_format = olc.forward.capability.format
        if olc.reverse is not None:
            kind = "video" if olc.reverse.capability.format.is_video else "audio"
            self.media[kind].receive_format = olc.reverse.capability.format

    def _send(
        self,
        mtype: MessageType,
        ui: m.UserInformation | None,
        *,
        cause: int | None = None,
        keypad: str | None = None,
        bearer: bytes | None = None,
        display: str | None = None,
    ) -> None:
        if (
            ui is not None
            and self.tunnelling
            and self._h245_out
            and mtype is not MessageType.RELEASE_COMPLETE
        ):
            ui = m.UserInformation(
                **{
                    **{f: getattr(ui, f) for f in ui.__dataclass_fields__},
                    "h245_control": tuple(self._h245_out),
                }
            )
            self._h245_out = []
        msg = q931.Message(
            message_type=mtype,
            call_reference=self.call_reference,
            from_destination=False,
            bearer_capability=bearer,
            cause=cause,
            keypad=keypad,
            display=display,
            called_number=self.dial if mtype is MessageType.SETUP and self.dial.isdigit() else None,
            user_user=asn1.encode_user_information(ui) if ui is not None else None,
        )
        self._out.append(frame(q931.encode(msg)))

    # ------------------------------------------------------------------ minimal H.245 terminal

    def h245_start(self) -> None:
        if self._h245_started:
            return
        self._h245_started = True
        caps = (*self.audio_formats, *((H264,) if self.video else ()))
        self.h245_send(
            m.TerminalCapabilitySet(
                sequence_number=1, capabilities=caps, user_input=frozenset({"dtmf", "basicString"})
            )
        )
        self.h245_send(
            m.MasterSlaveDetermination(
                terminal_type=50, status_determination_number=int.from_bytes(os.urandom(3), "big")
            )
        )

    def h245_send(self, msg: m.H245Message) -> None:
        self._h245_out.append(asn1.encode_h245(msg))

    def h245_pdus(self) -> list[bytes]:
        out, self._h245_out = self._h245_out, []
        return out

    def h245_receive(self, pdu: bytes) -> None:
        msg = asn1.decode_h245(pdu)
        self.h245_msgs.append(msg)
        if not self._h245_started:
            self.h245_start()
        match msg:
            case m.TerminalCapabilitySet():
                self._remote_tcs = msg
                self.h245_send(m.TerminalCapabilitySetAck(sequence_number=msg.sequence_number))
            case m.TerminalCapabilitySetAck():
                self._tcs_acked = True
            case m.MasterSlaveDetermination():
                # 190 (gateway) > 50: the gateway is master, we tell it so
                self.h245_send(m.MasterSlaveDeterminationAck(master=msg.terminal_type > 50))
            case m.OpenLogicalChannel(forward=fwd) if fwd is not None:
                kind = "video" if fwd.capability.format.is_video else "audio"
                rtp, rtcp = self.audio if kind == "audio" else (self.video or self.audio)
                self.media[kind].receive_format = fwd.capability.format
                self.h245_send(
                    m.OpenLogicalChannelAck(
                        number=msg.number,
                        session_id=fwd.session_id,
                        media_channel=rtp,
                        media_control=rtcp,
                    )
                )
            case m.OpenLogicalChannelAck():
                kind = "video" if msg.session_id == 2 else "audio"
                self.media[kind].send_to = msg.media_channel
                self.media[kind].send_rtcp = msg.media_control
            case m.RoundTripDelayRequest():
                self.h245_send(m.RoundTripDelayResponse(sequence_number=msg.sequence_number))
        if self._remote_tcs is not None and self._tcs_acked and not self._opened:
            self._opened = True
            if self.mode is not Mode.FAST_START:
                self._open_channels(audio=True, video=True)
            elif not self.fast_start_video:
                self._open_channels(audio=False, video=True)

    def _open_channels(self, *, audio: bool, video: bool) -> None:
        assert self._remote_tcs is not None
        theirs = {c.format for c in self._remote_tcs.capabilities}
        cap = next((c for c in self.audio_formats if c.format in theirs), None)
        if cap is not None and audio:
            self.media["audio"].send_format = cap.format
            self.h245_send(
                m.OpenLogicalChannel(
                    number=1,
                    forward=m.ChannelParams(
                        capability=cap, session_id=1, media_control=self.audio[1]
                    ),
                )
            )
        if video and self.video is not None and m.MediaFormat.H264 in theirs:
            self.media["video"].send_format = m.MediaFormat.H264
            self.h245_send(
                m.OpenLogicalChannel(
                    number=2,
                    forward=m.ChannelParams(
                        capability=H264, session_id=2, media_control=self.video[1], dynamic_pt=97
                    ),
                )
            )


# ---------------------------------------------------------------------------- asyncio driver


class _Stream(asyncio.Protocol):
    def __init__(self, on_data, on_lost) -> None:  # type: ignore[no-untyped-def]
        self.on_data, self.on_lost = on_data, on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, sink: list[tuple[bytes, tuple[str, int]]], changed: asyncio.Event) -> None:
        self.sink, self.changed = sink, changed

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sink.append((data, addr))
        self.changed.set()


class H323Caller:
    """Drives :class:`EndpointCore` over real TCP/UDP on loopback."""

    def __init__(
        self,
        dial: str,
        mode: Mode,
        *,
        video: bool = False,
        host: str = "127.0.0.1",
        alias_kind: m.AliasKind = m.AliasKind.DIALED_DIGITS,
        audio_formats: tuple[m.MediaCapability, ...] = (PCMU, G722),
        raw_fast_start: tuple[bytes, ...] | None = None,
        dial_h245: bool = True,
        early_h245: bool = False,
        fast_start_video: bool = True,
    ) -> None:
        self.dial, self.mode, self.want_video, self.host, self.alias_kind = (
            dial,
            mode,
            video,
            host,
            alias_kind,
        )
        self.audio_formats = audio_formats
        self.raw_fast_start = raw_fast_start
        self._tasks: set[asyncio.Task[None]] = set()
        self.dial_h245 = dial_h245
        self.early_h245 = early_h245
        self.fast_start_video = (
            fast_start_video  # tunnelled TCS + MSD inside the Setup itself (Cisco habit)
        )
        self.changed = asyncio.Event()
        self.rtp_in: dict[str, list[tuple[bytes, tuple[str, int]]]] = {"audio": [], "video": []}
        self._rtp: dict[str, asyncio.DatagramTransport] = {}
        self._sig: _Stream | None = None
        self._h245: _Stream | None = None
        self._h245_server: asyncio.AbstractServer | None = None
        self._h245_reader = TpktReader()
        self.signalling_closed = False
        self.core: EndpointCore | None = None
        self._seq = 0

    async def _udp(self, kind: str) -> tuple[m.Address, m.Address]:
        loop = asyncio.get_running_loop()
        for _ in range(50):  # an even/odd pair
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.host, 0))
            port = s.getsockname()[1]
            if port % 2:
                s.close()
                continue
            r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                r.bind((self.host, port + 1))
            except OSError:
                s.close()
                r.close()
                continue
            t, _ = await loop.create_datagram_endpoint(
                lambda: _Rtp(self.rtp_in[kind], self.changed), sock=s
            )
            self._rtp[kind] = t  # type: ignore[assignment]
            r.close()  # RTCP is not checked by these tests: keep the port number only
            return (self.host, port), (self.host, port + 1)
        raise RuntimeError("no even UDP port")

    async def call(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        audio = await self._udp("audio")
        video = await self._udp("video") if self.want_video else None
        listen = None
        if self.mode is Mode.SEPARATE_OFFER:
            self._h245_server = await loop.create_server(
                lambda: self._h245_protocol(), self.host, 0
            )
            listen = (self.host, self._h245_server.sockets[0].getsockname()[1])
        self.core = EndpointCore(
            dial=self.dial,
            mode=self.mode,
            audio=audio,
            video=video,
            h245_listen=listen,
            alias_kind=self.alias_kind,
            audio_formats=self.audio_formats,
            raw_fast_start=self.raw_fast_start,
            fast_start_video=self.fast_start_video,
        )
        _, self._sig = await loop.create_connection(
            lambda: _Stream(self._on_sig, self._on_sig_lost), self.host, port
        )
        if self.early_h245 and self.core.tunnelling:
            self.core.h245_start()
        self.core.setup()
        self._flush()

    def _h245_protocol(self) -> _Stream:
        stream = _Stream(self._on_h245, lambda: self.changed.set())
        self._h245 = stream
        asyncio.get_running_loop().call_soon(self._h245_up)
        return stream

    def _h245_up(self) -> None:
        assert self.core is not None
        self.core.h245_start()
        self._flush()

    def _on_sig(self, data: bytes) -> None:
        assert self.core is not None
        self.core.receive_data(data)
        if (
            self.mode is Mode.SEPARATE
            and self.dial_h245
            and self.core.gateway_h245
            and self._h245 is None
        ):
            self._h245 = _Stream(self._on_h245, lambda: self.changed.set())
            task = asyncio.get_running_loop().create_task(self._dial_h245(self.core.gateway_h245))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._flush()
        self.changed.set()

    async def _dial_h245(self, addr: m.Address) -> None:
        assert self._h245 is not None
        stream = self._h245
        await asyncio.get_running_loop().create_connection(lambda: stream, addr[0], addr[1])
        self._h245_up()

    def _on_h245(self, data: bytes) -> None:
        assert self.core is not None
        for pdu in self._h245_reader.feed(data):
            self.core.h245_receive(pdu)
        self._flush()
        self.changed.set()

    def _on_sig_lost(self) -> None:
        self.signalling_closed = True
        self.changed.set()

    def _flush(self) -> None:
        assert self.core is not None
        if not self.core.tunnelling and self._h245 is not None and self._h245.transport is not None:
            data = b"".join(frame(p) for p in self.core.h245_pdus())
            if data:
                self._h245.transport.write(data)
        out = self.core.data_to_send()
        if (
            out
            and self._sig is not None
            and self._sig.transport is not None
            and not self._sig.transport.is_closing()
        ):
            self._sig.transport.write(out)

    # ------------------------------------------------------------------ test helpers

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    def send_uii(self, digit: str, signal: bool = False) -> None:
        assert self.core is not None
        self.core.h245_send(
            m.UserInput(text=digit, signal=signal, duration_ms=100 if signal else None)
        )
        self._flush()

    def send_keypad(self, digits: str) -> None:
        assert self.core is not None
        self.core.send_keypad(digits)
        self._flush()

    def send_vfu(self) -> None:
        assert self.core is not None
        self.core.h245_send(m.VideoFastUpdate(channel=1))
        self._flush()

    @property
    def local_port(self) -> int:
        assert self._sig is not None and self._sig.transport is not None
        return int(self._sig.transport.get_extra_info("sockname")[1])

    @property
    def h245_up(self) -> bool:
        return self._h245 is not None and self._h245.transport is not None

    def send_raw_h245(self, data: bytes) -> None:
        assert self._h245 is not None and self._h245.transport is not None
        self._h245.transport.write(data)

    def send_raw_signalling(self, data: bytes) -> None:
        assert self._sig is not None and self._sig.transport is not None
        self._sig.transport.write(data)

    def send_rtp(self, kind: str, payload: bytes, pt: int) -> None:
        assert self.core is not None
        dest = self.core.media[kind].send_to
        assert dest is not None, f"no {kind} destination yet"
        self._seq += 1
        header = struct.pack(
            "!BBHII", 0x80, pt & 0x7F, self._seq & 0xFFFF, self._seq * 160, 0x1234ABCD
        )
        self._rtp[kind].sendto(header + payload, dest)

    def hangup(self) -> None:
        assert self.core is not None
        self.core.hangup(16)
        self._flush()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for t in self._rtp.values():
            t.close()
        if self._h245 is not None and self._h245.transport is not None:
            self._h245.transport.close()
        if self._h245_server is not None:
            self._h245_server.close()
        if self._sig is not None and self._sig.transport is not None:
            self._sig.transport.close()
