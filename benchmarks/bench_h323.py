"""H.323 signalling cost: the pycrate wrapper against raw pycrate, and calls/s through the service.

    python -m benchmarks.bench_h323 [--quick] [--out bench_h323.json]

What is measured:
- ``codec``: a Fast Start Setup UUIE (H.225.0, aligned PER) and a TerminalCapabilitySet
  (H.245) encoded and decoded through ``gateway.h323.asn1`` (our dataclasses in and out)
  against pycrate used directly on the same value (set_val/to_aper/from_aper/get_val): the
  peer is pycrate itself, ``*_ratio`` = wrapper rate / raw rate (1.0 = no overhead).
- ``calls``: complete calls, one after another, from the test endpoint (tests/h323) over
  loopback TCP to an in-process ``H323Service`` with the real media plane: Setup with Fast
  Start -> CallProceeding + Connect -> tunnelled TCS/MSD -> ReleaseComplete. Figures:
  calls/s and Setup-to-Connect delay p50/p99 (RFC 6076 section 4.2 session request delay
  as the caller sees it). No H.323 reference implementation exists on this machine, so
  there is no ratio for this one.

Nothing here asserts a speed; ``run(quick)`` returns the dict it prints.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import bench_main

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.h323 import asn1  # noqa: E402
from gateway.h323 import messages as m  # noqa: E402


def _rate(fn: Any, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        n += 20
    return n / elapsed


def _paired(ours: Any, peer: Any, seconds: float, rounds: int = 10) -> tuple[float, float]:
    """Median rates of two functions measured in alternating slices, so that load from
    other processes on the machine hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(_rate(ours, seconds / rounds))
        b.append(_rate(peer, seconds / rounds))
    return statistics.median(a), statistics.median(b)


def bench_codec(seconds: float) -> dict[str, Any]:
    from pycrate_asn1dir import H225, H245  # the raw peer (benchmark only)

    olc = m.OpenLogicalChannel(
        number=1,
        forward=m.ChannelParams(
            capability=m.MediaCapability(format=m.MediaFormat.PCMU),
            session_id=1,
            media_control=("127.0.0.1", 5001),
        ),
    )
    setup = m.UserInformation(
        body=m.Body.SETUP,
        call_identifier=os.urandom(16),
        conference_id=os.urandom(16),
        destination_aliases=(m.Alias(kind=m.AliasKind.DIALED_DIGITS, value="1234567890"),),
        source_aliases=(m.Alias(kind=m.AliasKind.H323_ID, value="Room"),),
        fast_start=(asn1.encode_olc(olc),) * 4,
        h245_tunnelling=True,
    )
    tcs = m.TerminalCapabilitySet(
        sequence_number=1,
        capabilities=(
            m.MediaCapability(format=m.MediaFormat.G722),
            m.MediaCapability(format=m.MediaFormat.PCMU),
            m.MediaCapability(format=m.MediaFormat.H264, max_bitrate_100bps=14000, h264_level=71),
        ),
        user_input=frozenset({"dtmf", "basicString"}),
    )
    setup_wire = asn1.encode_user_information(setup)
    tcs_wire = asn1.encode_h245(tcs)
    uu, msc = (
        H225.H323_MESSAGES.H323_UserInformation,
        H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage,
    )
    uu.from_aper(setup_wire)
    setup_val = uu.get_val()
    msc.from_aper(tcs_wire)
    tcs_val = msc.get_val()

    def raw(obj: Any, val: Any, wire: bytes) -> None:
        obj.set_val(val)
        obj.to_aper()
        obj.from_aper(wire)
        obj.get_val()

    out: dict[str, Any] = {"setup_bytes": len(setup_wire), "tcs_bytes": len(tcs_wire)}
    ours_setup, raw_setup = _paired(
        lambda: asn1.decode_user_information(asn1.encode_user_information(setup)),
        lambda: raw(uu, setup_val, setup_wire),
        seconds,
    )
    ours_tcs, raw_tcs = _paired(
        lambda: asn1.decode_h245(asn1.encode_h245(tcs)),
        lambda: raw(msc, tcs_val, tcs_wire),
        seconds,
    )
    out.update(
        setup_roundtrips_per_s=round(ours_setup),
        setup_raw_pycrate_per_s=round(raw_setup),
        setup_ratio=round(ours_setup / raw_setup, 3),
        tcs_roundtrips_per_s=round(ours_tcs),
        tcs_raw_pycrate_per_s=round(raw_tcs),
        tcs_ratio=round(ours_tcs / raw_tcs, 3),
    )
    return out


async def bench_calls(n_calls: int) -> dict[str, Any]:
    from benchmarks.load.h323_endpoint import EpState, H323Caller, Mode
    from gateway.h323.service import H323Service, H323Settings
    from gateway.rtp.plane import MediaPlane
    from gateway.rtp.ports import PortRange
    from tests.h323.apps import RecordingApp

    h323_range = PortRange(low=62000, high=63999)
    plane = MediaPlane(
        sip_range=PortRange(low=64000, high=64999),
        h323_range=h323_range,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
        quarantine_s=0.0,
    )
    await plane.start()
    app = RecordingApp(plane=plane)
    settings = H323Settings(
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
        port=0,
        h245_range=h323_range,
        video=False,
    )
    svc = H323Service(settings, app, plane)
    port = (await svc.start())["h323"]
    delays: list[float] = []
    start = time.perf_counter()
    try:
        for _ in range(n_calls):
            caller = H323Caller("1234567890", Mode.FAST_START)
            t0 = time.perf_counter()
            await caller.call(port)
            assert caller.core is not None
            core = caller.core
            await caller.wait_for(lambda: core.state is EpState.CONNECTED)  # noqa: B023
            delays.append(time.perf_counter() - t0)
            caller.hangup()
            await caller.wait_for(lambda: caller.signalling_closed)  # noqa: B023
            await caller.close()
        elapsed = time.perf_counter() - start
    finally:
        await svc.close()
        await plane.close()
    delays.sort()
    return {
        "calls": n_calls,
        "calls_per_s": round(n_calls / elapsed, 1),
        "setup_to_connect_ms_p50": round(statistics.median(delays) * 1000, 2),
        "setup_to_connect_ms_p99": round(
            delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000, 2
        ),
    }


def run(quick: bool = False) -> dict[str, Any]:
    result = {"codec": bench_codec(0.5 if quick else 3.0)}
    result["calls"] = asyncio.run(bench_calls(30 if quick else 300))
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
