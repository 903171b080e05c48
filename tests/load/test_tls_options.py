"""`vtcgw-load calls` TLS options against the real daemon: ``--tls-resume`` makes every
connection after the first resume a session (the daemon keeps tickets on), and
``--tls-legacy-rsa`` speaks TLS 1.2 ECDHE-RSA like old room systems (the daemon answers
with its RSA certificate); the default client gets TLS 1.3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.daemon import start_daemon

pytestmark = pytest.mark.timeout(90)
MEETING = "4718203957"


def _run(port: int, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.cli", "calls", "--target", f"127.0.0.1:{port}",
         "--calls", "4", "--rate", "20", "--hold", "0.2", "--no-rtp", "--meeting", MEETING,
         "--meeting-size", "4", "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    return json.loads(out.stdout)


def test_resumption_and_legacy_rsa_profiles(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "gateway.cli", "meetings", "create", "--data-dir", str(data),
                    "--id", MEETING, "--title", "load"], cwd=ROOT, check=True, capture_output=True)
    daemon = start_daemon(data)
    try:
        port = daemon.ports["sip_tls"]
        full, resumed, legacy = _run(port), _run(port, "--tls-resume"), _run(port, "--tls-legacy-rsa")
    finally:
        daemon.stop()
    for report in (full, resumed, legacy):
        assert report["sip"]["answered"] == 4 and report["connections"]["opened"] == 4
    assert full["connections"]["resumed"] == 0 and full["connections"]["tls"][0].startswith("TLSv1.3")
    # calls start 50 ms apart, each after the previous connection's tickets arrived
    assert resumed["connections"]["resumed"] == 3
    assert legacy["connections"]["tls"] == ["TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384"]
