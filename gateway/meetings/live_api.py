"""Admin API routes for live meetings, participants, keypad actions and recordings.

Every keypad action a moderator has is also an HTTP action here (mute, mute all,
lock, unlock, end, record) plus kick. Unknown meetings or calls answer 404.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.meetings.keypad import Command
from gateway.meetings.recording import content_type, list_recordings
from gateway.rtp.types import MediaKind

if TYPE_CHECKING:
    from gateway.meetings.application import MeetingsApplication

_SAFE_NAME = re.compile(r"^[0-9A-Za-z_.-]+$")


def add_live_routes(app: web.Application, meetings: MeetingsApplication) -> None:
    ctl = meetings.control

    def participant_json(call_id: str) -> dict[str, Any]:
        p = ctl.participants[call_id]
        live = meetings.calls.get(call_id)
        audio = live.leg(MediaKind.AUDIO) if live else None
        codec = None
        if audio is not None and audio.config is not None and audio.config.codecs:
            codec = audio.config.codecs[0].name
        quality = None
        if audio is not None:
            try:
                quality = _jsonable(audio.stats())
            except Exception:
                quality = None
        return {
            "call_id": call_id, "state": p.state.value, "moderator": p.moderator, "muted": p.muted,
            "protocol": live.call.protocol.value if live else None,
            "transport": live.call.transport.value if live else None,
            "from": live.call.from_uri if live else None, "codec": codec,
            "video": bool(live and live.leg(MediaKind.VIDEO)), "quality": quality,
        }

    def room_json(mid: str) -> dict[str, Any]:
        room = ctl.rooms[mid]
        return {"meeting_id": mid, "started": room.started, "locked": room.locked,
                "recording": room.recording, "moderated": room.moderated,
                "participants": [participant_json(c) for c in sorted(room.members) if c in ctl.participants]}

    def room_or_404(request: web.Request) -> str:
        mid = request.match_info["meeting_id"]
        if mid not in ctl.rooms:
            raise web.HTTPNotFound(text='{"error": "no live meeting with that ID"}',
                                   content_type="application/json")
        return mid

    def call_or_404(request: web.Request) -> str:
        cid = request.match_info["call_id"]
        if cid not in ctl.participants:
            raise web.HTTPNotFound(text='{"error": "no live call with that ID"}',
                                   content_type="application/json")
        return cid

    async def list_live(request: web.Request) -> web.Response:
        return web.json_response({"meetings": [room_json(m) for m in sorted(ctl.rooms)],
                                  "calls": len(meetings.calls)})

    async def get_live(request: web.Request) -> web.Response:
        return web.json_response(room_json(room_or_404(request)))

    def room_action(cmd: Command | None, *, lock: bool | None = None, record: bool | None = None):
        async def handler(request: web.Request) -> web.Response:
            mid = room_or_404(request)
            now = time.monotonic()
            if lock is not None:
                acts = ctl.api_lock(mid, lock, now)
            elif record is not None:
                room = ctl.rooms[mid]
                acts = [] if room.recording == record else ctl.api_room(mid, Command.RECORD, now)
            else:
                assert cmd is not None
                acts = ctl.api_room(mid, cmd, now)
            meetings._run(acts)
            return web.json_response(room_json(mid) if mid in ctl.rooms else {"meeting_id": mid, "ended": True})
        return handler

    def call_action(kind: str):
        async def handler(request: web.Request) -> web.Response:
            cid = call_or_404(request)
            if kind == "kick":
                meetings._run(ctl.api_kick(cid, time.monotonic()))
                return web.json_response({"call_id": cid, "removed": True})
            meetings._run(ctl.api_mute(cid, kind == "mute"))
            return web.json_response(participant_json(cid))
        return handler

    async def recordings(request: web.Request) -> web.Response:
        return web.json_response({"recordings": list_recordings(meetings.config.path("recordings_dir"))})

    async def recording_file(request: web.Request) -> web.StreamResponse:
        mid, name = request.match_info["meeting_id"], request.match_info["name"]
        if not (_SAFE_NAME.match(mid) and _SAFE_NAME.match(name)) or ".." in name \
                or content_type(name) == "application/octet-stream":
            raise web.HTTPBadRequest(text='{"error": "bad recording name"}', content_type="application/json")
        path = meetings.config.path("recordings_dir") / mid / name
        if not path.is_file():
            raise web.HTTPNotFound(text='{"error": "no such recording"}', content_type="application/json")
        return web.FileResponse(path, headers={"Content-Type": content_type(name)})

    r = app.router
    r.add_get("/api/v1/live/meetings", list_live)
    r.add_get("/api/v1/live/meetings/{meeting_id}", get_live)
    r.add_post("/api/v1/live/meetings/{meeting_id}/mute-all", room_action(Command.MUTE_ALL))
    r.add_post("/api/v1/live/meetings/{meeting_id}/lock", room_action(None, lock=True))
    r.add_post("/api/v1/live/meetings/{meeting_id}/unlock", room_action(None, lock=False))
    r.add_post("/api/v1/live/meetings/{meeting_id}/end", room_action(Command.END))
    r.add_post("/api/v1/live/meetings/{meeting_id}/recording/start", room_action(None, record=True))
    r.add_post("/api/v1/live/meetings/{meeting_id}/recording/stop", room_action(None, record=False))
    r.add_post("/api/v1/live/calls/{call_id}/mute", call_action("mute"))
    r.add_post("/api/v1/live/calls/{call_id}/unmute", call_action("unmute"))
    r.add_post("/api/v1/live/calls/{call_id}/kick", call_action("kick"))
    r.add_get("/api/v1/recordings", recordings)
    r.add_get("/api/v1/recordings/{meeting_id}/{name}", recording_file)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
