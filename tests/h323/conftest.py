"""Fixture for the H.323 black-box tests: a real H323Service on a real MediaPlane."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.h323.service import H323Service, H323Settings
from gateway.rtp.plane import MediaPlane
from tests.h323.apps import RecordingApp, port_ranges


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[H323Service, RecordingApp, MediaPlane]]:
    h323_range, sip_range = port_ranges()
    plane = MediaPlane(
        sip_range=sip_range,
        h323_range=h323_range,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
    )
    await plane.start()
    app = RecordingApp(plane=plane)
    svc = H323Service(
        H323Settings(
            bind_host="127.0.0.1", advertise_host="127.0.0.1", port=0, h245_range=h323_range
        ),
        app,
        plane,
    )
    ports = await svc.start()
    svc.test_port = ports["h323"]  # type: ignore[attr-defined]
    try:
        yield svc, app, plane
    finally:
        await svc.close()
        await plane.close()
