"""H.323 calls for the load generator: Fast Start Setup over TCP, G.711 both ways, digits.

Each call is the caller of :mod:`benchmarks.load.h323_endpoint` (its own H.225.0/H.245
state machine, sharing none with the gateway) on one TCP connection, with its media on
the shared :class:`~benchmarks.load.rtp_load.RtpLoadEngine` (the same batched G.711
streams and receive statistics as the SIP calls). Plans are :class:`LoadPlan`; for H.323
``dial`` URI puts the meeting ID in the Setup's destination alias and KEYPAD dials the voice
menu (alias ``meeting``) and keys the ID; digits go as H.245 UserInputIndication
(alphanumeric, tunnelled), the path H.323 room systems use.

RFC 6076 figures with H.323 events in place of SIP ones (the report says so):
SRD is Setup to Alerting or Connect (CallProceeding, like SIP's 100, says nothing about the
outcome), or to a ReleaseComplete before Connect; a call is "answered" at Connect, and a
release before it maps its Q.850 cause to the SIP status RFC 3398 gives, so SER, SEER and
ISA keep their meaning. SDD is our ReleaseComplete to the gateway closing the call
signalling connection (H.225.0 7.4: the channel goes when the call does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.load import rfc6076
from benchmarks.load.calls import LoadPlan, finish_report, plan_call
from benchmarks.load.h323_endpoint import PCMU, EndpointCore, EpState, Mode, _Stream
from benchmarks.load.uac import CallRecord
from gateway.h323 import messages as m

# RFC 3398 section 8.2.6.1: Q.850 cause -> SIP status, for the causes a gateway gives
CAUSE_STATUS = {1: 404, 3: 404, 16: 480, 17: 486, 18: 408, 19: 480, 21: 403, 27: 502, 28: 484,
                31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 47: 503, 58: 503, 65: 488, 88: 488,
                102: 504, 127: 500}


@dataclass(slots=True)
class _H323Call:
    index: int
    call_id: str
    record: CallRecord
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    core: EndpointCore | None = None
    stream: _Stream | None = None
    closed_at: float | None = None
    media: bool = False


async def run_h323_calls(plan: LoadPlan) -> dict[str, Any]:
    """``plan.calls`` H.323 calls at ``plan.rate_cps`` to ``plan.target`` (the gateway's H.225.0
    port), each held ``plan.hold_s``; the report has the SIP run's shape (``sip`` holds the
    RFC 6076 figures of the H.323 calls)."""
    from benchmarks.load.rtp_load import RtpLoadEngine
    from benchmarks.load.rtp_streams import CallMedia, Match

    loop = asyncio.get_running_loop()
    engine = RtpLoadEngine(sockets=plan.rtp_sockets, match=Match.ADDRESS) if plan.rtp else None
    if engine is not None:
        engine.attach(loop)
    calls: dict[str, _H323Call] = {}
    connect_failures = 0
    media_missing = 0

    def flush(c: _H323Call) -> None:
        assert c.core is not None
        out = c.core.data_to_send()
        t = c.stream.transport if c.stream is not None else None
        if out and t is not None and not t.is_closing():
            t.write(out)

    def on_data(c: _H323Call) -> Callable[[bytes], None]:
        def feed(data: bytes) -> None:
            assert c.core is not None
            before, seen = c.core.state, len(c.core.received)
            c.core.receive_data(data)
            now = time.monotonic()
            r = c.record
            after = c.core.state
            got = {name for name, _ in c.core.received[seen:]}  # what this chunk brought
            if r.first_response_at is None and got & {"ALERTING", "CONNECT"}:
                r.first_response_at = now
            if after is EpState.CONNECTED and before is not EpState.CONNECTED:
                r.final_status, r.final_at = 200, now
            elif after is EpState.RELEASED and r.final_status is None:
                r.final_status = CAUSE_STATUS.get(c.core.release_cause or 16, 480)
                r.final_at = r.first_response_at = r.first_response_at or now
            flush(c)
            c.changed.set()

        return feed

    def on_lost(c: _H323Call) -> Callable[[], None]:
        def lost() -> None:
            c.closed_at = time.monotonic()
            c.changed.set()

        return lost

    async def until(c: _H323Call, done: Callable[[], bool], timeout: float) -> bool:
        end = loop.time() + timeout
        while not done():
            c.changed.clear()
            left = end - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(c.changed.wait(), left)
            except TimeoutError:
                return done()
        return True

    async def one_call(c: _H323Call) -> None:
        nonlocal connect_failures, media_missing
        user, digits = plan_call(plan, c.index)
        sock_index, rtp = engine.assign_socket() if engine is not None else (0, ("127.0.0.1", 9))
        c.core = EndpointCore(dial=user, mode=Mode.FAST_START, audio=(rtp, (rtp[0], rtp[1] + 1)),
                              audio_formats=(PCMU,),
                              alias_kind=m.AliasKind.DIALED_DIGITS if user.isdigit() else m.AliasKind.H323_ID)
        c.stream = _Stream(on_data(c), on_lost(c))
        try:
            stream = c.stream
            await loop.create_connection(lambda: stream, plan.target[0], plan.target[1])
        except OSError:
            connect_failures += 1
            return
        c.record.invite_at = time.monotonic()
        c.core.setup()
        flush(c)
        core = c.core
        if not await until(c, lambda: core.state in (EpState.CONNECTED, EpState.RELEASED) or c.closed_at is not None,
                           plan.call_timeout_s):
            core.hangup(102)  # Q.850 102: recovery on timer expiry
            flush(c)
        if core.state is not EpState.CONNECTED:
            _close(c)
            return
        await until(c, lambda: core.media["audio"].send_to is not None, 2.0)
        dest = core.media["audio"].send_to
        if engine is not None:
            if dest is not None:
                engine.start_call(CallMedia(call_id=c.call_id, remote=dest), socket_index=sock_index)
                c.media = True
            else:
                media_missing += 1
        if digits:
            if plan.digit_gap_s:
                await asyncio.sleep(plan.digit_gap_s)
            core.h245_start()
            for d in digits:
                core.h245_send(m.UserInput(text=d, signal=False, duration_ms=None))
            flush(c)
        await until(c, lambda: core.state is EpState.RELEASED or c.closed_at is not None, plan.hold_s)
        if core.state is not EpState.RELEASED:
            core.hangup(16)
            c.record.bye_at = time.monotonic()
            flush(c)
            if await until(c, lambda: c.closed_at is not None, 5.0) and c.closed_at is not None:
                c.record.bye_done_at, c.record.bye_status = c.closed_at, 200
            else:
                c.record.bye_status = 408
        else:
            c.record.remote_bye_at = time.monotonic()
        if engine is not None and c.media:
            engine.stop_call(c.call_id)
        _close(c)

    cpu0 = time.process_time()
    t0 = loop.time()
    m0 = time.monotonic()
    started: list[asyncio.Task[None]] = []
    try:
        for i in range(plan.calls):
            if (wait := t0 + i / plan.rate_cps - loop.time()) > 0:
                await asyncio.sleep(wait)
            c = _H323Call(index=i, call_id=f"load-h323-{plan.tag}-{i}", record=CallRecord(invite_at=time.monotonic()))
            calls[c.call_id] = c
            started.append(loop.create_task(asyncio.wait_for(one_call(c), plan.call_timeout_s + plan.hold_s + 10)))
        offered_s = loop.time() - t0
        results = await asyncio.gather(*started, return_exceptions=True)
        stuck = sum(1 for x in results if isinstance(x, BaseException))
        wall_s = loop.time() - t0
    finally:
        for c in calls.values():
            _close(c)
        if engine is not None:
            engine.detach()
    recs = [c.record for c in calls.values() if c.stream is not None and c.stream.transport is not None]
    answered_at = [r.final_at for r in recs if r.final_status == 200 and r.final_at is not None]
    span = max(answered_at) - m0 if answered_at else 0.0
    report: dict[str, Any] = {
        "protocol": "h323",
        "transport": "tcp",
        "target": f"{plan.target[0]}:{plan.target[1]}",
        "calls": plan.calls,
        "offered_rate_cps": plan.rate_cps,
        "launch_rate_cps": round((plan.calls - 1) / offered_s, 1) if offered_s > 0 else None,
        "answered_rate_cps": round(len(answered_at) / span, 1) if span > 0 else None,
        "hold_s": plan.hold_s,
        "meeting_size": plan.meeting_size,
        "dial": plan.dial.value,
        "digit_path": "h245-uii",
        "wall_s": round(wall_s, 3),
        "generator_cpu_s": round(time.process_time() - cpu0, 3),
        "sip": rfc6076.figures(recs),
        "rfc6076_events": "SRD: Setup -> Alerting/Connect; answered: Connect; "
                          "SDD: ReleaseComplete -> gateway closes the signalling connection",
        "connections": {"opened": len(recs), "connect_failures": connect_failures},
        "stuck_calls": stuck,
        "answers_without_audio": media_missing,
    }
    # the gateway names an H.323 call by its H.225.0 callIdentifier GUID
    guids = {c.core.guid.hex() for c in calls.values() if c.core is not None}
    return finish_report(report, engine, plan.quality_log, guids)


def _close(c: _H323Call) -> None:
    t = c.stream.transport if c.stream is not None else None
    if t is not None and not t.is_closing():
        t.close()

