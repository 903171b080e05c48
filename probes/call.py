"""`vtcprobe call URI`: a real SIP call through pjsua2, and what it heard.

The call runs in `probes.pjsip_agent` (a subprocess: pjsua2 allows 4 calls per
process and has its own threading rules). It uses the null audio device, plays a
test tone WAV into the call, records what it receives, optionally keys DTMF (the
meeting ID, then the passcode and '#'), stays N seconds and hangs up.

What the probe reports:
* signalling: final state and status code, codec, who hung up;
* pjsua2's own RTCP figures (packets, loss, jitter, RTT) as it printed them;
* our figures from the RTP it received: while the call runs, `dumpcap` (from tshark)
  captures UDP to and from the gateway; the capture goes through the quality
  engine (gateway.quality.pcap + engine) and the stream from the gateway to us
  with the packet count closest to pjsua2's is taken as the call's. This needs
  capture rights (root or the wireshark group); without them `ours` is absent and
  the report says so;
* whether the meeting's audio was heard: the recording's level per 20 ms frame
  (frames above -45 dBFS count as audible), the dominant frequency of the audible
  part, and a Goertzel test for our own test tone coming back (mix-minus means it
  should not).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.common import Check, Op, ProbeError, ProbeResult, Progress, checks_table, fmt, table

TONE_HZ = 1004.0  # the usual test-tone frequency (avoids codec frame harmonics)
AUDIBLE_DBFS = -45.0
FRAME_S = 0.02


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOptions:
    uri: str
    duration_s: float = 10.0
    meeting_id: str | None = None
    passcode: str | None = None
    dtmf_at_s: float = 2.0
    dtmf_method: str = "rfc4733"
    capture: str = "auto"  # auto | on | off
    max_loss_pct: float = 1.0
    max_jitter_ms: float = 30.0
    min_mos: float = 3.6
    expect_audio: bool = True
    keep_dir: str | None = None
    agent_timeout_s: float = 30.0


_URI = re.compile(r"^sips?:(?:(?P<user>[^@;]+)@)?(?P<host>\[[^\]]+\]|[^:;>]+)(?::(?P<port>\d+))?(?P<params>;.*)?$", re.I)


def parse_uri(uri: str) -> tuple[str, int, str]:
    """(host, port, transport) of a SIP URI; port defaults by transport."""
    m = _URI.match(uri.strip())
    if not m:
        raise ProbeError(f"not a SIP URI: {uri!r} (e.g. 'sip:1234567890@gw.example.com;transport=tls')")
    params = dict(p.partition("=")[::2] for p in (m.group("params") or "").split(";") if p)
    transport = params.get("transport", "tls" if uri.lower().startswith("sips:") else "udp").lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ProbeError(f"transport {transport!r} is not udp, tcp or tls")
    port = int(m.group("port")) if m.group("port") else (5061 if transport == "tls" else 5060)
    return m.group("host").strip("[]"), port, transport


def write_tone(path: Path, *, seconds: float = 10.0, rate: int = 8000, hz: float = TONE_HZ) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.25 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def goertzel_power(x: np.ndarray, rate: int, hz: float) -> float:
    """Power of one frequency in a block (Goertzel), normalised to a full-scale sine = 1."""
    if len(x) == 0:
        return 0.0
    n = len(x)
    k = round(n * hz / rate)
    w = 2 * np.pi * k / n
    coeff = 2 * np.cos(w)
    s1 = s2 = 0.0
    for v in x.tolist():  # short blocks only (one 20 ms frame at a time)
        s1, s2 = v + coeff * s1 - s2, s1
    p = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return float(4 * p / (n * n))


def analyse_recording(path: Path, *, tone_hz: float = TONE_HZ) -> dict[str, Any]:
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, ch = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        return {"recorded": False, "error": str(exc)}
    if width != 2:
        return {"recorded": False, "error": f"{width * 8}-bit WAV not supported"}
    x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    flen = int(rate * FRAME_S)
    nfr = len(x) // flen if flen else 0
    if nfr == 0:
        return {"recorded": True, "seconds": 0.0, "heard": False, "audible_s": 0.0}
    frames = x[: nfr * flen].reshape(nfr, flen)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    dbfs = 20 * np.log10(np.maximum(rms, 1e-9) * np.sqrt(2))
    audible = dbfs > AUDIBLE_DBFS
    dom = None
    if audible.any():
        spec = np.abs(np.fft.rfft(frames[audible] * np.hanning(flen), axis=1)).mean(axis=0)
        dom = float(np.fft.rfftfreq(flen, 1 / rate)[int(np.argmax(spec[1:]) + 1)])
    tone_frames = 0
    for f in frames[audible][:500]:
        p = goertzel_power(f, rate, tone_hz)
        if p > 0.5 * float(np.mean(f**2)) * 2 and p > 10 ** (AUDIBLE_DBFS / 10):
            tone_frames += 1
    return {
        "recorded": True,
        "seconds": round(nfr * FRAME_S, 2),
        "sample_rate": rate,
        "audible_s": round(float(audible.sum()) * FRAME_S, 2),
        "peak_dbfs": round(float(dbfs.max()), 1),
        "mean_active_dbfs": round(float(dbfs[audible].mean()), 1) if audible.any() else None,
        "dominant_hz": round(dom, 1) if dom is not None else None,
        "own_tone_heard_s": round(tone_frames * FRAME_S, 2),
        "heard": bool(audible.sum() * FRAME_S >= 0.5),
    }


def _mask(digits: str, passcode: str | None) -> str:
    """Passcodes never reach output or logs."""
    return "*" * (len(digits) - 1) + "#" if passcode and digits == passcode + "#" else digits


def _resolve_ip(host: str) -> str:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host}: {exc.strerror}") from None


async def _start_capture(ip: str, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("dumpcap")
    if exe is None:
        return None
    iface = "lo" if ip.startswith("127.") or ip == "::1" else "any"
    proc = subprocess.Popen([exe, "-i", iface, "-q", "-s", "128", "-a", "filesize:200000", "-w", str(out),
                             "-f", f"udp and host {ip}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    loop = asyncio.get_running_loop()
    try:  # dumpcap says "Capturing on ..." once the capture runs
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stderr.readline), 5.0)
    except TimeoutError:
        line = b""
    if b"Capturing on" not in line:
        _stop(proc)
        return None
    return proc


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def our_figures(capture: Path, gw_ip: str, sip_port: int, rx_packets: int | None,
                window: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """The call's received stream in the capture: from the gateway, audio, starting in the
    call's time window, with the packet count closest to what pjsua2 counted."""
    from probes.pcap import analyse

    try:
        streams = analyse(capture, series=False)
    except ProbeError:
        return None
    inbound = [s for s in streams if s["src_ip"] == gw_ip and s["src_port"] != sip_port and s["audio"]
               and (window is None or window[0] <= (s["start_unix"] or 0) <= window[1])]
    if not inbound:
        return None
    if rx_packets:
        pick = min(inbound, key=lambda s: abs(s["packets"] - rx_packets))
    else:
        pick = max(inbound, key=lambda s: s["packets"])
    return {"stream": f"{pick['src']} -> {pick['dst']} {pick['ssrc']}", "encoding": pick["encoding"],
            "packets": pick["packets"], "lost": pick["lost"], "loss_pct": pick["lost_pct"],
            "jitter_ms": pick["jitter_ms"], "max_jitter_ms": pick["max_jitter_ms"], "mos": pick["mos"]}


