"""native/rtpstats.c at its edges: bad arguments, odd buffers, streams split over calls."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.quality import engine
from gateway.quality.engine import QualityEngine
from tests.quality.helpers import T0, rows

pytestmark = pytest.mark.usefixtures("engine_impl")


def _native():
    fn = engine.IMPLEMENTATIONS.get("native")
    if fn is None:
        pytest.skip("gateway._udpbatch is not built")
    return fn


def _state(eng: QualityEngine) -> list[np.ndarray]:
    return [a.copy() for a in (*eng._seq.state_arrays(), *eng._jt.state_arrays())]


def test_bad_arguments_raise_and_leave_the_state_alone():
    rtp_stats = _native()
    eng = QualityEngine()
    sid = eng.stream_id("a")
    eng.update_streams([("a", rows([1, 2, 3]))])
    before = _state(eng)
    good = [rows([4, 5])]
    sids = np.array([sid], np.int64)
    ev = np.empty((2, 3), np.int64)
    seq, jit = eng._seq.state_arrays(), eng._jt.state_arrays()
    table = engine._RATE_TABLE
    with pytest.raises(TypeError):  # not PACKET_DTYPE rows
        rtp_stats([np.zeros(2, np.int64)], sids, seq, jit, ev, table)
    with pytest.raises(TypeError):  # a strided view
        rtp_stats([rows([4, 5, 6, 7])[::2]], sids, seq, jit, ev, table)
    with pytest.raises(ValueError):  # a stream id past the state arrays
        rtp_stats(good, np.array([10_000], np.int64), seq, jit, ev, table)
    with pytest.raises(ValueError):  # one id per part
        rtp_stats(good, np.array([sid, sid], np.int64), seq, jit, ev, table)
    with pytest.raises(ValueError):  # room for one event per row
        rtp_stats(good, sids, seq, jit, np.empty((1, 3), np.int64), table)
    with pytest.raises(TypeError):  # the state in the wrong order
        rtp_stats(good, sids, seq[::-1], jit, ev, table)
    with pytest.raises(ValueError):
        rtp_stats(good, sids, seq, jit, ev, table[:10])
    for a, b in zip(before, _state(eng), strict=True):
        assert np.array_equal(a, b)


def test_strided_and_foreign_rows_are_converted_not_misread():
    whole = rows(list(range(100, 140)))
    strided = np.zeros(80, whole.dtype)
    strided[::2] = whole
    a, b = QualityEngine(), QualityEngine()
    a.update_streams([(1, whole)])
    b.update_streams([(1, strided[::2])])
    assert a.summary(1) == b.summary(1)


def test_a_stream_twice_in_one_batch_is_taken_in_order():
    r = rows(list(range(1, 61)), arrival_ns=[T0 + i * 19_000_000 for i in range(60)])
    r = np.delete(r, [10, 11, 40])
    one, two = QualityEngine(), QualityEngine()
    one.update_streams([("s", r)])
    two.update_streams([("s", r[:25]), ("s", r[25:])])
    assert one.summary("s") == two.summary("s")
    assert one.summary("s").lost == 3
