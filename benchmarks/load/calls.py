"""A load run of SIP calls with real G.711 media: the `vtcgw-load calls` engine.

`run_calls(plan)` places ``plan.calls`` calls at ``plan.rate_cps`` calls/s to the
gateway, each with 20 ms PCMU both ways through one `RtpLoadEngine` on the same
event loop; calls ``i .. i+K-1`` dial the same meeting (``meeting_size`` K).
Meeting IDs reach the gateway in the request-URI (``Dial.URI``) or keyed as
digits in the voice menu (``Dial.KEYPAD``: dial ``meeting`` then ``ID#``), by SIP
INFO or RFC 4733 telephone-events (``DigitPath``); in moderated meetings the first caller of each meeting keys the
moderator passcode then ``#``. Each answered call holds ``hold_s`` and hangs up.

The result dict holds the RFC 6076 figures (`rfc6076.figures`), the rate calls
were launched at and the rate they were answered at (connection set-up included:
a TLS accept queue at the gateway shows there, not in SRD, which starts at the
INVITE), connection figures (TLS handshakes), the generator's receive
statistics (`RtpLoadEngine.report()`) and, when the gateway's quality log is
given, the per-call MOS the gateway measured (`quality_log_mos`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import rfc6076
from benchmarks.load.sip_transport import SipClient
from benchmarks.load.telephone_event import key_digits
from benchmarks.load.uac import (
    Answered,
    ByeCompleted,
    CallRequest,
    Event,
    InfoAnswered,
    Rejected,
    RemoteBye,
    SipTransport,
    UacConfig,
)

TE_PT = 101  # the telephone-event payload type of our offer (uac.Uac._offer)


class DigitPath(enum.Enum):
    INFO = "info"  # SIP INFO application/dtmf-relay, one transaction per digit
    RFC4733 = "rfc4733"  # telephone-events on the call's RTP stream


class Dial(enum.Enum):
    URI = "uri"  # sip:<meeting id>@gateway
    KEYPAD = "keypad"  # sip:meeting@gateway, then the ID and '#' as digits


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    target: tuple[str, int]
    transport: SipTransport = SipTransport.TLS
    calls: int = 10
    rate_cps: float = 10.0
    hold_s: float = 5.0
    meeting_ids: tuple[str, ...] = ("meeting",)
    meeting_size: int = 10
    dial: Dial = Dial.URI
    moderator_passcode: str = ""  # keyed (then '#') by the first caller of each meeting
    digit_path: DigitPath = DigitPath.INFO
    calls_per_connection: int = 1
    rtp: bool = True
    rtp_sockets: int = 4
    digit_gap_s: float = 0.0  # pause before keying digits once answered
    quality_log: Path | None = None
    call_timeout_s: float = 60.0  # give up waiting for one call after this long
    tls_resume: bool = False  # offer the last TLS session on each new connection
    tls_legacy_rsa: bool = False  # TLS 1.2 ECDHE-RSA only, like old room systems
    tag: str = field(default_factory=lambda: f"{time.time_ns() & 0xFFFFFFFF:08x}")


@dataclass(slots=True)
class _CallTask:
    index: int
    call_id: str
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    answered: Answered | None = None
    media: bool = False


def plan_call(plan: LoadPlan, index: int) -> tuple[str, str]:
    """(request-URI user, digits to key once answered) for call number `index`."""
    meeting = plan.meeting_ids[(index // max(1, plan.meeting_size)) % len(plan.meeting_ids)]
    moderator = bool(plan.moderator_passcode) and index % max(1, plan.meeting_size) == 0
    digits = ""
    if plan.dial is Dial.KEYPAD:
        user, digits = "meeting", f"{meeting}#"
    else:
        user = meeting
    if moderator:
        digits += f"{plan.moderator_passcode}#"
    return user, digits


async def run_calls(plan: LoadPlan) -> dict[str, Any]:
    from benchmarks.load.rtp_load import RtpLoadEngine
    from benchmarks.load.rtp_streams import CallMedia, Match

    loop = asyncio.get_running_loop()
    tasks: dict[str, _CallTask] = {}

    def on_event(ev: Event) -> None:
        t = tasks.get(ev.call_id)
        if t is not None:
            t.events.put_nowait(ev)

    client = SipClient(UacConfig(transport=plan.transport, target=plan.target), on_event=on_event,
                       calls_per_connection=plan.calls_per_connection,
                       tls_resume=plan.tls_resume, tls_legacy_rsa=plan.tls_legacy_rsa)
    engine = RtpLoadEngine(sockets=plan.rtp_sockets, match=Match.ADDRESS) if plan.rtp else None
    if engine is not None:
        engine.attach(loop)
    info_failures = 0
    media_missing = 0
    launched: dict[str, float] = {}  # call id -> when its task started (before any connect)

    async def one_call(t: _CallTask) -> None:
        nonlocal info_failures, media_missing
        launched[t.call_id] = client.now()
        try:
            conn = await client.bind(t.call_id, t.index)
        except OSError:  # counted by the client as a connect failure
            return
        user, digits = plan_call(plan, t.index)
        rtp = engine.assign_socket() if engine is not None else (0, ("127.0.0.1", 9))
        client.invite(CallRequest(call_id=t.call_id, to_user=user, rtp=rtp[1], contact=conn.local))
        while True:
            ev = await t.events.get()
            if isinstance(ev, Answered):
                t.answered = ev
                break
            if isinstance(ev, Rejected):
                client.release(t.call_id)
                return
        if engine is not None:
            if ev.remote_rtp is not None:
                engine.start_call(CallMedia(call_id=t.call_id, remote=ev.remote_rtp),
                                  socket_index=rtp[0])
                t.media = True
            else:
                media_missing += 1
        if digits:
            if plan.digit_gap_s:
                await asyncio.sleep(plan.digit_gap_s)
            if (plan.digit_path is DigitPath.RFC4733 and engine is not None and t.media
                    and ev.remote_rtp is not None and TE_PT in ev.payload_types):
                await key_digits(engine, t.call_id, ev.remote_rtp, digits, payload_type=TE_PT)
            else:
                client.send_digits(t.call_id, digits)
        hold_end = loop.time() + plan.hold_s
        ended = False
        while not ended and (left := hold_end - loop.time()) > 0:
            try:
                ev = await asyncio.wait_for(t.events.get(), left)
            except TimeoutError:
                break
            if isinstance(ev, InfoAnswered) and not 200 <= ev.status < 300:
                info_failures += 1
            ended = isinstance(ev, RemoteBye)
        if not ended:
            client.bye(t.call_id)
            while not isinstance(ev := await t.events.get(), ByeCompleted | RemoteBye):
                pass
        if engine is not None and t.media:
            engine.stop_call(t.call_id)
        client.release(t.call_id)

    cpu0 = time.process_time()
    t0 = loop.time()
    m0 = client.now()
    started: list[asyncio.Task[None]] = []
    try:
        for i in range(plan.calls):
            due = t0 + i / plan.rate_cps
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            t = _CallTask(index=i, call_id=f"load-{plan.tag}-{i}")
            tasks[t.call_id] = t
            started.append(loop.create_task(
                asyncio.wait_for(one_call(t), plan.call_timeout_s + plan.hold_s)))
        offered_s = loop.time() - t0
        results = await asyncio.gather(*started, return_exceptions=True)
        stuck = sum(1 for r in results if isinstance(r, BaseException))
        wall_s = loop.time() - t0
    finally:
        if engine is not None:
            engine.detach()
        await client.close()
    cpu_s = time.process_time() - cpu0
    recs = client.uac.records
    answered_at = [r.final_at for r in recs.values()
                   if r.final_at is not None and r.final_status is not None and 200 <= r.final_status < 300]
    span = (max(answered_at) - m0) if answered_at else 0.0
    report: dict[str, Any] = {
        "transport": plan.transport.value,
        "target": f"{plan.target[0]}:{plan.target[1]}",
        "calls": plan.calls,
        "offered_rate_cps": plan.rate_cps,
        "launch_rate_cps": round((plan.calls - 1) / offered_s, 1) if offered_s > 0 else None,
        # calls answered per second from the first launch to the last answer: what the
        # gateway really sustained, connection set-up (TCP, TLS) included
        "answered_rate_cps": round(len(answered_at) / span, 1) if span > 0 else None,
        # from a call's launch (before its connection, if it opens one) to its 2xx
        "setup_with_connect_ms": rfc6076.percentiles_ms(
            recs[c].final_at - at for c, at in launched.items()
            if c in recs and recs[c].final_at is not None and recs[c].final_status == 200),
        "hold_s": plan.hold_s,
        "meeting_size": plan.meeting_size,
        "dial": plan.dial.value,
        "digit_path": plan.digit_path.value,
        "calls_per_connection": plan.calls_per_connection,
        "wall_s": round(wall_s, 3),
        "generator_cpu_s": round(cpu_s, 3),
        "sip": rfc6076.figures(client.uac.records.values()),
        "connections": {
            "opened": len(client.connections),
            "connect_failures": client.connect_failures,  # calls whose connection failed
            "handshake_ms": rfc6076.percentiles_ms(c.handshake_s for c in client.connections),
            "resumed": sum(c.resumed for c in client.connections),
            "tls": sorted({f"{c.tls_info[0]} {c.tls_info[1]}" for c in client.connections if c.tls_info}),
            "send_failures": client.send_failures,
            "parse_errors": client.parse_errors,
        },
        "stuck_calls": stuck,
        "info_failures": info_failures,
        "answers_without_audio": media_missing,
    }
    return finish_report(report, engine, plan.quality_log, set(tasks))


def finish_report(report: dict[str, Any], engine: Any, quality_log: Path | None,
                  call_ids: set[str]) -> dict[str, Any]:
    """The tail every run shares: the generator's receive statistics (the engine is closed
    here) and the MOS the gateway logged for these calls (by the gateway's call ids)."""
    if engine is not None:
        engine.settle()
        report["rtp_received"] = engine.report()
        engine.close()
    if quality_log is not None:
        report["gateway_quality"] = quality_log_mos(quality_log, call_ids)
    return report


def quality_log_mos(path: Path, call_ids: set[str]) -> dict[str, Any]:
    """Per-call MOS the gateway logged (`mos_btwn_vc_and_cust`, last non-null record of
    each call) for the given calls: count, records, min/p5/p50."""
    last: dict[str, float] = {}
    records = 0
    if path.exists():
        with path.open() as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                cid = rec.get("call_id")
                if cid not in call_ids:
                    continue
                records += 1
                mos = rec.get("mos_btwn_vc_and_cust")
                if mos is not None:
                    last[cid] = float(mos)
    arr = np.array(list(last.values()), float)
    out: dict[str, Any] = {"records": records, "calls_with_mos": int(arr.size)}
    if arr.size:
        p5, p50 = np.percentile(arr, [5, 50])
        out |= {"min": round(float(arr.min()), 3), "p5": round(float(p5), 3),
                "p50": round(float(p50), 3)}
    return out
