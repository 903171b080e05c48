"""RFC 3550 A.1/A.3 by hand, and the vector engine against the literal port."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.quality import engine
from gateway.quality.engine import QualityEngine
from gateway.quality.records import PACKET_DTYPE
from tests.quality.helpers import T0, rows
from tests.quality.reference import RefSource

pytestmark = pytest.mark.usefixtures("engine_impl")  # native and NumPy loops alike


def run(seqs: list[int], split: int | None = None) -> QualityEngine:
    eng = QualityEngine()
    r = rows(seqs)
    if split is None:
        eng.update(r)
    else:
        eng.update(r[:split])
        eng.update(r[split:])
    return eng


def test_probation_packet_not_counted_and_base_is_second():
    s = run([10, 11, 12]).summary(1)
    assert (s.received, s.expected, s.lost, s.packets) == (2, 2, 0, 3)
    assert s.extended_max_seq == 12


def test_probation_restarts_on_non_sequential():
    # 10 -> probation 1; 20 is not 11 -> still on probation at 20; 21 ends it
    s = run([10, 20, 21, 22]).summary(1)
    assert (s.received, s.expected, s.lost) == (2, 2, 0)


def test_probation_compares_without_wrap():
    # the C code compares seq == max_seq + 1 in int: 65535 -> 0 does not end probation
    s = run([65535, 0, 1]).summary(1)
    assert (s.received, s.expected) == (1, 1)
    assert s.extended_max_seq == 1


def test_wrap_at_65535_counts_a_cycle():
    eng = run([65533, 65534, 65535, 0, 1])
    s = eng.summary(1)
    assert (s.received, s.expected, s.lost) == (4, 4, 0)
    assert s.extended_max_seq == 0x0001_0001
    assert eng.take_report_block(1).extended_highest_seq == 0x0001_0001


def test_wrap_across_a_batch_boundary():
    for split in range(1, 6):
        s = run([65533, 65534, 65535, 0, 1, 2], split).summary(1)
        assert (s.received, s.expected, s.extended_max_seq) == (5, 5, 0x0001_0002)


def test_duplicates_make_loss_negative():
    s = run([1, 2, 3, 3, 4, 4]).summary(1)
    assert (s.received, s.expected, s.lost, s.duplicates, s.reordered) == (5, 3, -2, 2, 0)
    assert s.fraction_lost == 0.0


def test_reordering_within_misorder_window_is_counted():
    s = run([1, 2, 3, 5, 4, 6]).summary(1)
    assert (s.received, s.expected, s.lost, s.reordered, s.duplicates) == (5, 5, 0, 1, 0)


def test_late_duplicate_of_a_reordered_packet():
    s = run([1, 2, 3, 5, 4, 4, 6]).summary(1)
    assert (s.reordered, s.duplicates, s.lost) == (1, 1, -1)


def test_loss_and_fraction_lost():
    eng = run([1, 2, 3, 6, 7])
    s = eng.summary(1)
    assert (s.received, s.expected, s.lost) == (4, 6, 2)
    rb = eng.take_report_block(1)
    assert rb.fraction_lost == (2 << 8) // 6 == 85
    assert rb.cumulative_lost == 2
    # next interval without loss: fraction 0, cumulative unchanged
    eng.update(rows([8, 9, 10]))
    rb2 = eng.take_report_block(1)
    assert (rb2.fraction_lost, rb2.cumulative_lost) == (0, 2)


def test_interval_with_duplicates_reports_zero_fraction():
    eng = run([1, 2, 3])
    eng.take_report_block(1)
    eng.update(rows([3, 3, 4]))
    assert eng.take_report_block(1).fraction_lost == 0


def test_restart_after_big_jump_confirmed_by_sequential_packet():
    s = run([1, 2, 3, 4, 10000, 10001, 10002]).summary(1)
    # 10000 is a big jump (not counted), 10001 == bad_seq -> init_seq, stats reset
    assert (s.received, s.expected, s.lost) == (2, 2, 0)
    assert s.extended_max_seq == 10002


def test_single_big_jump_is_ignored():
    s = run([1, 2, 3, 10000, 4]).summary(1)
    assert (s.received, s.expected, s.lost) == (3, 3, 0)


def test_too_late_packet_is_a_big_jump():
    seqs = list(range(1, 201)) + [50]
    s = run(seqs).summary(1)
    assert (s.received, s.expected) == (199, 199)


def test_loss_runs_and_burst_ratio():
    # two runs of 3 lost packets each
    seqs = [1, 2] + list(range(3, 30)) + list(range(33, 60)) + list(range(63, 90))
    s = run(seqs).summary(1)
    assert s.lost == 6
    # 82 packets counted (seq 1 was the probation packet), 6 lost in 2 runs:
    # p = runs/received = 2/82, q = runs/lost = 2/6 -> BurstR = 1/(p+q)
    assert s.received == 82
    assert abs(s.burst_ratio - 1 / (2 / 82 + 2 / 6)) < 1e-12
    assert s.bursts.burst_count == 2 and s.bursts.burst_lost == 6


def test_reading_has_no_side_effects():
    eng = run([1, 2, 3, 7, 8])
    assert eng.summary(1) == eng.summary(1)


# ---------------------------------------------------------------- property test

ops = st.lists(
    st.one_of(
        st.tuples(st.just("next"), st.integers(1, 1)),
        st.tuples(st.just("gap"), st.integers(2, 40)),
        st.tuples(st.just("dup"), st.integers(0, 0)),
        st.tuples(st.just("late"), st.integers(1, 120)),
        st.tuples(st.just("jump"), st.integers(2900, 65535)),
    ),
    min_size=1,
    max_size=120,
)


def seqs_from(ops_list, start: int) -> list[int]:
    out, s = [], start
    for op, k in ops_list:
        if op in ("next", "gap", "jump"):
            s += k
            out.append(s & 0xFFFF)
        elif op == "dup":
            out.append(s & 0xFFFF)
        else:
            out.append((s - k) & 0xFFFF)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(st.tuples(ops, st.integers(0, 65535)), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 500), max_size=4),
    jit=st.lists(st.integers(-3_000_000, 3_000_000), min_size=1, max_size=50),
    rate=st.sampled_from([8000, 16000, 48000, 90000]),
)
def test_engine_equals_literal_port(streams, cuts, jit, rate):
    check_against_reference(streams, cuts, jit, rate)


def _op(t: tuple[int, int, int, int]) -> tuple[str, int]:
    r, gap, late, jump = t
    if r < 85:
        return ("next", 1)
    if r < 90:
        return ("gap", gap)
    if r < 95:
        return ("late", late)
    if r < 98:
        return ("dup", 0)
    return ("jump", jump)


mostly_in_order = st.lists(
    st.tuples(st.integers(0, 99), st.integers(2, 40), st.integers(1, 120), st.integers(2900, 65535)).map(_op),
    min_size=1,
    max_size=400,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(st.tuples(mostly_in_order, st.integers(0, 65535)), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=5),
    jit=st.lists(st.integers(-3_000_000, 3_000_000), min_size=1, max_size=50),
)
def test_engine_equals_literal_port_on_realistic_streams(streams, cuts, jit):
    """Mostly in-order streams exercise the vector fast path with late packets."""
    check_against_reference(streams, cuts, jit, 8000)


def check_against_reference(streams, cuts, jit, rate):
    recs = []
    for k, (o, start) in enumerate(streams):
        for i, s in enumerate(seqs_from(o, start)):
            arr = T0 + i * 20_000_000 + jit[(i + k) % len(jit)] + k
            recs.append((arr, s, (i * 160 * 7 + 0xFFFFF000) & 0xFFFFFFFF, 100 + k, 96, False, 60 + i % 7))
    recs.sort(key=lambda r: r[0])
    batch = np.array(recs, dtype=PACKET_DTYPE)
    eng = QualityEngine()
    refs = {}
    for k in range(len(streams)):
        eng.stream_id(100 + k, clock_rate=rate)
        refs[100 + k] = RefSource(rate)
    bounds = sorted({0, len(batch), *(c % (len(batch) + 1) for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        eng.update(batch[a:b])
    for r in recs:
        refs[r[3]].packet(r[0], r[1], r[2], r[6])
    for key, ref in refs.items():
        s = eng.summary(key)
        assert (s.received, s.expected, s.lost) == (ref.received, ref.expected, ref.lost)
        assert (s.duplicates, s.reordered, s.packets, s.bytes) == (
            ref.duplicates, ref.reordered, ref.packets, ref.bytes,
        )  # fmt: skip
        assert s.extended_max_seq == (ref.cycles + ref.max_seq if ref.established else s.extended_max_seq)
        assert np.isclose(s.jitter, ref.jitter, rtol=1e-9, atol=1e-9)
        assert np.isclose(s.max_jitter_ms * rate / 1000, ref.jit_max, rtol=1e-9, atol=1e-9)
        if ref.jit_n:
            assert np.isclose(s.mean_jitter_ms * rate / 1000, ref.jit_sum / ref.jit_n, rtol=1e-9)
        assert s.max_delta_ms == ref.max_delta_ns / 1e6
        if engine._rtp_stats is not None:  # the C loop is the literal recurrence: bit-exact
            sid = eng.stream_id(key)
            assert (eng._jt.jit[sid], eng._jt.jit_max[sid]) == (ref.jitter, ref.jit_max)
            assert (eng._jt.jit_sum[sid], eng._jt.jit_n[sid]) == (ref.jit_sum, ref.jit_n)
        rb = eng.take_report_block(key)
        assert rb.fraction_lost == ref.take_fraction()
        assert rb.jitter == int(ref.jitter)
        ev = np.array(ref.events, np.int64).reshape(-1, 2)
        got = eng._seq.run_events[eng.stream_id(key)]
        got_ev = np.concatenate(got) if got else np.zeros((0, 2), np.int64)
        assert np.array_equal(got_ev, ev)


def test_uneven_batch_uses_segment_correction_and_still_matches():
    # one long stream and many two-packet streams: the engine filters the whole
    # batch in one lfilter run and corrects each segment (no zero padding)
    rng = np.random.default_rng(7)
    recs = []
    for i in range(9000):
        recs.append(
            (
                T0 + i * 20_000_000 + int(rng.integers(0, 4_000_000)),
                (i + 5) & 0xFFFF,
                i * 160,
                1,
                0,
                False,
                172,
            )
        )
    for k in range(2, 60):
        for i in range(2):
            recs.append(
                (
                    T0 + k * 1000 + i * 20_000_000 + int(rng.integers(0, 9_000_000)),
                    i,
                    i * 160,
                    k,
                    0,
                    False,
                    172,
                )
            )
    batch = np.array(sorted(recs), dtype=PACKET_DTYPE)
    eng = QualityEngine()
    half = len(batch) // 2
    eng.update(batch[:half])
    eng.update(batch[half:])
    for k in (1, 2, 30, 59):
        ref = RefSource(8000)
        for r in batch[batch["ssrc"] == k]:
            ref.packet(int(r["arrival_ns"]), int(r["seq"]), int(r["ts"]))
        s = eng.summary(k)
        assert np.isclose(s.jitter, ref.jitter, rtol=1e-9, atol=1e-9)
        assert np.isclose(s.max_jitter_ms * 8, ref.jit_max, rtol=1e-9)
        assert (s.received, s.lost) == (ref.received, ref.lost)


def test_oversized_batches_are_split_exactly(monkeypatch):
    import gateway.quality.engine as engine_mod

    monkeypatch.setattr(engine_mod, "_MAX_BATCH", 64)
    rng = np.random.default_rng(11)
    recs = []
    for k in (1, 2, 3):
        for i in range(300 if k == 1 else 40):
            if rng.random() < 0.05:
                continue
            arr = T0 + i * 20_000_000 + int(rng.integers(0, 6_000_000)) + k
            recs.append((arr, (i * 1 + 65400) & 0xFFFF, i * 160, k, 0, False, 100))
    batch = np.array(sorted(recs), dtype=PACKET_DTYPE)
    eng = QualityEngine()
    eng.update(batch)  # three streams, 380 rows: split by streams, then by rows
    for k in (1, 2, 3):
        ref = RefSource(8000)
        for r in batch[batch["ssrc"] == k]:
            ref.packet(int(r["arrival_ns"]), int(r["seq"]), int(r["ts"]), int(r["size"]))
        s = eng.summary(k)
        assert (s.received, s.lost, s.bytes) == (ref.received, ref.lost, ref.bytes)
        assert np.isclose(s.jitter, ref.jitter, rtol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.integers(0, (1 << 128) - 1), min_size=1, max_size=8),
    shifts=st.lists(st.integers(0, 300), min_size=8, max_size=8),
    bits=st.lists(st.integers(-5, 140), min_size=8, max_size=8),
)
def test_history_bitmap_words_equal_python_ints(words, shifts, bits):
    from gateway.quality.sequence import _hist_bits, _hist_shift, _hist_test

    n = len(words)
    arr = np.array([[w & (2**64 - 1), w >> 64] for w in words], np.uint64)
    g = np.array(shifts[:n], np.int64)
    got = _hist_shift(arr, g)
    for i, w in enumerate(words):
        want = (w << shifts[i]) & ((1 << 128) - 1)
        assert int(got[i, 0]) | (int(got[i, 1]) << 64) == want
    b = np.array([bits[:n]] * n, np.int64)
    mask = np.ones_like(b, bool)
    mask[:, 0] = False
    hb = _hist_bits(b, mask)
    want_bits = sum(1 << x for x in set(bits[1:n]) if 0 <= x < 128)
    for i in range(n):
        assert int(hb[i, 0]) | (int(hb[i, 1]) << 64) == want_bits
    probe = np.array([x % 128 for x in bits[:n]], np.int64)
    for i, w in enumerate(words):
        assert bool(_hist_test(arr[i : i + 1], probe[i : i + 1])[0]) == bool((w >> int(probe[i])) & 1)
