"""The engine's feeding API: the three ways in agree, bad input is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.quality.engine import QualityEngine
from tests.quality.helpers import T0, rows

pytestmark = pytest.mark.usefixtures("engine_impl")  # native and NumPy loops alike


def _two_streams():
    a = rows(list(range(100, 160)), ssrc=11)
    b = rows(list(range(65500, 65560)), ssrc=22, arrival_ns=[T0 + 5 + i * 20_000_000 for i in range(60)])
    b = np.delete(b, [7, 8, 30])
    return a, b


def test_per_stream_mixed_and_grouped_feeds_agree():
    a, b = _two_streams()
    e1 = QualityEngine()
    e1.update_streams([(11, a[:30]), (22, b[:20]), (11, a[30:]), (22, b[20:])])
    mixed = np.concatenate([a, b])
    mixed = mixed[np.argsort(mixed["arrival_ns"], kind="stable")]
    e2 = QualityEngine()
    e2.update(mixed)  # keyed by SSRC
    e3 = QualityEngine()
    ids = np.array([e3.stream_id(11), e3.stream_id(22)])
    e3.update_grouped(ids, np.array([0, len(a), len(a) + len(b)]), np.concatenate([a, b]))
    for key in (11, 22):
        assert e1.summary(key) == e2.summary(key) == e3.summary(key)
    assert e1.summary(22).lost == 3


def test_bad_input_is_refused():
    eng = QualityEngine()
    with pytest.raises(TypeError):
        eng.update(np.zeros(3, [("seq", "<u2")]))
    eng.stream_id("x")
    r = rows([1, 2, 3])
    with pytest.raises(ValueError):
        eng.update(r, keys=np.array([0, 0, 5]))
    with pytest.raises(ValueError):
        eng.update(r, keys=np.array([0, 0]))
    with pytest.raises(ValueError):
        eng.update_grouped(np.array([0]), np.array([0, 2]), r)
    with pytest.raises(KeyError):
        eng.summary("never-seen")


def test_empty_batches_are_no_ops():
    eng = QualityEngine()
    eng.stream_id("k")
    eng.update(rows([]))
    eng.update_streams([("k", rows([]))])
    s = eng.summary("k")
    assert (s.packets, s.expected, s.mos) == (0, 0, None)


def test_rtt_feeds_the_mos_delay():
    eng = QualityEngine()
    eng.update(rows(list(range(200))))
    quick = eng.summary(1).mos
    eng.note_rtt(1, 800_000)  # 800 ms round trip: 400 ms one way
    slow = eng.summary(1)
    assert slow.rtt_us == 800_000
    assert slow.mos.r < quick.r - 20


def test_forget_bounds_state_and_a_reused_slot_starts_fresh() -> None:
    import numpy as np

    from gateway.quality.engine import QualityEngine
    from gateway.quality.records import PACKET_DTYPE

    def rows(n: int, seq0: int, ssrc: int) -> np.ndarray:
        r = np.zeros(n, PACKET_DTYPE)
        r["seq"] = (seq0 + np.arange(n)) % 65536
        r["ts"] = np.arange(n) * 160
        r["arrival_ns"] = np.arange(n) * 20_000_000
        r["ssrc"], r["pt"], r["size"] = ssrc, 0, 172
        return r

    eng = QualityEngine()
    for key in range(100):  # 100 calls come and go
        eng.stream_id(key, clock_rate=8000, encoding="PCMU")
        eng.update_streams([(key, rows(50, 1000 * key, key))])
        assert eng.summary(key).packets == 50
        eng.forget(key)
    assert eng.keys == ()
    assert len(eng._keys) == 1  # one slot, reused every time
    eng.stream_id("new", clock_rate=8000)
    eng.update_streams([("new", rows(10, 7, 9))])
    s = eng.summary("new")
    assert s.packets == 10 and s.lost == 0 and s.duplicates == 0
