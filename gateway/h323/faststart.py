"""Fast Connect (H.323 section 8.1.7): choose among the caller's OpenLogicalChannel proposals.

The caller's Setup lists, per media session, channels it would transmit (forward
parameters set; we receive) and channels it would receive (forward ``nullData`` with
reverse parameters holding its RTP address; we transmit). We accept at most one of each
direction per kind, the first in OUR preference order that the caller offered, answer with
those proposals completed by our addresses (8.1.7.1), and report what to configure on the
media legs. Proposals we cannot decode as a known data type are simply not chosen;
malformed PER is a :class:`RemoteProtocolError` (the call core answers with cause 100).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.h323 import asn1
from gateway.h323 import messages as m
from gateway.h323.h245 import LocalMedia, payload_type
from gateway.rtp.types import MediaKind


@dataclass(frozen=True, slots=True, kw_only=True)
class FastStartMedia:
    """What Fast Start settled for one kind."""

    kind: MediaKind
    send: m.MediaCapability | None  # what we transmit (None: caller proposed no receive channel)
    send_pt: int | None
    remote_rtp: m.Address | None
    remote_rtcp: m.Address | None
    receive: m.MediaCapability | None
    receive_pt: int | None
    receive_channel: int | None = None  # the caller's forwardLogicalChannelNumber


@dataclass(frozen=True, slots=True, kw_only=True)
class FastStartAnswer:
    answers: tuple[bytes, ...]  # encoded OLCs for our fastStart element
    media: tuple[FastStartMedia, ...]


def _kind(p: m.ChannelParams) -> MediaKind:
    return MediaKind.VIDEO if p.capability.format.is_video else MediaKind.AUDIO


def decode_proposals(elements: tuple[bytes, ...]) -> list[m.OpenLogicalChannel]:
    out: list[m.OpenLogicalChannel] = []
    for raw in elements:
        try:
            out.append(asn1.decode_olc(raw))
        except asn1.UnsupportedDataType:
            continue
    return out


def select(
    proposals: list[m.OpenLogicalChannel],
    ours: tuple[m.MediaCapability, ...],
    local: dict[MediaKind, LocalMedia],
) -> FastStartAnswer | None:
    """Our answer, or None when nothing usable was proposed (then we refuse Fast Start)."""
    rank = {cap.format: i for i, cap in enumerate(ours)}
    answers: list[m.OpenLogicalChannel] = []
    media: list[FastStartMedia] = []
    for kind in (MediaKind.AUDIO, MediaKind.VIDEO):
        if kind not in local:
            continue
        mine = local[kind]
        rx = [
            p
            for p in proposals
            if p.forward and _kind(p.forward) is kind and p.forward.capability.format in rank
        ]
        tx = [
            p
            for p in proposals
            if p.forward is None
            and p.reverse
            and _kind(p.reverse) is kind
            and p.reverse.capability.format in rank
        ]
        rx.sort(key=lambda p: rank[p.forward.capability.format])  # type: ignore[union-attr]
        tx.sort(key=lambda p: rank[p.reverse.capability.format])  # type: ignore[union-attr]
        # prefer the same codec both ways when the caller offers it
        if rx and tx:
            same = [t for t in tx if t.reverse.capability.format is rx[0].forward.capability.format]  # type: ignore[union-attr]
            tx = same or tx
        chosen_rx = rx[0] if rx else None
        chosen_tx = tx[0] if tx else None
        if chosen_rx is None and chosen_tx is None:
            continue
        send = recv = None
        send_pt = recv_pt = None
        remote_rtp = remote_rtcp = None
        if chosen_rx is not None and chosen_rx.forward is not None:
            fwd = chosen_rx.forward
            recv, recv_pt = fwd.capability, payload_type(fwd.capability, fwd.dynamic_pt)
            remote_rtcp = fwd.media_control
            answers.append(
                replace(
                    chosen_rx, forward=replace(fwd, media_channel=mine.rtp, media_control=mine.rtcp)
                )
            )
        if chosen_tx is not None and chosen_tx.reverse is not None:
            rev = chosen_tx.reverse
            send, send_pt = rev.capability, payload_type(rev.capability, rev.dynamic_pt)
            remote_rtp = rev.media_channel
            remote_rtcp = rev.media_control or remote_rtcp
            answers.append(replace(chosen_tx, reverse=replace(rev, media_control=mine.rtcp)))
        media.append(
            FastStartMedia(
                kind=kind,
                send=send,
                send_pt=send_pt,
                remote_rtp=remote_rtp,
                remote_rtcp=remote_rtcp,
                receive=recv,
                receive_pt=recv_pt,
                receive_channel=chosen_rx.number if chosen_rx else None,
            )
        )
    if not any(x.kind is MediaKind.AUDIO for x in media):
        return None  # no audio: H.323 8.1.7.1 lets us refuse and fall back to H.245
    return FastStartAnswer(answers=tuple(asn1.encode_olc(o) for o in answers), media=tuple(media))
