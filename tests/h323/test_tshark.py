"""tshark (a real, independent H.225.0/H.245 decoder) judges every message the gateway sends.

A live capture on loopback covers all three H.245 paths (Fast Start + tunnelling, tunnelled
H.245 with OLC, separate H.245 TCP), UserInputIndication, videoFastUpdatePicture,
EndSessionCommand and ReleaseComplete. The H.225.0 port is ephemeral, where Wireshark finds
Q.931 heuristically; the separate H.245 port is decoded with ``-d tcp.port==N,h245``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path

import pytest

from benchmarks.load.h323_endpoint import EpState, H323Caller, Mode
from gateway.h323 import messages as m
from tests.conftest import require_binary
from tests.h323.apps import RecordingApp

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]


async def _start_capture(
    tshark: str, ports: str, out: Path, probe_port: int, printed: list[str]
) -> asyncio.subprocess.Process:
    """Live capture; returns once a probe connection shows up in tshark's own output."""
    proc = await asyncio.create_subprocess_exec(
        tshark,
        "-i",
        "lo",
        "-f",
        ports,
        "-w",
        str(out),
        "-P",
        "-l",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for _ in range(40):
        _, writer = await asyncio.open_connection("127.0.0.1", probe_port)
        writer.close()
        try:
            if await asyncio.wait_for(proc.stdout.readline(), 0.5):
                break
        except TimeoutError:
            continue
    else:
        proc.kill()
        await proc.wait()
        pytest.fail("tshark never showed a captured packet")
    task = asyncio.get_running_loop().create_task(_drain(proc.stdout, printed))
    _DRAINS.add(task)
    task.add_done_callback(_DRAINS.discard)
    return proc


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(stream: asyncio.StreamReader, printed: list[str]) -> None:
    while line := await stream.readline():
        printed.append(line.decode("utf-8", "replace"))


def _serious(expert: str) -> list[str]:
    """Rows of the Errors/Warnings tables of ``-z expert`` whose protocol is not TCP."""
    rows: list[str] = []
    section = ""
    for line in expert.splitlines():
        if line and not line.startswith(" ") and "(" in line:
            section = line.split("(")[0].strip()
            continue
        parts = line.split()
        if section in ("Errors", "Warnings", "Warns") and len(parts) >= 4 and parts[0].isdigit():
            if parts[2] != "TCP":
                rows.append(line.strip())
    return rows


def _fields(tshark: str, pcap: Path, decode: list[str], display: str, field: str) -> list[str]:
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            *decode,
            "-Y",
            display,
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            field,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [v for line in out.splitlines() for v in line.split(",") if v]


async def _one_call(caller: H323Caller, port: int, app: RecordingApp) -> None:
    await caller.call(port)
    core = caller.core
    assert core is not None
    await caller.wait_for(lambda: core.state is EpState.CONNECTED)
    await caller.wait_for(lambda: core.media["video"].send_to is not None)
    await caller.wait_for(lambda: any(isinstance(x, m.VideoFastUpdate) for x in core.h245_msgs))
    caller.send_uii("5")
    caller.send_vfu()
    if caller.mode is Mode.TUNNEL:  # gateway hangs up: EndSessionCommand + ReleaseComplete
        app.connected[core.guid.hex()].hangup("test")
        await caller.wait_for(lambda: core.state is EpState.RELEASED)
    else:
        caller.hangup()
        await caller.wait_for(lambda: caller.signalling_closed)
    await caller.close()


async def _seen(printed: list[str], pattern: re.Pattern[str]) -> None:
    while not any(pattern.search(line) for line in printed):
        await asyncio.sleep(0.05)  # tshark's -P output is polled: it has no event to await


async def test_tshark_decodes_every_gateway_message(gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tshark = require_binary("tshark")
    svc, app, plane = gateway
    port = svc.test_port
    rng = svc.settings.h245_range
    pcap = tmp_path / "h323.pcapng"
    printed: list[str] = []
    proc = await _start_capture(
        tshark, f"tcp port {port} or tcp portrange {rng.low}-{rng.high}", pcap, port, printed
    )
    callers: list[H323Caller] = []
    try:
        for mode in (Mode.FAST_START, Mode.TUNNEL, Mode.SEPARATE):
            caller = H323Caller("1234567890", mode, video=True)
            callers.append(caller)
            await _one_call(caller, port, app)
        # a refused call too (ReleaseComplete cause 42)
        svc.stop_accepting()
        refused = H323Caller("1234567890", Mode.TUNNEL)
        callers.append(refused)
        await refused.call(port)
        await refused.wait_for(lambda: refused.core.state is EpState.RELEASED)
        client_port = refused.local_port
        await refused.close()
        # the capture has everything once tshark has printed the last connection's FIN
        fin = re.compile(rf"\b({client_port} (→|->) {port}|{port} (→|->) {client_port}) \[FIN")
        await asyncio.wait_for(_seen(printed, fin), 20)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for caller in callers:
            await caller.close()

    h245_ports = sorted({c.core.gateway_h245[1] for c in callers if c.core and c.core.gateway_h245})
    decode = [a for p in h245_ports for a in ("-d", f"tcp.port=={p},h245")]
    # 1. nothing malformed, and no expert warning or error from any protocol but TCP (the
    #    kernel's own dup-ACK/SACK bookkeeping around a FIN is not ours to judge)
    bad = subprocess.run(
        [tshark, "-r", str(pcap), *decode, "-Y", "_ws.malformed"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert bad.strip() == "", bad
    expert = subprocess.run(
        [tshark, "-r", str(pcap), *decode, "-q", "-z", "expert"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert _serious(expert) == [], expert
    # 2. every Q.931 message and every H.245 PDU the gateway sent was decoded as such
    sent_q931 = [
        name for c in callers for name, _ in c.core.received if name != "bad-call-reference"
    ]
    seen_q931 = _fields(tshark, pcap, decode, f"tcp.srcport=={port} && q931", "q931.message_type")
    import shutil

    shutil.copy(pcap, "/tmp/dbg.pcapng")
    print("PORT", port, h245_ports, sent_q931)
    assert len(seen_q931) == len(sent_q931) > 10
    assert seen_q931.count("0x5a") == 2  # the calls the gateway ended: hangup (16), draining (42)
    sent_h245 = sum(len(c.core.h245_msgs) for c in callers)
    src = " || ".join(f"tcp.srcport=={p}" for p in [port, *h245_ports])
    seen_h245 = _fields(tshark, pcap, decode, f"({src}) && h245", "h245.pdu_type")
    assert len(seen_h245) == sent_h245 > 10
    # 3. the causes tshark reads are the ones we meant
    causes = _fields(
        tshark, pcap, decode, f"tcp.srcport=={port} && q931.cause_value", "q931.cause_value"
    )
    assert sorted(causes) == ["16", "42"]


def test_expert_parser_flags_non_tcp_rows() -> None:
    sample = """
Errors (1)
=============
   Frequency      Group           Protocol  Summary
           1   Malformed             H.245  Malformed Packet (Exception occurred)

Warns (2)
=============
   Frequency      Group           Protocol  Summary
           2    Sequence               TCP  Previous segment not captured
"""
    assert _serious(sample) == [
        "1   Malformed             H.245  Malformed Packet (Exception occurred)"
    ]
