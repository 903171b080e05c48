"""Call detail records: one JSON document per call leg (SPEC.md schema and layout).

Path: ``<root>/json/<account>/<yyyy>/<mm>/<dd>/<conferenceId>_<yyyymmdd>-<hhmmss>-<cdrId>``
(UTC, from the leg's start). Written atomically: a temporary file in the same
folder, fsync, rename, fsync of the folder, so a crash leaves either the whole
record or none. The conference PIN is masked; passcodes never appear.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.logs import mask_meeting_id

SCHEMA_VERSION = "2.0"
SERVICE_CODE = "VideoGatewayDialIn"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    account: str  # the node's region/account tag
    conference_id: str | None  # meeting ID, None if the call never reached a meeting
    organizer: str
    caller_uri: str
    called_uri: str
    protocol: str
    transport: str
    start_s: float  # wall clock, epoch seconds
    answer_s: float | None
    end_s: float
    conference_start_s: float | None
    conference_end_s: float | None
    end_reason: str
    moderator: bool
    quality: dict[str, Any] = field(default_factory=dict)
    cdr_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def document(self) -> dict[str, Any]:
        billable = max(0.0, self.end_s - self.answer_s) if self.answer_s is not None else 0.0
        billable = billable if self.conference_id else 0.0  # only time in a meeting is billable
        return {
            "SchemaVersion": SCHEMA_VERSION,
            "CdrId": self.cdr_id,
            "ServiceCode": SERVICE_CODE,
            "AccountId": self.account,
            "ConferenceId": self.conference_id,
            "ConferencePin": mask_meeting_id(self.conference_id),
            "OrganizerUserId": self.organizer,
            "CallerUri": self.caller_uri,
            "DestinationUri": self.called_uri,
            "ConferenceStartTimeEpochSeconds": _int(self.conference_start_s),
            "ConferenceEndTimeEpochSeconds": _int(self.conference_end_s),
            "StartTimeEpochSeconds": _int(self.start_s),
            "EndTimeEpochSeconds": _int(self.end_s),
            "BillableDurationSeconds": int(round(billable)),
            "BillableDurationMinutes": int(math.ceil(billable / 60.0)),
            "Direction": "Inbound",
            "Protocol": self.protocol,
            "Transport": self.transport,
            "Moderator": self.moderator,
            "EndReason": self.end_reason,
            "Quality": self.quality,
        }

    def relative_path(self) -> Path:
        t = time.gmtime(self.start_s)
        conf = self.conference_id or "none"
        name = f"{conf}_{time.strftime('%Y%m%d', t)}-{time.strftime('%H%M%S', t)}-{self.cdr_id}"
        return Path("json", self.account, time.strftime("%Y", t), time.strftime("%m", t),
                    time.strftime("%d", t), name)


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_cdr(root: Path, record: CallRecord) -> Path:
    path = root / record.relative_path()
    write_atomically(path, json.dumps(record.document(), indent=1).encode())
    return path
