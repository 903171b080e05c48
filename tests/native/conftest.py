"""Fixtures for the batched-UDP tests: both implementations, sockets closed afterwards."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest

from gateway.rtp import udpbatch
from gateway.rtp.udpbatch import Implementation


def native_or_fail() -> Implementation:
    impl = udpbatch.IMPLEMENTATIONS.get("native")
    if impl is None:
        if os.environ.get("VTCGW_ALLOW_NO_NATIVE"):
            pytest.skip("gateway._udpbatch is not built and VTCGW_ALLOW_NO_NATIVE is set")
        pytest.fail(
            "gateway._udpbatch is not built: run `pip install -e .` with a C compiler "
            "(or set VTCGW_ALLOW_NO_NATIVE=1 on a machine without one)"
        )
    return impl


@pytest.fixture(params=["native", "python"])
def impl(request: pytest.FixtureRequest) -> Implementation:
    if request.param == "native":
        return native_or_fail()
    return udpbatch.IMPLEMENTATIONS["python"]


@pytest.fixture
def udp() -> Iterator[Callable[..., socket.socket]]:
    """Factory of bound loopback UDP sockets, all closed at teardown."""
    made: list[socket.socket] = []

    def make(family: int = socket.AF_INET) -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        made.append(s)
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        s.setblocking(False)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()
