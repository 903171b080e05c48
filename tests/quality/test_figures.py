"""Jitter by hand, RTT from report blocks, the E-model's reference points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.quality.bursts import burst_metrics
from gateway.quality.engine import QualityEngine
from gateway.quality.mos import (
    CODECS,
    EModelParams,
    delay_impairment_idd,
    effective_equipment_impairment,
    estimate_mos,
    mos_from_r,
    r_factor,
)
from gateway.quality.rtt import ntp64_from_unix_ns, ntp_short_from_ntp64, rtt_ntp_short, rtt_us
from tests.quality.helpers import T0, rows

pytestmark = pytest.mark.usefixtures("engine_impl")  # native and NumPy loops alike

# ------------------------------------------------------------------ A.8 jitter


def test_jitter_zero_for_perfect_pacing():
    eng = QualityEngine()
    eng.update(rows(list(range(100))))
    s = eng.summary(1)
    assert s.jitter == 0.0 and s.max_jitter_ms == 0.0 and s.max_delta_ms == 20.0


def test_jitter_by_hand_one_late_arrival():
    # packet 2 arrives 2 ms late: |D| = 16 ticks at 8 kHz then 16 again for packet 3
    arr = [T0, T0 + 20_000_000, T0 + 42_000_000, T0 + 60_000_000]
    eng = QualityEngine()
    eng.update(rows([1, 2, 3, 4], arrival_ns=arr))
    j = 0.0
    for d in (0.0, 16.0, 16.0):
        j += (d - j) / 16
    s = eng.summary(1)
    assert s.jitter == pytest.approx(j, rel=1e-12)
    assert s.jitter_rr == int(j)
    assert s.jitter_us == pytest.approx(j / 8000 * 1e6)
    assert s.max_delta_ms == 22.0


def test_jitter_uses_the_stream_clock_rate_override():
    # the same arrival pattern at 48 kHz: 2 ms = 96 ticks
    arr = [T0, T0 + 20_000_000, T0 + 42_000_000]
    eng = QualityEngine()
    eng.stream_id(1, clock_rate=48000, encoding="opus")
    eng.update(rows([1, 2, 3], pt=111, ts=[0, 960, 1920], arrival_ns=arr))
    assert eng.summary(1).jitter == pytest.approx(96 / 16)


def test_jitter_carries_across_batches_exactly():
    rng = np.random.default_rng(3)
    arr = [T0 + i * 20_000_000 + int(rng.integers(0, 5_000_000)) for i in range(300)]
    r = rows(list(range(300)), arrival_ns=arr)
    whole = QualityEngine()
    whole.update(r)
    parts = QualityEngine()
    for a in range(0, 300, 37):
        parts.update(r[a : a + 37])
    assert parts.summary(1).jitter == pytest.approx(whole.summary(1).jitter, rel=1e-12)
    assert parts.summary(1).max_jitter_ms == pytest.approx(whole.summary(1).max_jitter_ms, rel=1e-12)


def test_rtp_timestamp_wrap_does_not_spike_jitter():
    ts = [(0xFFFFFF00 + i * 160) & 0xFFFFFFFF for i in range(10)]
    eng = QualityEngine()
    eng.update(rows(list(range(10)), ts=ts))
    assert eng.summary(1).jitter == 0.0


# ------------------------------------------------------------------ RTT


def test_rtt_rfc3550_example():
    # RFC 3550 6.4.1 figure: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000
    assert rtt_ntp_short(0xB7108000, 0xB7052000, 0x00054000) == 0x00062000
    assert rtt_us(0xB7108000, 0xB7052000, 0x00054000) == 6_125_000


def test_rtt_guards():
    assert rtt_us(0xB7108000, 0, 0x00054000) is None  # no SR seen
    assert rtt_us(0xB7108000, 0xB7052000, 0) is None
    assert rtt_us(0xB7050000, 0xB7052000, 0x00000100) is None  # negative
    assert rtt_us(0xB7108000 + 40 * 65536, 0xB7052000, 0x00054000) is None  # > 30 s
    # across the 2^32 wrap of the NTP-short clock
    assert rtt_us(0x00001000, 0xFFFFF000, 0x00000800) == (0x1800 * 1_000_000) >> 16


def test_ntp_short_from_unix_time():
    ntp = ntp64_from_unix_ns(1_700_000_000 * 1_000_000_000 + 500_000_000)
    assert ntp >> 32 == 1_700_000_000 + 2_208_988_800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_short_from_ntp64(0x0123456789ABCDEF) == 0x456789AB


# ------------------------------------------------------------------ E-model


def test_default_r_is_93_2_and_mos_4_41():
    r = r_factor(EModelParams())
    assert r == pytest.approx(93.2062, abs=1e-4)
    assert mos_from_r(r) == pytest.approx(4.409, abs=1e-3)
    m = estimate_mos(codec=CODECS["G711"], loss_percent=0.0, one_way_delay_ms=0.0)
    assert m.unclamped == pytest.approx(4.41, abs=5e-3)
    assert m.value == 4.4


@pytest.mark.parametrize(
    ("ppl", "plc_r", "plc_mos", "noplc_r", "noplc_mos"),
    [
        (1, 89.56, 4.328, 75.28, 3.834),
        (2, 86.19, 4.235, 63.04, 3.256),
        (5, 77.42, 3.923, 42.12, 2.169),
        (10, 66.13, 3.411, 26.77, 1.481),
    ],
)
def test_g711_random_loss_table(ppl, plc_r, plc_mos, noplc_r, noplc_mos):
    # QUALITY.md derived the table as R = 93.20 - Ie,eff (Id = 0, random loss)
    r0 = r_factor(EModelParams())
    for codec, r_want, mos_want in (("G711", plc_r, plc_mos), ("G711-NOPLC", noplc_r, noplc_mos)):
        c = CODECS[codec]
        ie_eff = effective_equipment_impairment(c.ie, c.bpl, ppl, 1.0)
        assert 93.20 - ie_eff == pytest.approx(r_want, abs=0.005)
        assert mos_from_r(93.20 - ie_eff) == pytest.approx(mos_want, abs=5e-4)
        m = estimate_mos(codec=c, loss_percent=ppl)
        assert m.r == pytest.approx(r0 - ie_eff, abs=1e-9)


def test_g729a_row():
    c = CODECS["G729A"]
    assert 93.20 - effective_equipment_impairment(c.ie, c.bpl, 2, 1.0) == pytest.approx(74.20, abs=0.005)


@pytest.mark.parametrize(("ta", "idd"), [(100, 0.0), (150, 0.16), (200, 3.04), (300, 14.76), (500, 30.64)])
def test_delay_impairment_table(ta, idd):
    assert delay_impairment_idd(ta) == pytest.approx(idd, abs=0.005)


def test_burstiness_lowers_mos():
    rnd = estimate_mos(codec=CODECS["G711"], loss_percent=5, burst_ratio=1.0)
    bursty = estimate_mos(codec=CODECS["G711"], loss_percent=5, burst_ratio=3.0)
    assert bursty.r < rnd.r
    assert effective_equipment_impairment(0, 25.1, 5, 3.0) == pytest.approx(95 * 5 / (5 / 3 + 25.1))


def test_mos_polynomial_and_clamps():
    assert mos_from_r(-1) == 1.0 and mos_from_r(101) == 4.5
    assert mos_from_r(4.2) == pytest.approx(0.990, abs=1e-3)  # dips below 1 (baresip's vector)
    m = estimate_mos(codec=CODECS["G711-NOPLC"], loss_percent=60)
    assert m.value == 1.0 and m.unclamped < 1.5


def test_long_delay_lowers_r_by_at_least_idd():
    base = estimate_mos(codec=CODECS["G711"], loss_percent=0, one_way_delay_ms=0)
    slow = estimate_mos(codec=CODECS["G711"], loss_percent=0, one_way_delay_ms=300)
    assert base.r - slow.r >= delay_impairment_idd(300)
    assert not math.isnan(slow.r)


# ------------------------------------------------------------------ bursts


def test_burst_gap_density_by_hand():
    # R^20 L^1 R^20 L^2 R^3 L^1 R^30: an isolated loss (gap), then a burst L L R R R L
    ev = np.array([[20, 1], [20, 2], [3, 1]])
    m = burst_metrics(ev, 30)
    assert (m.burst_count, m.burst_lost, m.burst_packets) == (1, 3, 6)
    assert m.burst_density == pytest.approx(3 / 6)
    total = 20 + 1 + 20 + 2 + 3 + 1 + 30
    assert m.gap_packets == total - 6 and m.gap_lost == 1
