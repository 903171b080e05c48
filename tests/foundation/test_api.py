"""The admin API of a running daemon: auth, meetings CRUD, bad input, health, metrics, OpenAPI."""

from __future__ import annotations

import aiohttp
import pytest

from tests.daemon import Daemon, start_daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    d = start_daemon(tmp_path_factory.mktemp("api") / "var")
    yield d
    d.stop()


async def _req(daemon: Daemon, method: str, path: str, *, auth: bool = True, **kw):
    headers = {**(daemon.headers if auth else {}), **kw.pop("headers", {})}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, daemon.api + path, headers=headers, **kw) as r:
            body = await r.read()
            return r.status, body, r.headers


async def test_token_required(daemon: Daemon) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        status, body, _ = await _req(daemon, "GET", "/api/v1/meetings", auth=False, headers=headers)
        assert status == 401 and body == b""
    status, _, _ = await _req(daemon, "GET", "/metrics", auth=False)
    assert status == 401


async def test_health_and_ready_are_public(daemon: Daemon) -> None:
    assert (await _req(daemon, "GET", "/healthz", auth=False))[0] == 200
    status, body, _ = await _req(daemon, "GET", "/readyz", auth=False)
    assert status == 200 and b'"ready": true' in body


async def test_meetings_crud(daemon: Daemon) -> None:
    import json

    status, body, headers = await _req(daemon, "POST", "/api/v1/meetings",
                                       json={"digits": 13, "title": "Ops", "moderated": True,
                                             "moderator_passcode": "2468"})
    assert status == 201, body
    m = json.loads(body)
    assert len(m["meeting_id"]) == 13 and m["has_moderator_passcode"] and "2468" not in body.decode()
    assert headers["Location"].endswith(m["meeting_id"])
    mid = m["meeting_id"]
    status, body, _ = await _req(daemon, "PATCH", f"/api/v1/meetings/{mid}", json={"title": "Ops 2"})
    assert status == 200 and json.loads(body)["title"] == "Ops 2"
    status, body, _ = await _req(daemon, "PUT", f"/api/v1/meetings/{mid}/passcode",
                                 json={"moderator_passcode": None})
    assert status == 200 and not json.loads(body)["has_moderator_passcode"]
    status, body, _ = await _req(daemon, "GET", "/api/v1/meetings")
    assert mid in body.decode()
    status, body, _ = await _req(daemon, "POST", f"/api/v1/meetings/{mid}/reset-id")
    new_id = json.loads(body)["meeting_id"]
    assert status == 200 and new_id != mid
    assert (await _req(daemon, "DELETE", f"/api/v1/meetings/{new_id}"))[0] == 204
    assert (await _req(daemon, "GET", f"/api/v1/meetings/{new_id}"))[0] == 404


@pytest.mark.parametrize(
    ("kw", "status", "needle"),
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"json": {"digits": "ten"}}, 400, "digits must be int"),
        ({"json": {"moderated": "yes"}}, 400, "moderated must be bool"),
        ({"json": {"digits": 11}}, 400, "10 or 13"),
        ({"json": {"meeting_id": "1234567890"}}, 400, "trivial"),
        ({"json": {"moderator_passcode": "12"}}, 400, "4 to 8 digits"),
        ({"json": {"colour": "red"}}, 400, "unknown field"),
        ({"json": {"host_ids": [5]}}, 400, "host_ids"),
    ],
)
async def test_bad_input_is_a_clear_4xx(daemon: Daemon, kw: dict, status: int, needle: str) -> None:
    got, body, headers = await _req(daemon, "POST", "/api/v1/meetings", **kw)
    assert got == status and needle in body.decode(), body
    assert headers["Content-Type"].startswith("application/json")


async def test_duplicate_and_unknown(daemon: Daemon) -> None:
    assert (await _req(daemon, "POST", "/api/v1/meetings", json={"meeting_id": "4718203956"}))[0] == 201
    status, body, _ = await _req(daemon, "POST", "/api/v1/meetings", json={"meeting_id": "4718203956"})
    assert status == 409 and b"already in use" in body
    status, body, _ = await _req(daemon, "GET", "/api/v1/meetings/9182736450")
    assert status == 404 and b"no meeting" in body
    status, body, _ = await _req(daemon, "PATCH", "/api/v1/meetings/9182736450", json={"title": "x"})
    assert status == 404
    status, body, _ = await _req(daemon, "GET", "/api/v1/meetings?limit=abc")
    assert status == 400


async def test_metrics_use_the_old_names(daemon: Daemon) -> None:
    status, body, _ = await _req(daemon, "GET", "/metrics")
    text = body.decode()
    assert status == 200
    for name in ("InboundCallAttempts_total", "InboundCallsActive", "Throttles_total", "Sip2xxCodes_total",
                 "CustomerToVcJitter", "VcToCustomerRtpPackets_total", "MOSBetweenVcAndCustomer",
                 "RTTBetweenVcAndRemote"):
        assert f"\n{name} " in text or text.startswith(f"{name} ") or f"# TYPE {name.removesuffix('_total')}" in text, name


async def test_openapi_document(daemon: Daemon) -> None:
    import json

    status, body, _ = await _req(daemon, "GET", "/openapi.json")
    doc = json.loads(body)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/api/v1/meetings/{meeting_id}" in doc["paths"]
