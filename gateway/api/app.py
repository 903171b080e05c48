"""Admin API (aiohttp): meetings CRUD, health, readiness, Prometheus metrics, OpenAPI.

Authentication: ``Authorization: Bearer <token>`` on everything except /healthz and
/readyz (load balancers probe those, and they reveal nothing). A wrong or missing
token gets 401 with an empty body and nothing else said.

Every error is JSON ``{"error": "..."}`` with a 4xx status that says what was wrong.
Store calls are sub-millisecond SQLite operations and run inline; passcode hashing
(scrypt, a few ms) runs in a worker thread so it never stalls the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api.openapi import OPENAPI
from gateway.meetings.ids import InvalidValue
from gateway.meetings.store import MeetingStore, StoreError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

STORE_KEY = web.AppKey("store", object)
METRICS_KEY = web.AppKey("metrics", object)
READY_KEY = web.AppKey("ready", object)
LIVE_KEY = web.AppKey("live", object)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            got = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                return web.Response(status=401)
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, str(exc))
        except InvalidValue as exc:
            return _error(400, str(exc))
        except StoreError as exc:
            return _error(exc.status, str(exc))

    return middleware


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length and request.content_length > 64 * 1024:
        raise ApiError(413, "body larger than 64 KiB")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "digits": (int,), "meeting_id": (str,), "title": (str,), "host": (str,), "moderated": (bool,),
    "moderator_passcode": (str, type(None)), "host_ids": (list,), "region": (str,),
}


def _fields(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    for key, value in body.items():
        types = _FIELD_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ApiError(400, f"{key} must be {names}")
    if "host_ids" in body:
        if not all(isinstance(h, str) for h in body["host_ids"]):
            raise ApiError(400, "host_ids must be a list of strings")
        body["host_ids"] = tuple(body["host_ids"])
    return body


def _store(request: web.Request) -> MeetingStore:
    return request.app[STORE_KEY]  # type: ignore[return-value]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[READY_KEY]()  # type: ignore[operator]
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].exposition()  # type: ignore[attr-defined]
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def list_meetings(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ApiError(400, "limit and offset must be whole numbers") from None
    if not (1 <= limit <= 1000 and offset >= 0):
        raise ApiError(400, "limit must be 1-1000 and offset >= 0")
    items = _store(request).list(limit=limit, offset=offset)
    return web.json_response({"meetings": [m.to_json() for m in items]})


async def create_meeting(request: web.Request) -> web.Response:
    body = _fields(await _json_body(request), set(_FIELD_TYPES))
    if "digits" in body and "meeting_id" in body:
        raise ApiError(400, "give digits or meeting_id, not both")
    store = _store(request)
    meeting = await asyncio.to_thread(store.create, **body)
    return web.json_response(meeting.to_json(), status=201,
                             headers={"Location": f"/api/v1/meetings/{meeting.meeting_id}"})


async def get_meeting(request: web.Request) -> web.Response:
    return web.json_response(_store(request).get(request.match_info["meeting_id"]).to_json())


async def update_meeting(request: web.Request) -> web.Response:
    body = _fields(await _json_body(request), {"title", "host", "moderated", "region", "host_ids"})
    meeting = _store(request).update(request.match_info["meeting_id"], **body)
    return web.json_response(meeting.to_json())


async def set_passcode(request: web.Request) -> web.Response:
    body = _fields(await _json_body(request), {"moderator_passcode"})
    if "moderator_passcode" not in body:
        raise ApiError(400, "moderator_passcode is required (null removes it)")
    store = _store(request)
    meeting = await asyncio.to_thread(store.set_passcode, request.match_info["meeting_id"],
                                      body["moderator_passcode"])
    return web.json_response(meeting.to_json())


async def reset_id(request: web.Request) -> web.Response:
    body = _fields(await _json_body(request), {"meeting_id"}) if request.can_read_body else {}
    meeting = _store(request).reset_id(request.match_info["meeting_id"], body.get("meeting_id"))
    return web.json_response(meeting.to_json())


async def delete_meeting(request: web.Request) -> web.Response:
    _store(request).delete(request.match_info["meeting_id"])
    return web.Response(status=204)


def build_app(*, token: str, store: MeetingStore, metrics_: Any, ready: Callable[[], bool],
              extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    app = web.Application(middlewares=[auth_middleware(token)], client_max_size=64 * 1024)
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics_
    app[READY_KEY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/api/v1/meetings", list_meetings)
    app.router.add_post("/api/v1/meetings", create_meeting)
    app.router.add_get("/api/v1/meetings/{meeting_id}", get_meeting)
    app.router.add_patch("/api/v1/meetings/{meeting_id}", update_meeting)
    app.router.add_delete("/api/v1/meetings/{meeting_id}", delete_meeting)
    app.router.add_put("/api/v1/meetings/{meeting_id}/passcode", set_passcode)
    app.router.add_post("/api/v1/meetings/{meeting_id}/reset-id", reset_id)
    if extra_routes is not None:
        extra_routes(app)
    return app