async def run_agent(spec: dict[str, Any], timeout_s: float, progress: Progress | None,
                    work: Path) -> list[dict[str, Any]]:
    # the spec may hold a passcode: a 0600 file, not the command line (visible in ps)
    spec_file = work / "agent-spec.json"
    fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probes.pjsip_agent", "--spec-file", str(spec_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=str(Path(__file__).resolve().parent.parent))
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    async def tick() -> None:
        while progress is not None:
            progress.update(time.monotonic() - t0)
            await asyncio.sleep(0.25)

    ticker = asyncio.create_task(tick())
    try:
        assert proc.stdout is not None
        while True:
            left = timeout_s - (time.monotonic() - t0)
            if left <= 0:
                break
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), left)
            except TimeoutError:
                break
            if not line:
                break
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            events.append(ev)
            if ev.get("event") == "done":
                break
    finally:
        ticker.cancel()
        spec_file.unlink(missing_ok=True)
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if progress:
            progress.close()
    return events


async def probe(opts: CallOptions, progress: Progress | None = None) -> ProbeResult:
    host, port, transport = parse_uri(opts.uri)
    gw_ip = _resolve_ip(host)
    work = Path(opts.keep_dir) if opts.keep_dir else Path(tempfile.mkdtemp(prefix="vtcprobe-call-"))
    work.mkdir(parents=True, exist_ok=True)
    tone, rec, cap = work / "tone.wav", work / "received.wav", work / "call.pcapng"
    write_tone(tone)
    dtmf = []
    if opts.meeting_id:
        dtmf.append({"at": opts.dtmf_at_s, "digits": opts.meeting_id + "#", "method": opts.dtmf_method})
    if opts.passcode:
        at = opts.dtmf_at_s + 0.3 * len(opts.meeting_id or "") + 2.0
        dtmf.append({"at": at, "digits": opts.passcode + "#", "method": opts.dtmf_method})
    spec = {"role": "call", "uri": opts.uri, "transport": transport, "play_wav": str(tone),
            "record_wav": str(rec), "dtmf": dtmf, "hangup_after": opts.duration_s,
            "max_duration": opts.duration_s + opts.agent_timeout_s}
    capture = None
    if opts.capture != "off":
        capture = await _start_capture(gw_ip, cap)
        if capture is None and opts.capture == "on":
            raise ProbeError("cannot capture (dumpcap missing or no capture rights); use --capture off")
    t_spawn = time.time()
    try:
        events = await run_agent(spec, opts.duration_s + opts.agent_timeout_s + 10, progress, work)
    finally:
        _stop(capture)
    t_conf = next((e["t"] for e in events if e.get("event") == "state" and e.get("state") == "CONFIRMED"), None)
    # the agent's clock starts when its process does: a little after t_spawn
    window = (t_spawn + t_conf - 3.0, t_spawn + t_conf + 10.0) if t_conf is not None else None
    states = [e for e in events if e.get("event") == "state"]
    stats = next((e for e in events if e.get("event") == "stats"), None)
    ended = next((e for e in events if e.get("event") == "ended"), None)
    media = next((e for e in events if e.get("event") == "media"), None)
    errors = [e["message"] for e in events if e.get("event") == "error"]
    confirmed = any(s.get("state") == "CONFIRMED" for s in states)
    data: dict[str, Any] = {
        "uri": opts.uri, "transport": transport, "gateway_ip": gw_ip,
        "answered": confirmed,
        "final_state": states[-1]["state"] if states else None,
        "status_code": (ended or (states[-1] if states else {})).get("code"),
        "ended_by": ended.get("by") if ended else None,
        "reason": ended.get("reason") if ended else None,
        "codec": media.get("codec") if media else None,
        "dtmf_sent": [_mask(e["digits"], opts.passcode) for e in events if e.get("event") == "dtmf_sent"],
        "errors": errors,
    }
    if stats:
        data["pjsua"] = {"packets": stats["rx_packets"], "lost": stats["rx_loss"],
                         "loss_pct": round(100.0 * stats["rx_loss"] / max(stats["rx_packets"] + stats["rx_loss"], 1), 3),
                         "jitter_ms": round(stats["rx_jitter_us"] / 1000.0, 3),
                         "rtt_ms": round(stats["rtt_us"] / 1000.0, 3) if stats["rtt_us"] else None,
                         "tx_packets": stats["tx_packets"]}
    ours = (our_figures(cap, gw_ip, port, stats["rx_packets"] if stats else None, window)
            if capture is not None else None)
    data["ours"] = ours
    data["capture"] = "used" if ours else ("no RTP found in the capture" if capture is not None else "off or not permitted")
    data["heard"] = analyse_recording(rec) if rec.exists() else {"recorded": False}
    if opts.keep_dir:
        data["files"] = {"recording": str(rec) if rec.exists() else None,
                         "capture": str(cap) if cap.exists() else None}
    else:
        shutil.rmtree(work, ignore_errors=True)
        data["files"] = None  # --keep DIR keeps tone, recording and capture
    res = ProbeResult(probe="call", target=opts.uri, data=data)
    res.checks.append(Check(name="call answered", value=confirmed, limit=True, op=Op.EQ))
    fig = ours or data.get("pjsua")
    if confirmed and fig:
        src = "ours" if ours else "pjsua2"
        res.checks.append(Check(name=f"received loss ({src})", value=fig["loss_pct"], limit=opts.max_loss_pct, unit="%"))
        res.checks.append(Check(name=f"received jitter ({src})", value=fig["jitter_ms"], limit=opts.max_jitter_ms, unit="ms"))
        if ours and ours.get("mos") is not None:
            res.checks.append(Check(name="received MOS (ours)", value=ours["mos"], limit=opts.min_mos, op=Op.MIN))
    if opts.expect_audio:
        res.checks.append(Check(name="meeting audio heard", value=bool(data["heard"].get("heard")), limit=True, op=Op.EQ))
    return res


