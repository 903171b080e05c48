"""Run the engine tests against both implementations of the per-stream loop."""

from __future__ import annotations

import os

import pytest

from gateway.quality import engine


@pytest.fixture(params=["native", "numpy"])
def engine_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C loop (native/rtpstats.c) or the vectorized NumPy path, for this test."""
    name = request.param
    if name not in engine.IMPLEMENTATIONS:
        if os.environ.get("VTCGW_ALLOW_NO_NATIVE") or os.environ.get("VTCGW_NO_NATIVE"):
            pytest.skip("gateway._udpbatch is not built (or VTCGW_NO_NATIVE is set)")
        pytest.fail("gateway._udpbatch is not built: run `pip install -e .` with a C compiler")
    monkeypatch.setattr(engine, "_rtp_stats", engine.IMPLEMENTATIONS[name])
    return name
