"""The packet record the media hot path appends and the quality engine reads.

One row per received RTP packet; nothing else happens per packet. The engine
(`gateway.quality`) consumes contiguous batches of these rows.
"""

from __future__ import annotations

import numpy as np

PACKET_DTYPE = np.dtype(
    [
        ("arrival_ns", "<i8"),  # receive time, ns, monotonic or kernel (SO_TIMESTAMPNS) clock
        ("seq", "<u2"),
        ("ts", "<u4"),  # RTP timestamp
        ("ssrc", "<u4"),
        ("pt", "u1"),
        ("marker", "?"),
        ("size", "<u2"),  # UDP payload bytes
    ]
)


class PacketLog:
    """A preallocated, growable append buffer of PACKET_DTYPE rows for one stream."""

    __slots__ = ("_buf", "_n", "unordered")

    def __init__(self, capacity: int = 512) -> None:
        self._buf = np.zeros(capacity, dtype=PACKET_DTYPE)
        self._n = 0
        self.unordered = False  # set by a writer whose rows may not be in arrival order

    def reserve(self, count: int) -> np.ndarray:
        """Room for `count` more rows: a view a batch writer fills, then :meth:`commit`."""
        if self._n + count > len(self._buf):
            self._buf = np.resize(self._buf, max(2 * len(self._buf), self._n + count))
        return self._buf[self._n : self._n + count]

    def commit(self, count: int) -> None:
        """Keep the first `count` rows of the last :meth:`reserve`."""
        self._n += count

    def append(
        self, arrival_ns: int, seq: int, ts: int, ssrc: int, pt: int, marker: bool, size: int
    ) -> None:
        if self._n == len(self._buf):
            self._buf = np.resize(self._buf, 2 * len(self._buf))
        self._buf[self._n] = (arrival_ns, seq, ts, ssrc, pt, marker, size)
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def take(self) -> np.ndarray:
        """Return the rows so far (a copy) and empty the log."""
        out = self._buf[: self._n].copy()
        self._n = 0
        if self.unordered:
            self.unordered = False
            out = out[np.argsort(out["arrival_ns"], kind="stable")]
        return out
