"""Live meetings over the admin API with a real caller: roster, mute, lock, recording, kick, 404s."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.daemon import Daemon, start_daemon
from tests.peers import Agent, sip_uri, tone_wav

OPEN = "4718203956"


def api(gw: Daemon, method: str, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(gw.api + path, method=method, headers=gw.headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_live_api_actions(tmp_path: Path) -> None:
    data = tmp_path / "var"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--id", OPEN,
                    "--data-dir", str(data)], check=True, capture_output=True, timeout=60)
    gw = start_daemon(data)
    try:
        a = Agent({"uri": sip_uri(OPEN, gw.ports["sip_tls"]), "transport": "tls", "max_duration": 30,
                   "play_wav": str(tone_wav(tmp_path / "t.wav", 440))}, name="a")
        a.wait_for("state", state="CONFIRMED")
        status, live = api(gw, "GET", "/api/v1/live/meetings")
        assert status == 200 and [m["meeting_id"] for m in live["meetings"]] == [OPEN]
        (p,) = live["meetings"][0]["participants"]
        assert p["protocol"] == "sip" and p["transport"] == "tls" and p["codec"] == "PCMU"
        assert p["state"] == "meeting" and not p["muted"]
        cid = p["call_id"]
        status, body = api(gw, "POST", f"/api/v1/live/calls/{cid}/mute")
        assert status == 200 and body["muted"]
        status, body = api(gw, "POST", f"/api/v1/live/meetings/{OPEN}/lock")
        assert status == 200 and body["locked"]
        status, body = api(gw, "POST", f"/api/v1/live/meetings/{OPEN}/recording/start")
        assert status == 200 and body["recording"]
        status, body = api(gw, "POST", f"/api/v1/live/meetings/{OPEN}/recording/stop")
        assert status == 200 and not body["recording"]
        status, recs = api(gw, "GET", "/api/v1/recordings")
        assert status == 200 and len(recs["recordings"]) == 1
        rec = recs["recordings"][0]
        # an audio-only meeting records WAV (a meeting with video records MKV: test_recording_video)
        assert rec["name"].endswith(".wav") and rec["content_type"] == "audio/wav"
        req = urllib.request.Request(f"{gw.api}/api/v1/recordings/{rec['meeting_id']}/{rec['name']}",
                                     headers=gw.headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "audio/wav" and resp.read(4) == b"RIFF"
        assert api(gw, "GET", "/api/v1/live/meetings/9182736450")[0] == 404
        assert api(gw, "POST", "/api/v1/live/calls/nope/mute")[0] == 404
        assert api(gw, "GET", "/api/v1/recordings/..%2f/x.wav")[0] in (400, 404)
        status, body = api(gw, "POST", f"/api/v1/live/calls/{cid}/kick")
        assert status == 200 and body["removed"]
        assert a.wait_for("ended", timeout=10)["by"] == "remote"
        a.stop()
        assert api(gw, "GET", "/api/v1/live/meetings")[1]["meetings"] == []
    finally:
        gw.stop()
