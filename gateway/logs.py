"""structlog set-up: JSON lines in production, readable console on a terminal.

Secrets never reach a log line: a processor masks every value whose key names a
passcode or keyed digits, and meeting IDs are logged only through
:func:`mask_meeting_id` (last four digits kept, so an operator can still tell
meetings apart). Call context (call_id, meeting_id, peer) is bound once with
``structlog.contextvars`` where a call's task starts.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

SECRET_KEYS = frozenset({"passcode", "moderator_passcode", "pin", "digits", "password", "token", "api_token"})
_PASSCODE_IN_URI = re.compile(r"(?<=\d{10})\.\d{4,8}(?=@|$|;|>)|(?<=\d{13})\.\d{4,8}(?=@|$|;|>)")


def mask_meeting_id(meeting_id: str | None) -> str | None:
    if not meeting_id:
        return meeting_id
    keep = 4 if len(meeting_id) > 6 else 0
    return "*" * (len(meeting_id) - keep) + meeting_id[len(meeting_id) - keep:]


def mask_dial_string(text: str) -> str:
    """Remove an ``ID.passcode`` passcode from a URI or SIP message."""
    return _PASSCODE_IN_URI.sub(".****", text)


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key in SECRET_KEYS and event[key] is not None:
            event[key] = "[masked]"
        elif key == "meeting_id" and isinstance(event[key], str):
            event[key] = mask_meeting_id(event[key])
    return event


def configure(*, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
