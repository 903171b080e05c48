"""The one door to pycrate's H.225.0 and H.245 ASN.1 (aligned PER; STYLE.md item 7).

Rules kept here:
- This is the only module that imports ``pycrate_asn1dir.H225`` / ``H245``; the import is
  lazy (about 0.4 s each) and happens on first use.
- pycrate PDU objects are shared singletons, so each call sets the value and encodes (or
  decodes and reads the value) in one synchronous step under a lock, and never hands a
  pycrate object out: values cross this edge only as our frozen dataclasses
  (:mod:`gateway.h323.messages`).
- Any decode failure (``ASN1Err`` or anything else pycrate raises on hostile input) becomes
  :class:`RemoteProtocolError` with a Q.850 cause (100 for the H.225.0 user-user IE,
  111 for H.245), which the call core answers with ReleaseComplete.
- pycrate uses ITU spellings (INTEROP.md gotcha 8): ``dialledDigits``, ``h245Tunnelling``,
  ``capabilityTableEntryNumber``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from gateway.h323 import messages as m
from gateway.h323.errors import Cause, RemoteProtocolError

T = TypeVar("T")

H225_PROTOCOL_ID = (0, 0, 8, 2250, 0, 4)  # H.225.0 version 4
H245_PROTOCOL_ID = (0, 0, 8, 245, 0, 13)  # H.245 version 13
H264_OID = (0, 0, 8, 241, 0, 0, 1)  # H.241 generic capability identifier
VENDOR = {"t35CountryCode": 0xB5, "t35Extension": 0, "manufacturerCode": 0x7663}
PRODUCT = b"vtcgw"
VERSION = b"0.1"

_lock = threading.Lock()


@cache
def _h225() -> Any:
    from pycrate_asn1dir import H225

    return H225.H323_MESSAGES


@cache
def _h245() -> Any:
    from pycrate_asn1dir import H245

    return H245.MULTIMEDIA_SYSTEM_CONTROL


def preload() -> None:
    """Import both specs now (the service calls this before accepting calls)."""
    _h225()
    _h245()


# ------------------------------------------------------------------------------ addresses


def _ip_bytes(host: str) -> bytes:
    return ipaddress.IPv4Address(host).packed


def _h225_addr(addr: m.Address) -> tuple[str, dict[str, Any]]:
    return ("ipAddress", {"ip": _ip_bytes(addr[0]), "port": addr[1]})


def _from_h225_addr(val: Any) -> m.Address | None:
    if isinstance(val, tuple) and val[0] == "ipAddress":
        return (str(ipaddress.IPv4Address(val[1]["ip"])), val[1]["port"])
    return None


def _h245_addr(addr: m.Address) -> tuple[str, Any]:
    return (
        "unicastAddress",
        ("iPAddress", {"network": _ip_bytes(addr[0]), "tsapIdentifier": addr[1]}),
    )


def _from_h245_addr(val: Any) -> m.Address | None:
    if isinstance(val, tuple) and val[0] == "unicastAddress" and val[1][0] == "iPAddress":
        ip = val[1][1]
        return (str(ipaddress.IPv4Address(ip["network"])), ip["tsapIdentifier"])
    return None


# -------------------------------------------------------------------------------- H.225.0


def _alias_val(alias: m.Alias) -> tuple[str, Any]:
    if alias.kind is m.AliasKind.PARTY_NUMBER:
        return (
            "partyNumber",
            (
                "e164Number",
                {"publicTypeOfNumber": ("unknown", 0), "publicNumberDigits": alias.value},
            ),
        )
    return (alias.kind.value, alias.value)


def _from_alias(val: Any) -> m.Alias | None:
    name, inner = val
    if name == "partyNumber":
        kind, num = inner
        digits = (
            num.get("publicNumberDigits") or num.get("privateNumberDigits")
            if isinstance(num, dict)
            else None
        )
        return m.Alias(kind=m.AliasKind.PARTY_NUMBER, value=digits) if digits else None
    try:
        kind = m.AliasKind(name)
    except ValueError:
        return None  # transportID, mobileUIM, isupNumber: not a dial string
    return m.Alias(kind=kind, value=str(inner))


def _endpoint_type() -> dict[str, Any]:
    return {
        "vendor": {"vendor": VENDOR, "productId": PRODUCT, "versionId": VERSION},
        "mcu": {},
        "mc": False,
        "undefinedNode": False,
    }


def _product(endpoint: Any) -> str:
    vendor = endpoint.get("vendor") if isinstance(endpoint, dict) else None
    if not vendor:
        return ""
    parts = [vendor.get("productId", b""), vendor.get("versionId", b"")]
    return " ".join(p.decode("latin-1", "replace") for p in parts if p)[:120]


def _uuie_body(ui: m.UserInformation) -> Any:
    """The message-body value for ``ui`` (H.225.0 annex H field by field)."""
    if ui.body is m.Body.EMPTY:
        return 0
    body: dict[str, Any] = {"protocolIdentifier": H225_PROTOCOL_ID}
    cid = {"guid": ui.call_identifier} if ui.call_identifier else None
    b = ui.body
    if b is m.Body.SETUP:
        body.update(
            sourceInfo={"terminal": {}, "mc": False, "undefinedNode": False},
            activeMC=False,
            conferenceID=ui.conference_id or bytes(16),
            conferenceGoal=("create", 0),
            callType=("pointToPoint", 0),
            callIdentifier=cid or {"guid": bytes(16)},
            mediaWaitForConnect=ui.media_wait_for_connect,
            canOverlapSend=False,
            multipleCalls=False,
            maintainConnection=False,
        )
        if ui.source_aliases:
            body["sourceAddress"] = [_alias_val(a) for a in ui.source_aliases]
        if ui.destination_aliases:
            body["destinationAddress"] = [_alias_val(a) for a in ui.destination_aliases]
    elif b in (m.Body.CALL_PROCEEDING, m.Body.ALERTING, m.Body.CONNECT, m.Body.PROGRESS):
        body["destinationInfo"] = _endpoint_type()
        if b is m.Body.CONNECT:
            body["conferenceID"] = ui.conference_id or bytes(16)
        body["callIdentifier"] = cid or {"guid": bytes(16)}
        body["multipleCalls"] = False
        body["maintainConnection"] = False
    elif b is m.Body.RELEASE_COMPLETE:
        if ui.release_reason:
            body["reason"] = (ui.release_reason, 0)
        if cid:
            body["callIdentifier"] = cid
    elif b is m.Body.FACILITY:
        body["reason"] = (ui.facility_reason, 0)
        body["callIdentifier"] = cid or {"guid": bytes(16)}
        body["multipleCalls"] = False
        body["maintainConnection"] = False
    else:  # information, status, statusInquiry, notify, setupAcknowledge
        body["callIdentifier"] = cid or {"guid": bytes(16)}
    if ui.h245_address and b in (
        m.Body.SETUP,
        m.Body.CALL_PROCEEDING,
        m.Body.ALERTING,
        m.Body.CONNECT,
        m.Body.PROGRESS,
        m.Body.FACILITY,
    ):
        body["h245Address"] = _h225_addr(ui.h245_address)
    if ui.fast_start is not None and b in (
        m.Body.SETUP,
        m.Body.CALL_PROCEEDING,
        m.Body.ALERTING,
        m.Body.CONNECT,
        m.Body.PROGRESS,
        m.Body.FACILITY,
    ):
        body["fastStart"] = list(ui.fast_start)
    if ui.fast_connect_refused and b in (m.Body.CALL_PROCEEDING, m.Body.ALERTING, m.Body.CONNECT):
        body["fastConnectRefused"] = 0
    return body


def encode_user_information(ui: m.UserInformation) -> bytes:
    pdu: dict[str, Any] = {
        "h323-message-body": (ui.body.value, _uuie_body(ui)),
        "h245Tunnelling": ui.h245_tunnelling,
    }
    if ui.h245_control:
        pdu["h245Control"] = list(ui.h245_control)
    with _lock:
        obj = _h225().H323_UserInformation
        obj.set_val({"h323-uu-pdu": pdu})
        return bytes(obj.to_aper())


def decode_user_information(data: bytes) -> m.UserInformation:
    try:
        with _lock:
            obj = _h225().H323_UserInformation
            obj.from_aper(data)
            val = obj.get_val()
        return _read_uuie(val["h323-uu-pdu"])
    except RemoteProtocolError:
        raise
    except Exception as exc:  # pycrate raises ASN1Err, but also IndexError etc. on junk
        raise RemoteProtocolError(f"H.225.0 PER: {exc}"[:200], Cause.INVALID_IE_CONTENTS) from exc


def _read_uuie(pdu: dict[str, Any]) -> m.UserInformation:
    name, body = pdu["h323-message-body"]
    try:
        kind = m.Body(name)
    except ValueError:
        raise RemoteProtocolError(f"H.225.0 body {name}", Cause.MESSAGE_TYPE_NONEXISTENT) from None
    body = body if isinstance(body, dict) else {}
    cid = body.get("callIdentifier", {}).get("guid")
    info = body.get("sourceInfo") or body.get("destinationInfo") or {}
    reason = body.get("reason")
    return m.UserInformation(
        body=kind,
        call_identifier=cid,
        conference_id=body.get("conferenceID"),
        source_aliases=tuple(a for a in map(_from_alias, body.get("sourceAddress", ())) if a),
        destination_aliases=tuple(
            a for a in map(_from_alias, body.get("destinationAddress", ())) if a
        ),
        h245_address=_from_h225_addr(body.get("h245Address")),
        fast_start=tuple(body["fastStart"]) if "fastStart" in body else None,
        fast_connect_refused="fastConnectRefused" in body,
        media_wait_for_connect=bool(body.get("mediaWaitForConnect", False)),
        h245_tunnelling=bool(pdu.get("h245Tunnelling", False)),
        h245_control=tuple(pdu.get("h245Control", ())),
        product=_product(info),
        facility_reason=reason[0] if kind is m.Body.FACILITY and reason else "undefinedReason",
        release_reason=reason[0] if kind is m.Body.RELEASE_COMPLETE and reason else None,
    )


# ---------------------------------------------------------------------------------- H.245

_AUDIO = {f.value: f for f in (m.MediaFormat.PCMU, m.MediaFormat.PCMA, m.MediaFormat.G722)}
_PROFILE, _LEVEL = 41, 42  # H.241 table 8-3 parameter identifiers


def _cap_val(cap: m.MediaCapability) -> tuple[str, Any]:
    """AudioCapability / VideoCapability alternative for ``cap``."""
    f = cap.format
    if not f.is_video:
        return (f.value, cap.frames)
    if f is m.MediaFormat.H264:
        return (
            "genericVideoCapability",
            {
                "capabilityIdentifier": ("standard", H264_OID),
                "maxBitRate": cap.max_bitrate_100bps,
                "collapsing": [
                    {
                        "parameterIdentifier": ("standard", _PROFILE),
                        "parameterValue": ("booleanArray", cap.h264_profile),
                    },
                    {
                        "parameterIdentifier": ("standard", _LEVEL),
                        "parameterValue": ("unsignedMin", cap.h264_level),
                    },
                ],
            },
        )
    return (
        "h263VideoCapability",
        {
            "qcifMPI": 1,
            "cifMPI": 1,
            "maxBitRate": cap.max_bitrate_100bps,
            "unrestrictedVector": False,
            "arithmeticCoding": False,
            "advancedPrediction": False,
            "pbFrames": False,
            "temporalSpatialTradeOffCapability": False,
        },
    )


def _from_cap_val(kind: str, val: Any) -> m.MediaCapability | None:
    """``kind`` is audioData / videoData (or the TCS receive*Capability it maps from)."""
    name, inner = val
    if kind == "audio":
        fmt = _AUDIO.get(name)
        return m.MediaCapability(format=fmt, frames=int(inner)) if fmt else None
    if name == "h263VideoCapability":
        return m.MediaCapability(
            format=m.MediaFormat.H263, max_bitrate_100bps=inner.get("maxBitRate", 0)
        )
    if name == "genericVideoCapability" and inner.get("capabilityIdentifier") == (
        "standard",
        H264_OID,
    ):
        profile, level = 64, 29
        for p in inner.get("collapsing", ()):
            ident, value = p["parameterIdentifier"], p["parameterValue"]
            if ident == ("standard", _PROFILE):
                profile = int(value[1])
            elif ident == ("standard", _LEVEL):
                level = int(value[1])
        return m.MediaCapability(
            format=m.MediaFormat.H264,
            max_bitrate_100bps=inner.get("maxBitRate", 0),
            h264_profile=profile,
            h264_level=level,
        )
    return None


def _data_type(cap: m.MediaCapability) -> tuple[str, Any]:
    return ("videoData" if cap.format.is_video else "audioData", _cap_val(cap))


def _h2250_params(p: m.ChannelParams) -> dict[str, Any]:
    out: dict[str, Any] = {"sessionID": p.session_id}
    if p.media_channel:
        out["mediaChannel"] = _h245_addr(p.media_channel)
    if p.media_control:
        out["mediaControlChannel"] = _h245_addr(p.media_control)
    if p.dynamic_pt is not None:
        out["dynamicRTPPayloadType"] = p.dynamic_pt
    return out


def _olc_val(olc: m.OpenLogicalChannel) -> dict[str, Any]:
    fwd: dict[str, Any]
    if olc.forward is None:
        fwd = {"dataType": ("nullData", 0), "multiplexParameters": ("none", 0)}
    else:
        fwd = {
            "dataType": _data_type(olc.forward.capability),
            "multiplexParameters": ("h2250LogicalChannelParameters", _h2250_params(olc.forward)),
        }
    val: dict[str, Any] = {
        "forwardLogicalChannelNumber": olc.number,
        "forwardLogicalChannelParameters": fwd,
    }
    if olc.reverse is not None:
        val["reverseLogicalChannelParameters"] = {
            "dataType": _data_type(olc.reverse.capability),
            "multiplexParameters": ("h2250LogicalChannelParameters", _h2250_params(olc.reverse)),
        }
    return val


def _read_params(params: dict[str, Any]) -> m.ChannelParams | None:
    dname, dval = params["dataType"]
    if dname not in ("audioData", "videoData"):
        return None
    cap = _from_cap_val("audio" if dname == "audioData" else "video", dval)
    mux = params.get("multiplexParameters")
    if cap is None:
        # a data type we do not support: keep a placeholder so the caller can reject it
        return None
    h = mux[1] if mux and mux[0] == "h2250LogicalChannelParameters" else {}
    return m.ChannelParams(
        capability=cap,
        session_id=h.get("sessionID", 2 if cap.format.is_video else 1),
        media_channel=_from_h245_addr(h.get("mediaChannel")),
        media_control=_from_h245_addr(h.get("mediaControlChannel")),
        dynamic_pt=h.get("dynamicRTPPayloadType"),
    )


class UnsupportedDataType(RemoteProtocolError):
    """An OpenLogicalChannel whose data type we do not know (answered by OLCReject)."""

    def __init__(self, number: int) -> None:
        super().__init__(
            f"logical channel {number}: unsupported data type", Cause.INCOMPATIBLE_DESTINATION
        )
        self.number = number


def _read_olc(val: dict[str, Any]) -> m.OpenLogicalChannel:
    number = val["forwardLogicalChannelNumber"]
    fwd_raw = val["forwardLogicalChannelParameters"]
    fwd = None
    if fwd_raw["dataType"][0] != "nullData":
        fwd = _read_params(fwd_raw)
        if fwd is None:
            raise UnsupportedDataType(number)
    rev = None
    if "reverseLogicalChannelParameters" in val:
        rev = _read_params(val["reverseLogicalChannelParameters"])
        if rev is None:
            raise UnsupportedDataType(number)
    if fwd is None and rev is None:
        raise UnsupportedDataType(number)
    return m.OpenLogicalChannel(number=number, forward=fwd, reverse=rev)


def _h2250_capability(rtcp_video_control: bool) -> dict[str, Any]:
    mp = {
        "multicastCapability": False,
        "multiUniCastConference": False,
        "mediaDistributionCapability": [
            {
                "centralizedControl": True,
                "distributedControl": False,
                "centralizedAudio": True,
                "distributedAudio": False,
                "centralizedVideo": True,
                "distributedVideo": False,
            }
        ],
    }
    return {
        "maximumAudioDelayJitter": 60,
        "receiveMultipointCapability": mp,
        "transmitMultipointCapability": mp,
        "receiveAndTransmitMultipointCapability": mp,
        "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
        "rtcpVideoControlCapability": rtcp_video_control,
        "mediaPacketizationCapability": {"h261aVideoPacketization": False},
        "logicalChannelSwitchingCapability": False,
        "t120DynamicPortCapability": False,
    }


def _tcs_val(tcs: m.TerminalCapabilitySet) -> dict[str, Any]:
    val: dict[str, Any] = {
        "sequenceNumber": tcs.sequence_number,
        "protocolIdentifier": H245_PROTOCOL_ID,
    }
    if tcs.empty:
        return val
    table: list[dict[str, Any]] = []
    audio: list[int] = []
    video: list[int] = []
    for cap in tcs.capabilities:
        n = len(table) + 1
        alt = "receiveVideoCapability" if cap.format.is_video else "receiveAudioCapability"
        table.append({"capabilityTableEntryNumber": n, "capability": (alt, _cap_val(cap))})
        (video if cap.format.is_video else audio).append(n)
    other: list[int] = []
    for ui in sorted(tcs.user_input):
        n = len(table) + 1
        table.append(
            {"capabilityTableEntryNumber": n, "capability": ("receiveUserInputCapability", (ui, 0))}
        )
        other.append(n)
    alternatives = [group for group in (audio, video) if group] + [[n] for n in other]
    val["multiplexCapability"] = ("h2250Capability", _h2250_capability(tcs.rtcp_video_control))
    val["capabilityTable"] = table
    val["capabilityDescriptors"] = [
        {"capabilityDescriptorNumber": 0, "simultaneousCapabilities": alternatives}
    ]
    return val


def _read_tcs(val: dict[str, Any]) -> m.TerminalCapabilitySet:
    if "capabilityTable" not in val:
        return m.TerminalCapabilitySet(sequence_number=val["sequenceNumber"], empty=True)
    caps: list[m.MediaCapability] = []
    ui: set[str] = set()
    mux = val.get("multiplexCapability")
    fir = bool(mux and mux[0] == "h2250Capability" and mux[1].get("rtcpVideoControlCapability"))
    for entry in val["capabilityTable"]:
        if "capability" not in entry:
            continue
        alt, inner = entry["capability"]
        if alt in ("receiveAudioCapability", "receiveAndTransmitAudioCapability"):
            cap = _from_cap_val("audio", inner)
        elif alt in ("receiveVideoCapability", "receiveAndTransmitVideoCapability"):
            cap = _from_cap_val("video", inner)
        elif alt in ("receiveUserInputCapability", "receiveAndTransmitUserInputCapability"):
            ui.add(inner[0])
            continue
        else:
            continue
        if cap is not None:
            caps.append(cap)
    return m.TerminalCapabilitySet(
        sequence_number=val["sequenceNumber"],
        capabilities=tuple(caps),
        user_input=frozenset(ui),
        rtcp_video_control=fir,
    )


def _h245_val(msg: m.H245Message) -> tuple[str, tuple[str, Any]]:  # noqa: C901 - one row per message
    match msg:
        case m.TerminalCapabilitySet():
            return ("request", ("terminalCapabilitySet", _tcs_val(msg)))
        case m.TerminalCapabilitySetAck(sequence_number=n):
            return ("response", ("terminalCapabilitySetAck", {"sequenceNumber": n}))
        case m.TerminalCapabilitySetReject(sequence_number=n):
            return (
                "response",
                ("terminalCapabilitySetReject", {"sequenceNumber": n, "cause": ("unspecified", 0)}),
            )
        case m.TerminalCapabilitySetRelease():
            return ("indication", ("terminalCapabilitySetRelease", {}))
        case m.MasterSlaveDetermination(terminal_type=t, status_determination_number=s):
            return (
                "request",
                ("masterSlaveDetermination", {"terminalType": t, "statusDeterminationNumber": s}),
            )
        case m.MasterSlaveDeterminationAck(master=master):
            return (
                "response",
                ("masterSlaveDeterminationAck", {"decision": ("master" if master else "slave", 0)}),
            )
        case m.MasterSlaveDeterminationReject():
            return (
                "response",
                ("masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)}),
            )
        case m.MasterSlaveDeterminationRelease():
            return ("indication", ("masterSlaveDeterminationRelease", {}))
        case m.OpenLogicalChannel():
            return ("request", ("openLogicalChannel", _olc_val(msg)))
        case m.OpenLogicalChannelAck(number=n):
            ack: dict[str, Any] = {"forwardLogicalChannelNumber": n}
            params: dict[str, Any] = {}
            if msg.session_id is not None:
                params["sessionID"] = msg.session_id
            if msg.media_channel:
                params["mediaChannel"] = _h245_addr(msg.media_channel)
            if msg.media_control:
                params["mediaControlChannel"] = _h245_addr(msg.media_control)
            ack["forwardMultiplexAckParameters"] = ("h2250LogicalChannelAckParameters", params)
            return ("response", ("openLogicalChannelAck", ack))
        case m.OpenLogicalChannelReject(number=n, cause=c):
            return (
                "response",
                ("openLogicalChannelReject", {"forwardLogicalChannelNumber": n, "cause": (c, 0)}),
            )
        case m.OpenLogicalChannelConfirm(number=n):
            return ("indication", ("openLogicalChannelConfirm", {"forwardLogicalChannelNumber": n}))
        case m.CloseLogicalChannel(number=n):
            return (
                "request",
                ("closeLogicalChannel", {"forwardLogicalChannelNumber": n, "source": ("user", 0)}),
            )
        case m.CloseLogicalChannelAck(number=n):
            return ("response", ("closeLogicalChannelAck", {"forwardLogicalChannelNumber": n}))
        case m.RequestChannelClose(number=n):
            return ("request", ("requestChannelClose", {"forwardLogicalChannelNumber": n}))
        case m.RoundTripDelayRequest(sequence_number=n):
            return ("request", ("roundTripDelayRequest", {"sequenceNumber": n}))
        case m.RoundTripDelayResponse(sequence_number=n):
            return ("response", ("roundTripDelayResponse", {"sequenceNumber": n}))
        case m.UserInput(text=text, signal=False):
            return ("indication", ("userInput", ("alphanumeric", text)))
        case m.UserInput(text=text, signal=True, duration_ms=d):
            sig: dict[str, Any] = {"signalType": text}
            if d is not None:
                sig["duration"] = max(1, min(d, 65535))
            return ("indication", ("userInput", ("signal", sig)))
        case m.VideoFastUpdate(channel=n):
            return (
                "command",
                (
                    "miscellaneousCommand",
                    {"logicalChannelNumber": n, "type": ("videoFastUpdatePicture", 0)},
                ),
            )
        case m.FlowControl(channel=ch, max_bitrate_100bps=br):
            scope = ("logicalChannelNumber", ch) if ch is not None else ("wholeMultiplex", 0)
            restriction = ("maximumBitRate", br) if br is not None else ("noRestriction", 0)
            return ("command", ("flowControlCommand", {"scope": scope, "restriction": restriction}))
        case m.EndSession():
            return ("command", ("endSessionCommand", ("disconnect", 0)))
    raise TypeError(f"cannot encode {msg!r}")


def _h245_encode(pdu: str, val: Any) -> bytes:
    """set + encode in one step under the lock (pycrate's PDU objects are shared singletons)."""
    with _lock:
        obj = getattr(_h245(), pdu)
        obj.set_val(val)
        return bytes(obj.to_aper())


def _h245_decode(pdu: str, data: bytes, read: Callable[[Any], T], what: str, cause: int) -> T:
    """decode + get in one step under the lock; any PER failure becomes our error with ``cause``."""
    try:
        with _lock:
            obj = getattr(_h245(), pdu)
            obj.from_aper(data)
            val = obj.get_val()
        return read(val)
    except RemoteProtocolError:
        raise
    except Exception as exc:
        raise RemoteProtocolError(f"{what}: {exc}"[:200], cause) from exc


def encode_h245(msg: m.H245Message) -> bytes:
    return _h245_encode("MultimediaSystemControlMessage", _h245_val(msg))


def decode_h245(data: bytes) -> m.H245Message:
    """One MultimediaSystemControlMessage; :class:`UnsupportedDataType` for an OLC we refuse."""
    return _h245_decode("MultimediaSystemControlMessage", data, _read_h245, "H.245 PER", Cause.PROTOCOL_ERROR)


def _read_h245(val: Any) -> m.H245Message:  # noqa: C901 - one row per message
    category, (name, v) = val
    match (category, name):
        case ("request", "terminalCapabilitySet"):
            return _read_tcs(v)
        case ("response", "terminalCapabilitySetAck"):
            return m.TerminalCapabilitySetAck(sequence_number=v["sequenceNumber"])
        case ("response", "terminalCapabilitySetReject"):
            return m.TerminalCapabilitySetReject(sequence_number=v["sequenceNumber"])
        case ("indication", "terminalCapabilitySetRelease"):
            return m.TerminalCapabilitySetRelease()
        case ("request", "masterSlaveDetermination"):
            return m.MasterSlaveDetermination(
                terminal_type=v["terminalType"],
                status_determination_number=v["statusDeterminationNumber"],
            )
        case ("response", "masterSlaveDeterminationAck"):
            return m.MasterSlaveDeterminationAck(master=v["decision"][0] == "master")
        case ("response", "masterSlaveDeterminationReject"):
            return m.MasterSlaveDeterminationReject()
        case ("indication", "masterSlaveDeterminationRelease"):
            return m.MasterSlaveDeterminationRelease()
        case ("request", "openLogicalChannel"):
            return _read_olc(v)
        case ("response", "openLogicalChannelAck"):
            params = v.get("forwardMultiplexAckParameters", ("", {}))[1]
            return m.OpenLogicalChannelAck(
                number=v["forwardLogicalChannelNumber"],
                session_id=params.get("sessionID"),
                media_channel=_from_h245_addr(params.get("mediaChannel")),
                media_control=_from_h245_addr(params.get("mediaControlChannel")),
            )
        case ("response", "openLogicalChannelReject"):
            return m.OpenLogicalChannelReject(
                number=v["forwardLogicalChannelNumber"], cause=v["cause"][0]
            )
        case ("indication", "openLogicalChannelConfirm"):
            return m.OpenLogicalChannelConfirm(number=v["forwardLogicalChannelNumber"])
        case ("request", "closeLogicalChannel"):
            return m.CloseLogicalChannel(number=v["forwardLogicalChannelNumber"])
        case ("response", "closeLogicalChannelAck"):
            return m.CloseLogicalChannelAck(number=v["forwardLogicalChannelNumber"])
        case ("request", "requestChannelClose"):
            return m.RequestChannelClose(number=v["forwardLogicalChannelNumber"])
        case ("request", "roundTripDelayRequest"):
            return m.RoundTripDelayRequest(sequence_number=v["sequenceNumber"])
        case ("response", "roundTripDelayResponse"):
            return m.RoundTripDelayResponse(sequence_number=v["sequenceNumber"])
        case ("indication", "userInput"):
            kind, inner = v
            if kind == "alphanumeric":
                return m.UserInput(text=str(inner))
            if kind == "extendedAlphanumeric":
                return m.UserInput(text=str(inner["alphanumeric"]))
            if kind == "signal":
                return m.UserInput(
                    text=str(inner["signalType"]), signal=True, duration_ms=inner.get("duration")
                )
            return m.Unsupported(category=category, name=f"userInput.{kind}")
        case ("command", "miscellaneousCommand") if v["type"][0] == "videoFastUpdatePicture":
            return m.VideoFastUpdate(channel=v["logicalChannelNumber"])
        case ("command", "flowControlCommand"):
            scope, restriction = v["scope"], v["restriction"]
            return m.FlowControl(
                channel=scope[1] if scope[0] == "logicalChannelNumber" else None,
                max_bitrate_100bps=restriction[1] if restriction[0] == "maximumBitRate" else None,
            )
        case ("command", "endSessionCommand"):
            return m.EndSession()
    return m.Unsupported(category=category, name=name)


def encode_olc(olc: m.OpenLogicalChannel) -> bytes:
    """One fastStart element (an encoded OpenLogicalChannel, H.225.0 section 7.3.1)."""
    return _h245_encode("OpenLogicalChannel", _olc_val(olc))


def decode_olc(data: bytes) -> m.OpenLogicalChannel:
    return _h245_decode("OpenLogicalChannel", data, _read_olc, "fastStart OLC PER", Cause.INVALID_IE_CONTENTS)
