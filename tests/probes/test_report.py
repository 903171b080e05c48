"""`vtcprobe report`: an HTML page from real runs' JSON, rendered by headless Chromium."""

from __future__ import annotations

import base64
import re
import signal
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gateway.quality.pcap import write_pcap
from gateway.reflector import Reflector
from tests.conftest import require_binary
from tests.probes.helpers import TOKEN, vtcprobe, vtcprobe_inproc

pytestmark = pytest.mark.timeout(180)


def _capture(path: Path) -> None:
    t0 = 1_700_000_000 * 10**9
    rng = np.random.default_rng(2)
    pkts = []
    for i in range(400):
        if i % 37 == 5:
            continue
        hdr = struct.pack("!BBHII", 0x80, 0, i, i * 160, 0xABCDEF01)
        pkts.append((t0 + i * 20_000_000 + int(rng.uniform(0, 8e6)), ("10.1.0.1", 40000), ("10.1.0.2", 20000),
                     hdr + bytes(160)))
    pkts.sort(key=lambda p: p[0])
    write_pcap(path, pkts)


def _screenshot(html: Path, png: Path, profile: Path) -> None:
    exe = require_binary("chromium")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1200,1600", f"--screenshot={png}", html.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_report_renders_in_chromium(tmp_path: Path) -> None:
    r = Reflector(host="127.0.0.1", port=0, token=TOKEN)
    port = await r.start()
    try:
        rtp_json = tmp_path / "rtp.json"
        run = await vtcprobe("rtp", f"127.0.0.1:{port}", "--token", TOKEN, "--duration", "2",
                             "--json", str(rtp_json))
        assert run.status == 0, run.stderr
    finally:
        await r.close()
    cap = tmp_path / "c.pcap"
    _capture(cap)
    pcap_json = tmp_path / "pcap.json"
    run = await vtcprobe("pcap", str(cap), "--json", str(pcap_json))
    assert run.status == 1  # 2.7 % loss
    html = tmp_path / "report.html"
    run = await vtcprobe("report", str(rtp_json), str(pcap_json), "-o", str(html))
    assert run.status == 1 and "some checks failed" in run.stdout  # the capture failed its loss check
    text = html.read_text()
    assert "rtp probe of 127.0.0.1" in text and "0xABCDEF01" in text
    assert "http://" not in text and "https://" not in text and "src=\"file" not in text  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 2
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)

    png = tmp_path / "shot.png"
    _screenshot(html, png, tmp_path / "chromium-profile")
    from matplotlib.image import imread

    img = imread(png)[..., :3]
    assert img.shape[0] >= 800 and img.shape[1] >= 1000
    assert float(img.std()) > 0.05  # not a blank page
    # red/green verdict badges were rendered (colours only present if CSS and content loaded)
    assert (np.abs(img - np.array([0xFF, 0xEB, 0xE9]) / 255).sum(axis=2) < 0.02).any()


def test_report_rejects_non_probe_json(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    run = vtcprobe_inproc(capsys, "report", str(bad), "-o", str(tmp_path / "o.html"))
    assert run.status == 2 and "not the JSON of a vtcprobe run" in run.stderr
    run = vtcprobe_inproc(capsys, "report", str(tmp_path / "missing.json"))
    assert run.status == 2 and "no such file" in run.stderr