def render(res: ProbeResult) -> str:
    d = res.data
    out = [f"SIP call to {d['uri']} over {d['transport']}: "
           f"{'answered' if d['answered'] else 'NOT answered'}, final {d['final_state']} {fmt(d['status_code'])}, "
           f"codec {fmt(d['codec'])}, ended by {fmt(d['ended_by'])}"]
    if d["dtmf_sent"]:
        out.append(f"DTMF sent: {' '.join(d['dtmf_sent'])}")
    keys = ["packets", "lost", "loss_pct", "jitter_ms", "max_jitter_ms", "rtt_ms", "mos"]
    ours, pj = d.get("ours") or {}, d.get("pjsua") or {}
    out.append(table(["received audio", "ours (NumPy, capture)", "pjsua2 (RTCP)"],
                     [[k, ours.get(k), pj.get(k)] for k in keys], right={1, 2}))
    if not ours:
        out.append(f"our figures: {d['capture']}")
    h = d["heard"]
    if h.get("recorded"):
        out.append(f"recording: {h['seconds']} s, audible {h['audible_s']} s (peak {h['peak_dbfs']} dBFS, "
                   f"dominant {fmt(h['dominant_hz'])} Hz), own tone heard back {h['own_tone_heard_s']} s")
    for e in d["errors"]:
        out.append(f"agent error: {e}")
    out.append(checks_table(res.checks))
    out.append(f"verdict: {'PASS' if res.passed else 'FAIL'}")
    return "\n".join(out)
