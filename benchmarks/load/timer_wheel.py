"""A hashed timer wheel over integer ids, vectorized, with the clock passed in.

The load generator's media schedule: thousands of calls each due every 20 ms.
Entries are (id, due_ns) pairs kept in the slot of their due tick; `advance(now)`
visits each slot the clock passed since the last call, returns the ids that are
due (in due order) and keeps entries due in a later revolution of the wheel.
Nothing here reads a clock, so every schedule is testable with a fake one.
"""

from __future__ import annotations

import numpy as np


class TimerWheel:
    """Ids scheduled at nanosecond due times, resolved to `tick_ns` ticks."""

    __slots__ = ("tick_ns", "n_slots", "_ids", "_due", "_tick", "_count")

    def __init__(self, *, tick_ns: int = 1_000_000, n_slots: int = 64, start_ns: int = 0) -> None:
        if tick_ns <= 0 or n_slots <= 0:
            raise ValueError("tick_ns and n_slots must be positive")
        self.tick_ns = tick_ns
        self.n_slots = n_slots
        # per slot: chunks of ids and their due times, appended by schedule()
        self._ids: list[list[np.ndarray]] = [[] for _ in range(n_slots)]
        self._due: list[list[np.ndarray]] = [[] for _ in range(n_slots)]
        self._tick = start_ns // tick_ns  # the first tick whose slot may still hold due entries
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def schedule(self, ids: np.ndarray, due_ns: np.ndarray) -> None:
        """Add entries; a due time already past fires at the next `advance`."""
        ids = np.asarray(ids, np.int64).ravel()
        due = np.broadcast_to(np.asarray(due_ns, np.int64), ids.shape)
        if len(ids) == 0:
            return
        ticks = np.maximum(due // self.tick_ns, self._tick)
        slots = ticks % self.n_slots
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        cut = np.flatnonzero(np.diff(s_sorted)) + 1
        for part in np.split(order, cut):
            slot = int(slots[part[0]])
            self._ids[slot].append(ids[part])
            self._due[slot].append(due[part].copy())
        self._count += len(ids)

    def next_due_ns(self) -> int | None:
        """The earliest due time held (None when empty): when to wake up next.

        Slots are scanned in tick order from the current one; an entry due within
        its slot's tick of this revolution is the earliest, so the scan usually
        stops at the first non-empty slot.
        """
        best: int | None = None
        for k in range(self.n_slots):
            tick = self._tick + k
            chunks = self._due[tick % self.n_slots]
            if not chunks:
                continue
            m = min(int(d.min()) for d in chunks)
            if m < (tick + 1) * self.tick_ns:
                return m if best is None else min(best, m)
            best = m if best is None else min(best, m)
        return best

    def advance(self, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, due_ns) of every entry due at or before now_ns, sorted by due time."""
        last = now_ns // self.tick_ns
        if last < self._tick:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        out_ids: list[np.ndarray] = []
        out_due: list[np.ndarray] = []
        # visiting more than one revolution would see each slot twice: cap it
        first = max(self._tick, last - self.n_slots + 1)
        for tick in range(first, last + 1):
            slot = tick % self.n_slots
            if not self._ids[slot]:
                continue
            ids = np.concatenate(self._ids[slot])
            due = np.concatenate(self._due[slot])
            fire = due <= now_ns
            out_ids.append(ids[fire])
            out_due.append(due[fire])
            keep = ~fire
            self._ids[slot] = [ids[keep]] if keep.any() else []
            self._due[slot] = [due[keep]] if keep.any() else []
        # The current tick stays open: entries due later within it fire next time.
        self._tick = last
        if not out_ids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ids = np.concatenate(out_ids)
        due = np.concatenate(out_due)
        self._count -= len(ids)
        order = np.argsort(due, kind="stable")
        return ids[order], due[order]

    def cancel(self, ids: np.ndarray) -> int:
        """Drop every entry of these ids; returns how many were dropped."""
        drop = np.asarray(ids, np.int64)
        n = 0
        for slot in range(self.n_slots):
            if not self._ids[slot]:
                continue
            cur = np.concatenate(self._ids[slot])
            due = np.concatenate(self._due[slot])
            keep = ~np.isin(cur, drop)
            n += int((~keep).sum())
            self._ids[slot] = [cur[keep]] if keep.any() else []
            self._due[slot] = [due[keep]] if keep.any() else []
        self._count -= n
        return n
