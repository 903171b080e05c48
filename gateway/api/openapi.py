"""The admin API's OpenAPI 3.1 document, served at /openapi.json."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_MEETING = {"description": "a meeting", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Meeting"}}}}
_ID_PARAM = {"name": "meeting_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{10}([0-9]{3})?$"}}


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _op(summary: str, ok: dict[str, Any], *, body: str | None = None, path_id: bool = False,
        errors: tuple[int, ...] = (400, 401), ok_status: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok_status: ok, **{str(e): _ERROR for e in errors}}}
    if body:
        op["requestBody"] = _body(body)
    if path_id:
        op["parameters"] = [_ID_PARAM]
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "vtcgw admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Meeting": {
                "type": "object",
                "properties": {
                    "meeting_id": {"type": "string"}, "digits": {"type": "integer", "enum": [10, 13]},
                    "title": {"type": "string"}, "host": {"type": "string"}, "moderated": {"type": "boolean"},
                    "has_moderator_passcode": {"type": "boolean"},
                    "host_ids": {"type": "array", "items": {"type": "string"}}, "region": {"type": "string"},
                    "created_at": {"type": "number"}, "updated_at": {"type": "number"},
                },
            },
            "MeetingCreate": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "digits": {"type": "integer", "enum": [10, 13]},
                    "meeting_id": {"type": "string", "pattern": "^[1-9][0-9]{9}([0-9]{3})?$"},
                    "title": {"type": "string"}, "host": {"type": "string"}, "moderated": {"type": "boolean"},
                    "moderator_passcode": {"type": ["string", "null"], "pattern": "^[0-9]{4,8}$"},
                    "host_ids": {"type": "array", "items": {"type": "string", "pattern": "^[1-9][0-9]{12}$"}},
                    "region": {"type": "string"},
                },
            },
            "MeetingUpdate": {
                "type": "object", "additionalProperties": False,
                "properties": {"title": {"type": "string"}, "host": {"type": "string"},
                               "moderated": {"type": "boolean"}, "region": {"type": "string"},
                               "host_ids": {"type": "array", "items": {"type": "string"}}},
            },
            "Passcode": {"type": "object", "required": ["moderator_passcode"], "additionalProperties": False,
                         "properties": {"moderator_passcode": {"type": ["string", "null"], "pattern": "^[0-9]{4,8}$"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "readiness (503 while starting or draining)", "security": [],
                            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition"}}}},
        "/api/v1/meetings": {
            "get": _op("list meetings", {"description": "meetings"}),
            "post": _op("create a meeting", _MEETING, body="MeetingCreate", errors=(400, 401, 409), ok_status="201"),
        },
        "/api/v1/meetings/{meeting_id}": {
            "get": _op("one meeting", _MEETING, path_id=True, errors=(401, 404)),
            "patch": _op("change a meeting", _MEETING, body="MeetingUpdate", path_id=True, errors=(400, 401, 404, 409)),
            "delete": {**_op("delete a meeting", {"description": "deleted"}, path_id=True, errors=(401, 404), ok_status="204")},
        },
        "/api/v1/meetings/{meeting_id}/passcode": {
            "put": _op("set or clear the moderator passcode", _MEETING, body="Passcode", path_id=True, errors=(400, 401, 404)),
        },
        "/api/v1/meetings/{meeting_id}/reset-id": {
            "post": _op("give the meeting a new number", _MEETING, path_id=True, errors=(400, 401, 404, 409)),
        },
    },
}
