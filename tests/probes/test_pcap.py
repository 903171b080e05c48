"""`vtcprobe pcap`: streams found without ports, figures agreeing with tshark, plots.

Captures with known impairment are written with the quality engine's pcap writer:
a clean G.711 stream, a G.711 stream with 5 % loss and arrival jitter (no
reordering, so RFC 3550 and Wireshark loss agree; QUALITY.md 3.4), and a
dynamic-PT stream whose clock only `--clock-rate` can tell.
Tolerances against tshark: packets and lost exact; max delta 0.01 ms; mean and max
jitter 0.05 ms (QUALITY.md 3.4 expects ~0.01 ms on clean captures; the writer's
microsecond timestamps and Wireshark's integer clock_rate/1000 add a little).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from gateway.quality.pcap import write_pcap
from tests.conftest import require_binary
from tests.probes.helpers import vtcprobe, vtcprobe_inproc
from tests.quality.tshark import lost_count, tshark_rtp_streams

pytestmark = pytest.mark.timeout(120)

T0 = 1_700_000_000 * 10**9


def _stream(src, dst, *, ssrc: int, pt: int, n: int, step_ts: int, interval_ms: float,
            lose: set[int] = frozenset(), jitter_ms: float = 0.0, seed: int = 1, seq0: int = 65000,
            size: int = 160, t_off_ms: float = 0.0):
    rng = np.random.default_rng(seed)
    arrival = T0 + (t_off_ms + np.arange(n) * interval_ms) * 1e6 + rng.uniform(0, jitter_ms, n) * 1e6
    arrival = np.maximum.accumulate(arrival.astype(np.int64))  # no reordering
    out = []
    for i in range(n):
        if i in lose:
            continue
        hdr = struct.pack("!BBHII", 0x80, pt, (seq0 + i) & 0xFFFF, (1000 + i * step_ts) & 0xFFFFFFFF, ssrc)
        out.append((int(arrival[i]), src, dst, hdr + bytes(size)))
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    lose = set(rng.choice(np.arange(10, 990), size=50, replace=False).tolist())
    pkts = (_stream(("10.0.0.1", 40000), ("10.0.0.2", 20000), ssrc=0x11111111, pt=0, n=1000, step_ts=160,
                    interval_ms=20)
            + _stream(("10.0.0.2", 20002), ("10.0.0.1", 40002), ssrc=0x22222222, pt=8, n=1000, step_ts=160,
                      interval_ms=20, lose=lose, jitter_ms=12.0, seed=3, t_off_ms=3)
            + _stream(("10.0.0.3", 30000), ("10.0.0.1", 40004), ssrc=0x33333333, pt=96, n=300, step_ts=3000,
                      interval_ms=33.3333, jitter_ms=4.0, seed=4, size=900, t_off_ms=7))
    pkts.sort(key=lambda p: p[0])
    path = tmp_path_factory.mktemp("pcap") / "impaired.pcap"
    write_pcap(path, pkts)
    return path


async def test_json_lists_every_stream_with_the_required_fields(capture: Path) -> None:
    run = await vtcprobe("pcap", str(capture), "--json", "--clock-rate", "96=90000")
    assert run.status == 1, run.stderr  # the lossy stream fails the 1 % loss threshold
    streams = run.json()
    assert isinstance(streams, list) and len(streams) == 3
    need = {"ssrc", "src", "dst", "payload_type", "packets", "lost", "max_delta_ms", "mean_jitter_ms",
            "max_jitter_ms", "mos"}
    for s in streams:
        assert need <= set(s)
    by = {s["ssrc"]: s for s in streams}
    assert by["0x11111111"]["lost"] == 0 and by["0x11111111"]["verdict"] == "pass"
    assert by["0x11111111"]["mos"] > 4.0
    assert by["0x22222222"]["lost"] == 50 and by["0x22222222"]["verdict"] == "fail"
    assert by["0x22222222"]["mos"] < by["0x11111111"]["mos"]
    v = by["0x33333333"]
    assert v["clock_rate"] == 90000 and v["clock_source"] == "option"
    assert v["mos"] is None  # video: no voice MOS
    assert v["max_jitter_ms"] > 0.5  # 4 ms of arrival spread at the right clock


async def test_agrees_with_tshark(capture: Path) -> None:
    rows = tshark_rtp_streams(capture)
    run = await vtcprobe("pcap", str(capture), "--json")
    ours = {s["ssrc"]: s for s in run.json()}
    checked = 0
    for row in rows:
        ssrc = "0x" + row["SSRC"][2:].upper()
        if ssrc not in ("0x11111111", "0x22222222"):
            continue  # PT 96 has no clock for tshark without SDP
        s = ours[ssrc]
        assert s["packets"] == int(row["Pkts"])
        assert s["lost"] == lost_count(row)
        assert s["max_delta_ms"] == pytest.approx(float(row["Max Delta(ms)"]), abs=0.01)
        assert s["max_jitter_ms"] == pytest.approx(float(row["Max Jitter(ms)"]), abs=0.05)
        assert s["mean_jitter_ms"] == pytest.approx(float(row["Mean Jitter(ms)"]), abs=0.05)
        checked += 1
    assert checked == 2


async def test_table_and_plot(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    run = await vtcprobe("pcap", str(capture), "--plot", str(out))
    assert run.status == 1
    assert "Max Jitter(ms)" in run.stdout and "0x22222222" in run.stdout and "FAIL" in run.stdout
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[0] > 200 and float(img[..., :3].std()) > 0.02  # not blank


def test_clean_capture_passes_and_bad_input_is_an_error(tmp_path: Path, capsys) -> None:
    clean = tmp_path / "clean.pcap"
    write_pcap(clean, _stream(("10.0.0.1", 40000), ("10.0.0.2", 20000), ssrc=7, pt=0, n=200, step_ts=160,
                              interval_ms=20))
    assert vtcprobe_inproc(capsys, "pcap", str(clean)).status == 0
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all")
    bad = vtcprobe_inproc(capsys, "pcap", str(junk))
    assert bad.status == 2 and bad.stderr.startswith("vtcprobe: ") and bad.stderr.count("\n") == 1
    missing = vtcprobe_inproc(capsys, "pcap", str(tmp_path / "nope.pcap"))
    assert missing.status == 2 and "no such file" in missing.stderr
    opt = vtcprobe_inproc(capsys, "pcap", str(clean), "--clock-rate", "x=1")
    assert opt.status == 2 and "PT=RATE" in opt.stderr


def test_tshark_present() -> None:
    require_binary("tshark")
