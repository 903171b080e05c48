"""Call detail records: one JSON document per call leg (SPEC.md schema and layout).

Path: ``<root>/json/<account>/<yyyy>/<mm>/<dd>/<conferenceId>_<yyyymmdd>-<hhmmss>-<cdrId>``
(UTC, from the leg's start). Written atomically: a temporary file in the same
folder, flushed to disk, renamed, the rename flushed, so a crash leaves either the whole
record or none. :class:`CdrWriter` does that for many records at once (group commit: one
``syncfs`` for the data of every record in a batch, one for the renames) on its own thread;
:func:`write_cdr` is the one-record form (fsync of the file and of its folder). The
conference PIN is masked; passcodes never appear.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import math
import os
import queue
import tempfile
import threading
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


def encode_cdr(record: CallRecord) -> bytes:
    """A CDR file's bytes: one compact JSON document and a newline (the C encoder; an
    indented document goes through json's pure-Python one, several times the cost)."""
    return json.dumps(record.document(), separators=(",", ":")).encode() + b"\n"


def write_cdr(root: Path, record: CallRecord) -> Path:
    path = root / record.relative_path()
    write_atomically(path, encode_cdr(record))
    return path


def _syncfs() -> object | None:
    """libc syncfs(2) (Linux): one call makes a whole filesystem's dirty data and metadata
    durable. None where there is none; the writer then fsyncs file by file."""
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


class CdrWriter:
    """Writes CDRs on one thread in group commits.

    Each record still lands atomically in its own file (SPEC.md layout): the records queued
    arriving within ``gather_s`` of the first (up to ``max_batch``) are written to temporary
    files, made durable with one ``syncfs``, renamed into place, and the renames made durable
    with a second one. Measured on this project's ext4 test machine: 0.18 ms of CPU per record
    in batches of 30 against 0.71 ms with an fsync of each file and folder, and a fifth of the
    disk waits. Without the gather window a steady 150 calls/s made batches of one record
    (two syncfs per call); with 50 ms a record is durable at most that much later.
    ``submit`` returns a future that is done when the record is durable (its path), or holds
    the error; ``close`` writes what is queued and stops the thread.
    """

    def __init__(self, root: Path, *, max_batch: int = 256, gather_s: float = 0.05) -> None:
        self.root = root
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.commits = 0  # group commits made (batches with at least one record staged)
        self._q: queue.SimpleQueue[tuple[CallRecord, concurrent.futures.Future[Path]] | None] = queue.SimpleQueue()
        self._syncfs = _syncfs()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name="cdr-writer", daemon=True)
        self._thread.start()

    def submit(self, record: CallRecord) -> concurrent.futures.Future[Path]:
        fut: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self._q.put((record, fut))
        return fut

    def close(self, timeout: float | None = None) -> None:
        self._q.put(None)
        self._closing.set()  # no more gathering: write what is queued now
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._q.get()
            batch = []
            stop = item is None
            if item is not None:
                batch.append(item)
            if not stop and self.gather_s > 0:
                # wait out the window on the close event, not on the queue: a submit while
                # nobody blocks on the queue wakes no thread (each wake-up had the loop
                # thread hand over the GIL, per record)
                self._closing.wait(self.gather_s)
            while not stop and len(batch) < self.max_batch:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[CallRecord, concurrent.futures.Future[Path]]]) -> None:
        staged: list[tuple[str, Path, concurrent.futures.Future[Path]]] = []
        for record, fut in batch:
            path = self.root / record.relative_path()
            tmp = str(path.parent / f".tmp-{path.name}")  # the record's own name: unique
            try:
                try:
                    fd = os.open(tmp, _TMP_FLAGS, 0o600)
                except FileNotFoundError:  # the day's folder is new
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(tmp, _TMP_FLAGS, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(encode_cdr(record))
                    if self._syncfs is None:
                        f.flush()
                        os.fsync(f.fileno())
            except Exception as exc:  # this record fails alone; the batch goes on
                fut.set_exception(exc)
                continue
            staged.append((tmp, path, fut))
        if not staged:
            return
        self.commits += 1
        try:
            if self._syncfs is not None:
                self._sync(staged[0][1].parent)  # every temporary file's data is on disk
            for tmp, path, _ in staged:
                os.replace(tmp, path)
            self._sync(*{p.parent for _, p, _ in staged})  # and now the renames
        except Exception as exc:
            for tmp, _, fut in staged:
                Path(tmp).unlink(missing_ok=True)
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, path, fut in staged:
            fut.set_result(path)

    def _sync(self, *folders: Path) -> None:
        for folder in folders if self._syncfs is None else folders[:1]:
            fd = os.open(folder, os.O_RDONLY)
            try:
                if self._syncfs is None:
                    os.fsync(fd)
                elif self._syncfs(fd) != 0:  # type: ignore[operator]
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
