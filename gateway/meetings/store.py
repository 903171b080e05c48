"""The meeting directory: a small store interface and its SQLite implementation.

The interface (:class:`MeetingStore`) is what the daemon, the CLI and the admin
API use; it speaks in :class:`Meeting` values and raises :class:`StoreError`
subclasses, never driver exceptions, so a PostgreSQL store can stand in later.

Every dialable number (the meeting ID and any host/delegate 13-digit IDs) lives
in one table keyed by the number, so uniqueness across all of them is enforced
by the database, not by a check-then-insert race.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.meetings.ids import (
    InvalidValue,
    check_passcode,
    generate_id,
    hash_passcode,
    validate_id,
)


class StoreError(Exception):
    """Base class; ``status`` is the HTTP status an API answers with."""

    status = 400


class MeetingNotFound(StoreError):
    status = 404


class DuplicateId(StoreError):
    status = 409


class Role:
    MEETING = "meeting"
    HOST = "host"  # a host's or delegate's own 13-digit ID: joins as moderator


@dataclass(frozen=True, slots=True, kw_only=True)
class Meeting:
    meeting_id: str
    title: str
    host: str
    moderated: bool
    has_passcode: bool
    host_ids: tuple[str, ...]
    region: str
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "meeting_id": self.meeting_id,
            "digits": len(self.meeting_id),
            "title": self.title,
            "host": self.host,
            "moderated": self.moderated,
            "has_moderator_passcode": self.has_passcode,
            "host_ids": list(self.host_ids),
            "region": self.region,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """What a dialed number resolved to."""

    meeting: Meeting
    role: str  # Role.MEETING or Role.HOST


class MeetingStore(Protocol):
    def create(self, *, digits: int = 10, meeting_id: str | None = None, title: str = "",
               host: str = "", moderated: bool = False, moderator_passcode: str | None = None,
               host_ids: tuple[str, ...] = (), region: str = "",
               passcode_hash: str | None = None) -> Meeting: ...
    def get(self, meeting_id: str) -> Meeting: ...
    def lookup(self, number: str) -> Lookup | None: ...
    def list(self, *, limit: int = 1000, offset: int = 0) -> list[Meeting]: ...
    def update(self, meeting_id: str, *, title: str | None = None, host: str | None = None,
               moderated: bool | None = None, region: str | None = None,
               host_ids: tuple[str, ...] | None = None) -> Meeting: ...
    def set_passcode(self, meeting_id: str, passcode: str | None) -> Meeting: ...
    def check_passcode(self, meeting_id: str, passcode: str) -> bool: ...
    def reset_id(self, meeting_id: str, new_id: str | None = None) -> Meeting: ...
    def delete(self, meeting_id: str) -> None: ...
    def passcode_hash(self, meeting_id: str) -> str | None: ...
    def close(self) -> None: ...


_SCHEMA = """
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS meetings (
    pk            INTEGER PRIMARY KEY,
    meeting_id    TEXT NOT NULL UNIQUE,
    title         TEXT NOT NULL DEFAULT '',
    host          TEXT NOT NULL DEFAULT '',
    moderated     INTEGER NOT NULL DEFAULT 0 CHECK (moderated IN (0, 1)),
    passcode_hash TEXT,
    region        TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS numbers (
    number     TEXT PRIMARY KEY,
    meeting_pk INTEGER NOT NULL REFERENCES meetings(pk) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('meeting', 'host'))
);
CREATE INDEX IF NOT EXISTS numbers_by_meeting ON numbers(meeting_pk);
"""


class SQLiteMeetingStore:
    """SQLite in WAL mode; one connection guarded by a lock (calls are sub-millisecond)."""

    def __init__(self, path: Path | str, *, clock: callable = time.time) -> None:  # type: ignore[valid-type]
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.executescript(_SCHEMA)

    # ---- helpers ----
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _row(self, db: sqlite3.Connection, meeting_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM meetings WHERE meeting_id = ?", (meeting_id,)).fetchone()
        if row is None:
            raise MeetingNotFound(f"no meeting {meeting_id}")
        return row

    def _meeting(self, db: sqlite3.Connection, row: sqlite3.Row) -> Meeting:
        hosts = tuple(r[0] for r in db.execute(
            "SELECT number FROM numbers WHERE meeting_pk = ? AND role = 'host' ORDER BY number",
            (row["pk"],)))
        return Meeting(meeting_id=row["meeting_id"], title=row["title"], host=row["host"],
                       moderated=bool(row["moderated"]), has_passcode=row["passcode_hash"] is not None,
                       host_ids=hosts, region=row["region"], created_at=row["created_at"],
                       updated_at=row["updated_at"])

    def _add_number(self, db: sqlite3.Connection, number: str, pk: int, role: str) -> None:
        try:
            db.execute("INSERT INTO numbers(number, meeting_pk, role) VALUES (?, ?, ?)", (number, pk, role))
        except sqlite3.IntegrityError:
            raise DuplicateId(f"number {number} is already in use") from None

    @staticmethod
    def _check_host_ids(host_ids: tuple[str, ...]) -> tuple[str, ...]:
        for h in host_ids:
            validate_id(h, field="host_ids")
            if len(h) != 13:
                raise InvalidValue("host_ids", "host and delegate IDs are 13 digits")
        if len(set(host_ids)) != len(host_ids):
            raise InvalidValue("host_ids", "listed twice")
        return host_ids

    # ---- interface ----
    def create(self, *, digits: int = 10, meeting_id: str | None = None, title: str = "",
               host: str = "", moderated: bool = False, moderator_passcode: str | None = None,
               host_ids: tuple[str, ...] = (), region: str = "",
               passcode_hash: str | None = None) -> Meeting:
        if meeting_id is not None:
            validate_id(meeting_id)
        elif digits not in (10, 13):
            raise InvalidValue("digits", "must be 10 or 13")
        host_ids = self._check_host_ids(tuple(host_ids))
        stored_hash = hash_passcode(moderator_passcode) if moderator_passcode is not None else passcode_hash
        now = self._clock()
        for _ in range(20):  # a random clash is astronomically rare; retry a few times
            number = meeting_id or generate_id(digits)
            try:
                with self._tx() as db:
                    try:
                        cur = db.execute(
                            "INSERT INTO meetings(meeting_id, title, host, moderated, passcode_hash,"
                            " region, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                            (number, title, host, int(moderated), stored_hash, region, now, now))
                    except sqlite3.IntegrityError:
                        raise DuplicateId(f"number {number} is already in use") from None
                    pk = cur.lastrowid
                    self._add_number(db, number, pk, Role.MEETING)
                    for h in host_ids:
                        self._add_number(db, h, pk, Role.HOST)
                    return self._meeting(db, self._row(db, number))
            except DuplicateId:
                if meeting_id is not None or host_ids:
                    raise
        raise DuplicateId("could not find a free meeting number")

    def get(self, meeting_id: str) -> Meeting:
        with self._lock:
            return self._meeting(self._db, self._row(self._db, meeting_id))

    def lookup(self, number: str) -> Lookup | None:
        with self._lock:
            row = self._db.execute(
                "SELECT m.*, n.role AS role FROM numbers n JOIN meetings m ON m.pk = n.meeting_pk"
                " WHERE n.number = ?", (number,)).fetchone()
            if row is None:
                return None
            return Lookup(meeting=self._meeting(self._db, row), role=row["role"])

    def list(self, *, limit: int = 1000, offset: int = 0) -> list[Meeting]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM meetings ORDER BY created_at, pk LIMIT ? OFFSET ?",
                                    (limit, offset)).fetchall()
            return [self._meeting(self._db, r) for r in rows]

    def update(self, meeting_id: str, *, title: str | None = None, host: str | None = None,
               moderated: bool | None = None, region: str | None = None,
               host_ids: tuple[str, ...] | None = None) -> Meeting:
        if host_ids is not None:
            host_ids = self._check_host_ids(tuple(host_ids))
        with self._tx() as db:
            row = self._row(db, meeting_id)
            sets = {k: v for k, v in (("title", title), ("host", host), ("region", region),
                                      ("moderated", None if moderated is None else int(moderated)))
                    if v is not None}
            sets["updated_at"] = self._clock()
            db.execute(f"UPDATE meetings SET {', '.join(f'{k} = ?' for k in sets)} WHERE pk = ?",
                       (*sets.values(), row["pk"]))
            if host_ids is not None:
                db.execute("DELETE FROM numbers WHERE meeting_pk = ? AND role = 'host'", (row["pk"],))
                for h in host_ids:
                    self._add_number(db, h, row["pk"], Role.HOST)
            return self._meeting(db, self._row(db, meeting_id))

    def set_passcode(self, meeting_id: str, passcode: str | None) -> Meeting:
        stored = hash_passcode(passcode) if passcode is not None else None
        with self._tx() as db:
            row = self._row(db, meeting_id)
            db.execute("UPDATE meetings SET passcode_hash = ?, updated_at = ? WHERE pk = ?",
                       (stored, self._clock(), row["pk"]))
            return self._meeting(db, self._row(db, meeting_id))

    def passcode_hash(self, meeting_id: str) -> str | None:
        with self._lock:
            return self._row(self._db, meeting_id)["passcode_hash"]

    def check_passcode(self, meeting_id: str, passcode: str) -> bool:
        return check_passcode(passcode, self.passcode_hash(meeting_id))

    def reset_id(self, meeting_id: str, new_id: str | None = None) -> Meeting:
        """Give a meeting a new number (an administrator's reset of a personal ID)."""
        if new_id is not None:
            validate_id(new_id)
            if len(new_id) != len(meeting_id):
                raise InvalidValue("meeting_id", "a reset keeps the number of digits")
        for _ in range(20):
            number = new_id or generate_id(len(meeting_id))
            try:
                with self._tx() as db:
                    row = self._row(db, meeting_id)
                    db.execute("DELETE FROM numbers WHERE meeting_pk = ? AND role = 'meeting'", (row["pk"],))
                    self._add_number(db, number, row["pk"], Role.MEETING)
                    db.execute("UPDATE meetings SET meeting_id = ?, updated_at = ? WHERE pk = ?",
                               (number, self._clock(), row["pk"]))
                    return self._meeting(db, self._row(db, number))
            except DuplicateId:
                if new_id is not None:
                    raise
        raise DuplicateId("could not find a free meeting number")

    def delete(self, meeting_id: str) -> None:
        with self._tx() as db:
            row = self._row(db, meeting_id)
            db.execute("DELETE FROM meetings WHERE pk = ?", (row["pk"],))

    def close(self) -> None:
        with self._lock:
            self._db.close()
