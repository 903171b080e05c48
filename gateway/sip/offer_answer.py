"""SDP offer/answer (RFC 3264) for one call: what we accept and what we answer.

Rules:
- One audio m-line (PCMU, PCMA, G722, opus; telephone-event) and one *main* video m-line
  (H.264 only) are accepted. A video m-line with ``a=content:slides`` is never the main
  video (INTEROP.md report 7); it, BFCP, H224, x-ulpfecuc, UDP/UDT/IX and anything
  unknown are declined with port 0 (RFC 3264 section 6).
- Answer codecs follow the offerer's order (section 6.1); the first is the one we send.
- H.264 (RFC 6184 section 8.2.2): packetization-mode absent means 0; we answer each accepted
  payload type with its mode, the offer's profile and level, and always max-fs/max-mbps.
- SDES (RFC 4568): RTP/SAVP(F) with AES_CM_128_HMAC_SHA1_80 or _32, MKI tolerated; we
  answer with a fresh key of the same suite and tag. SRTP is accepted only when the
  signalling is TLS; with ``require_srtp`` plain RTP is declined.
- Hold (section 8.4): sendonly/inactive or c=0.0.0.0 keep the leg but stop sending.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from gateway.rtp.types import Codec, Direction, LegConfig, MediaKind, SrtpParams
from gateway.sip.sdp import MediaDesc, Sdp

AUDIO_CODECS = frozenset({("PCMU", 8000), ("PCMA", 8000), ("G722", 8000), ("OPUS", 48000)})
SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
RTCP_FB = ("ccm fir", "nack pli", "nack")
# what we can receive, answered on every H.264 payload type (level 4.0 figures, 1080p30)
H264_MAX_FS = 8160
H264_MAX_MBPS = 244800
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_DIRECTION = {d.value: d for d in Direction}


class OfferRejected(Exception):
    """No acceptable media in the offer: answer 488 with this reason."""


@dataclass(slots=True, kw_only=True)
class MediaPlan:
    """The outcome for one offered m-line (index in the offer)."""

    index: int
    kind: MediaKind | None  # None: declined
    codecs: tuple[Codec, ...] = ()
    telephone_event_pt: int | None = None
    remote_rtp: tuple[str, int] | None = None
    remote_rtcp: tuple[str, int] | None = None
    rtcp_mux: bool = False
    direction: Direction = Direction.SENDRECV  # ours, as answered
    srtp_rx: SrtpParams | None = None
    srtp_tag: str = "1"
    rtcp_fb: frozenset[str] = field(default_factory=frozenset)
    proto: str = "RTP/AVP"

    def leg_config(self, srtp_tx: SrtpParams | None) -> LegConfig:
        assert self.kind is not None
        return LegConfig(kind=self.kind, remote_rtp=self.remote_rtp, remote_rtcp=self.remote_rtcp,
                         codecs=self.codecs, telephone_event_pt=self.telephone_event_pt,
                         rtcp_mux=self.rtcp_mux, direction=self.direction, srtp_tx=srtp_tx,
                         srtp_rx=self.srtp_rx, rtcp_fb=self.rtcp_fb)


def new_srtp_key(suite: str) -> SrtpParams:
    return SrtpParams(suite=suite, key_b64=base64.b64encode(os.urandom(30)).decode())


def _crypto(m: MediaDesc) -> tuple[str, SrtpParams] | None:
    """First usable a=crypto line: (tag, params). ``inline:key|lifetime|mki:len`` tolerated."""
    for line in m.attr_all("crypto"):
        parts = line.split()
        if len(parts) < 3 or parts[1] not in SRTP_SUITES or not parts[2].startswith("inline:"):
            continue
        key = parts[2][7:].split("|")[0]
        try:
            if len(base64.b64decode(key + "=" * (-len(key) % 4))) != 30:
                continue
        except ValueError:
            continue
        return parts[0], SrtpParams(suite=parts[1], key_b64=key)
    return None


def _h264_fmtp(params: str) -> str:
    kv = dict(p.strip().partition("=")[::2] for p in params.split(";") if p.strip())
    plid = kv.get("profile-level-id", "42e01f")
    mode = kv.get("packetization-mode", "0")
    return f"profile-level-id={plid};packetization-mode={mode};max-fs={H264_MAX_FS};max-mbps={H264_MAX_MBPS}"


def negotiate(offer: Sdp, *, srtp_ok: bool, require_srtp: bool) -> list[MediaPlan]:
    """Decide every m-line of an offer. Raises :class:`OfferRejected` if nothing is usable."""
    plans: list[MediaPlan] = []
    have: set[MediaKind] = set()
    session_dir = offer.session_direction()
    for i, m in enumerate(offer.media):
        plan = MediaPlan(index=i, kind=None, proto=m.proto)
        plans.append(plan)
        kind = MediaKind.AUDIO if m.media == "audio" else MediaKind.VIDEO if m.media == "video" else None
        if kind is None or kind in have or m.port == 0:
            continue
        if kind is MediaKind.VIDEO and m.attr("content") not in (None, "main"):
            continue  # slides and other content roles are never the main video
        secure = m.proto in ("RTP/SAVP", "RTP/SAVPF")
        if m.proto not in ("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"):
            continue
        if secure and not srtp_ok:
            continue
        if not secure and require_srtp:
            continue
        crypto = _crypto(m) if secure else None
        if secure and crypto is None:
            continue
        rtpmap = m.rtpmap()
        fmtps = m.fmtp()
        codecs: list[Codec] = []
        te: int | None = None
        for pt in m.fmts:
            if not pt.isdigit() or pt not in rtpmap:
                continue
            name, rate, chans = rtpmap[pt]
            if kind is MediaKind.AUDIO:
                if name == "TELEPHONE-EVENT":
                    if te is None and rate == 8000:
                        te = int(pt)
                elif (name, rate) in AUDIO_CODECS:
                    codecs.append(Codec(payload_type=int(pt), name=name, clock_rate=rate,
                                        channels=chans, fmtp=fmtps.get(pt, "")))
            elif name == "H264" and rate == 90000:
                codecs.append(Codec(payload_type=int(pt), name="H264", clock_rate=90000,
                                    fmtp=_h264_fmtp(fmtps.get(pt, ""))))
        if not codecs:
            continue
        have.add(kind)
        addr = m.conn or offer.conn or ""
        held = addr in ("0.0.0.0", "::")
        offered_dir = m.direction(session_dir)
        answer_dir = _REVERSE.get(offered_dir, "sendrecv")
        fb: set[str] = set()
        pts = {str(c.payload_type) for c in codecs} | {"*"}
        for line in m.attr_all("rtcp-fb"):
            pt, _, what = line.partition(" ")
            if pt in pts and what.strip():
                fb.add(" ".join(what.split()).lower())
        rtcp_port = m.port + 1
        rtcp_attr = m.attr("rtcp")
        if rtcp_attr:
            first = rtcp_attr.split()[0]
            if first.isdigit():
                rtcp_port = int(first)
        mux = m.has("rtcp-mux")
        plan.kind = kind
        plan.codecs = tuple(codecs)
        plan.telephone_event_pt = te
        plan.remote_rtp = None if held else (addr, m.port)
        plan.remote_rtcp = None if held else (addr, m.port if mux else rtcp_port)
        plan.rtcp_mux = mux
        plan.direction = Direction.INACTIVE if held and answer_dir == "sendrecv" else _DIRECTION[answer_dir]
        if crypto is not None:
            plan.srtp_tag, plan.srtp_rx = crypto
        plan.rtcp_fb = frozenset(fb)
    if not any(p.kind is MediaKind.AUDIO for p in plans) and not any(p.kind for p in plans):
        raise OfferRejected("No acceptable media in offer")
    return plans


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalMedia:
    """Our side of one accepted m-line: ports from the RtpLeg and our SRTP key."""

    rtp_port: int
    srtp_tx: SrtpParams | None = None


def build_answer(offer: Sdp, plans: list[MediaPlan], local: dict[int, LocalMedia], *, host: str,
                 session_id: str, version: int) -> Sdp:
    """Answer with one m-line per offered one, in order (RFC 3264 section 6)."""
    media: list[MediaDesc] = []
    for plan, m in zip(plans, offer.media, strict=True):
        if plan.kind is None or plan.index not in local:
            media.append(MediaDesc(media=m.media, port=0, proto=m.proto, fmts=m.fmts[:1] or ["0"]))
            continue
        lm = local[plan.index]
        media.append(_media_desc(plan, lm, label=m.attr("label")))
    return Sdp(origin_user="vtcgw", session_id=session_id, version=version, origin_addr=host,
               session_name="vtcgw", conn=host, media=media)


def _media_desc(plan: MediaPlan, lm: LocalMedia, *, label: str | None = None) -> MediaDesc:
    assert plan.kind is not None
    fmts = [str(c.payload_type) for c in plan.codecs]
    attrs: list[tuple[str, str | None]] = []
    for c in plan.codecs:
        enc = f"{'opus' if c.name == 'OPUS' else c.name}/{c.clock_rate}" + (f"/{c.channels}" if c.channels > 1 else "")
        attrs.append(("rtpmap", f"{c.payload_type} {enc}"))
        if c.fmtp:
            attrs.append(("fmtp", f"{c.payload_type} {c.fmtp}"))
    if plan.telephone_event_pt is not None:
        fmts.append(str(plan.telephone_event_pt))
        attrs.append(("rtpmap", f"{plan.telephone_event_pt} telephone-event/8000"))
        attrs.append(("fmtp", f"{plan.telephone_event_pt} 0-15"))
    if plan.kind is MediaKind.VIDEO:
        attrs.append(("content", "main"))
        if label:
            attrs.append(("label", label))
        for fb in sorted(plan.rtcp_fb & set(RTCP_FB)) or ["ccm fir", "nack pli"]:
            attrs.append(("rtcp-fb", f"* {fb}"))
    if plan.rtcp_mux:
        attrs.append(("rtcp-mux", None))
    if lm.srtp_tx is not None:
        attrs.append(("crypto", f"{plan.srtp_tag} {lm.srtp_tx.suite} inline:{lm.srtp_tx.key_b64}"))
    attrs.append((plan.direction.value, None))
    kind = "audio" if plan.kind is MediaKind.AUDIO else "video"
    return MediaDesc(media=kind, port=lm.rtp_port, proto=plan.proto, fmts=fmts, attrs=attrs)


# delayed offer (RFC 3261 section 13.2.1: INVITE without SDP, we offer in the 200) ---------------
OFFER_AUDIO = (Codec(payload_type=0, name="PCMU", clock_rate=8000),
               Codec(payload_type=8, name="PCMA", clock_rate=8000),
               Codec(payload_type=9, name="G722", clock_rate=8000))
OFFER_VIDEO = (Codec(payload_type=96, name="H264", clock_rate=90000,
                     fmtp=_h264_fmtp("profile-level-id=42e01f;packetization-mode=1")),
               Codec(payload_type=97, name="H264", clock_rate=90000,
                     fmtp=_h264_fmtp("profile-level-id=42e01f;packetization-mode=0")))


def build_offer(local: dict[MediaKind, LocalMedia], *, host: str, session_id: str, version: int,
                secure: bool) -> tuple[Sdp, list[MediaPlan]]:
    """Our offer for a delayed-offer INVITE; the plans are completed from the answer in the ACK."""
    plans: list[MediaPlan] = []
    media: list[MediaDesc] = []
    for i, kind in enumerate(k for k in (MediaKind.AUDIO, MediaKind.VIDEO) if k in local):
        plan = MediaPlan(index=i, kind=kind, codecs=OFFER_AUDIO if kind is MediaKind.AUDIO else OFFER_VIDEO,
                         telephone_event_pt=101 if kind is MediaKind.AUDIO else None,
                         proto="RTP/SAVP" if secure else "RTP/AVP", rtcp_fb=frozenset(RTCP_FB[:2]))
        plans.append(plan)
        media.append(_media_desc(plan, local[kind]))
    return Sdp(origin_user="vtcgw", session_id=session_id, version=version, origin_addr=host,
               session_name="vtcgw", conn=host, media=media), plans


def apply_answer(plans: list[MediaPlan], answer: Sdp) -> list[MediaPlan]:
    """Settle our offer's plans from the peer's answer (RFC 3264 section 7)."""
    out: list[MediaPlan] = []
    session_dir = answer.session_direction()
    for plan, m in zip(plans, answer.media, strict=False):
        if m.port == 0 or plan.kind is None:
            continue
        offered = {c.payload_type: c for c in plan.codecs}
        rtpmap = m.rtpmap()
        codecs = tuple(offered[int(pt)] for pt in m.fmts if pt.isdigit() and int(pt) in offered)
        if not codecs:
            continue
        te = next((int(pt) for pt in m.fmts if rtpmap.get(pt, ("",))[0] == "TELEPHONE-EVENT"), None)
        addr = m.conn or answer.conn or ""
        held = addr in ("0.0.0.0", "::")
        mux = m.has("rtcp-mux")
        direction = _REVERSE.get(m.direction(session_dir), "sendrecv")
        crypto = _crypto(m) if plan.proto == "RTP/SAVP" else None
        out.append(MediaPlan(index=plan.index, kind=plan.kind, codecs=codecs, telephone_event_pt=te,
                             remote_rtp=None if held else (addr, m.port),
                             remote_rtcp=None if held else (addr, m.port if mux else m.port + 1),
                             rtcp_mux=mux, direction=_DIRECTION[direction],
                             srtp_rx=crypto[1] if crypto else None, proto=plan.proto,
                             rtcp_fb=frozenset(" ".join(v.split()[1:]).lower() for v in m.attr_all("rtcp-fb"))))
    return out
