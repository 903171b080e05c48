"""The load generator's timer wheel, driven by a fake clock."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.load.timer_wheel import TimerWheel

MS = 1_000_000


def test_fires_in_due_order_and_never_early():
    w = TimerWheel(tick_ns=MS, n_slots=8)
    w.schedule(np.array([1, 2, 3]), np.array([5 * MS + 10, 2 * MS, 5 * MS]))
    assert w.next_due_ns() == 2 * MS
    ids, due = w.advance(2 * MS - 1)
    assert len(ids) == 0
    ids, _ = w.advance(2 * MS)
    assert ids.tolist() == [2]
    ids, _ = w.advance(5 * MS + 5)  # 3 is due, 1 is 5 ns later in the same tick
    assert ids.tolist() == [3]
    ids, _ = w.advance(5 * MS + 10)
    assert ids.tolist() == [1]
    assert len(w) == 0 and w.next_due_ns() is None


def test_entries_beyond_one_revolution_wait_for_their_turn():
    w = TimerWheel(tick_ns=MS, n_slots=4)
    w.schedule(np.array([7]), np.array([10 * MS]))
    for t in range(10):
        assert len(w.advance(t * MS)[0]) == 0
    assert w.advance(10 * MS)[0].tolist() == [7]


def test_a_long_gap_fires_everything_overdue_once():
    w = TimerWheel(tick_ns=MS, n_slots=4)
    w.schedule(np.arange(10), np.arange(10) * MS)
    ids, due = w.advance(100 * MS)
    assert sorted(ids.tolist()) == list(range(10))
    assert (np.diff(due) >= 0).all()
    assert len(w.advance(200 * MS)[0]) == 0


def test_past_due_schedule_fires_next_advance_and_cancel_drops():
    w = TimerWheel(tick_ns=MS, n_slots=8)
    w.advance(50 * MS)
    w.schedule(np.array([1, 2]), np.array([3 * MS, 60 * MS]))
    assert w.advance(50 * MS)[0].tolist() == [1]
    assert w.cancel(np.array([2])) == 1
    assert len(w.advance(70 * MS)[0]) == 0 and len(w) == 0


@given(
    dues=st.lists(st.integers(0, 300 * MS), min_size=1, max_size=60),
    late=st.lists(st.integers(0, 300 * MS), max_size=10),
    steps=st.lists(st.integers(1, 40 * MS), min_size=1, max_size=40),
    slots=st.integers(1, 16),
)
@settings(max_examples=200, deadline=None)
def test_every_entry_fires_exactly_once_never_early(dues, late, steps, slots):
    """Entries fire at the first advance at or after their due time (or, when they were
    scheduled already overdue, at the next advance), exactly once; next_due_ns is exact."""
    w = TimerWheel(tick_ns=MS, n_slots=slots)
    w.schedule(np.arange(len(dues)), np.array(dues))
    all_dues = list(dues)
    added_at = [0] * len(dues)  # the clock when each entry was scheduled
    fired: dict[int, int] = {}
    now = 0
    for n, step in enumerate([*steps, 400 * MS]):
        pending = [d for i, d in enumerate(all_dues) if i not in fired]
        assert w.next_due_ns() == (min(pending) if pending else None)
        now += step
        ids, due = w.advance(now)
        for i, d in zip(ids.tolist(), due.tolist(), strict=True):
            assert i not in fired and d <= now and all_dues[i] == d
            fired[i] = now
        if n == 0 and late:  # some entries arrive mid-run, possibly already overdue
            base = len(all_dues)
            w.schedule(np.arange(base, base + len(late)), np.array(late))
            all_dues += late
            added_at += [now] * len(late)
    assert sorted(fired) == list(range(len(all_dues)))
    times = [0]
    for step in [*steps, 400 * MS]:
        times.append(times[-1] + step)
    for i, when in fired.items():
        assert when == min(t for t in times[1:] if t >= max(all_dues[i], added_at[i] + 1))
