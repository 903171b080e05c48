"""`vtcprobe call`: real SIP/TLS calls into the running daemon through pjsua2."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from probes.call import TONE_HZ, analyse_recording, parse_uri, write_tone
from probes.common import ProbeError
from tests.conftest import ROOT
from tests.daemon import start_daemon
from tests.probes.helpers import vtcprobe

pytestmark = pytest.mark.timeout(180)
MEETING = "4718203956"
MODERATED = "5829301746123"
PASSCODE = "97531"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    data = tmp_path_factory.mktemp("call") / "var"
    data.mkdir()
    for args in (["--id", MEETING, "--title", "probe"],
                 ["--id", MODERATED, "--digits", "13", "--moderated", "--moderator-passcode", PASSCODE]):
        subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data), *args],
                       cwd=ROOT, check=True, capture_output=True, timeout=60)
    d = start_daemon(data)
    try:
        yield d
    finally:
        d.stop()


async def test_call_straight_into_a_meeting(daemon, tmp_path: Path) -> None:
    uri = f"sip:{MEETING}@127.0.0.1:{daemon.ports['sip_tls']};transport=tls"
    run = await vtcprobe("call", uri, "--duration", "5", "--keep", str(tmp_path), "--json", timeout=90)
    d = run.json()
    assert d["answered"] and d["transport"] == "tls" and d["codec"] in ("PCMU", "PCMA", "G722")
    assert d["ended_by"] == "local"
    pj, ours = d["pjsua"], d["ours"]
    assert pj["packets"] > 150 and ours is not None, d["capture"]
    # our capture-based figures and pjsua2's RTCP ones describe the same stream
    assert abs(ours["packets"] - pj["packets"]) <= 5
    assert ours["lost"] == 0 and pj["lost"] == 0
    assert abs(ours["jitter_ms"] - pj["jitter_ms"]) < 2.0
    assert d["heard"]["heard"] and d["heard"]["audible_s"] > 0.5  # the gateway's prompts/audio
    assert run.status == 0, [c for c in d["checks"] if not c["ok"]]
    assert (tmp_path / "received.wav").stat().st_size > 1000


async def test_menu_dtmf_and_passcode_never_printed(daemon, tmp_path: Path) -> None:
    uri = f"sip:meeting@127.0.0.1:{daemon.ports['sip_tls']};transport=tls"
    run = await vtcprobe("call", uri, "--duration", "9", "--meeting-id", MODERATED, "--passcode", PASSCODE,
                         "--dtmf-at", "1.5", "--capture", "off", "--json", str(tmp_path / "call.json"), timeout=90)
    d = (tmp_path / "call.json").read_text()
    assert PASSCODE not in d and PASSCODE not in run.stdout and PASSCODE not in run.stderr
    import json

    res = json.loads(d)
    assert res["answered"]
    assert res["dtmf_sent"] == [MODERATED + "#", "*" * len(PASSCODE) + "#"]
    assert res["ours"] is None and res["capture"] == "off or not permitted"
    assert res["heard"]["heard"]  # the voice menu spoke
    assert run.status == 0, run.stdout


async def test_bad_uri_is_a_usage_error() -> None:
    run = await vtcprobe("call", "http://example.com")
    assert run.status == 2 and "not a SIP URI" in run.stderr


def test_parse_uri() -> None:
    assert parse_uri("sip:123@gw.example.com;transport=tls") == ("gw.example.com", 5061, "tls")
    assert parse_uri("sip:123@10.0.0.1:5070") == ("10.0.0.1", 5070, "udp")
    assert parse_uri("sips:u@[::1]:5071") == ("::1", 5071, "tls")
    with pytest.raises(ProbeError):
        parse_uri("sip:1@h;transport=sctp")


def test_recording_analysis(tmp_path: Path) -> None:
    tone = tmp_path / "t.wav"
    write_tone(tone, seconds=1.0, rate=16000)
    a = analyse_recording(tone)
    assert a["heard"] and a["own_tone_heard_s"] > 0.9 and abs(a["dominant_hz"] - TONE_HZ) < 30
    quiet = tmp_path / "q.wav"
    with wave.open(str(quiet), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.random.default_rng(1).normal(0, 20, 8000)).astype("<i2").tobytes())
    q = analyse_recording(quiet)
    assert not q["heard"] and q["audible_s"] == 0.0
    assert analyse_recording(tmp_path / "missing.wav")["recorded"] is False
