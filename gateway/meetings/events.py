"""Meeting events to webhooks through a durable outbox.

An event is written to the ``outbox`` table (one row per webhook URL) in the same
SQLite database as the directory before anything is sent, so a restart loses
nothing; a row is marked delivered only after a 2xx, and the event id travels as
``Idempotency-Key`` so a receiver can drop the rare duplicate (a crash between its
2xx and our commit). Nothing is sent twice otherwise.

Envelope (SPEC.md): ``{version, id, detail-type, source, account, time, region,
resources, detail}``. Signature: ``X-Vtcgw-Signature: v1=<hex HMAC-SHA256(secret,
"<X-Vtcgw-Timestamp>." + body)>``, so a receiver can check both origin and age.
Delivery is in order per URL: only the oldest pending row of a URL is tried, and while it
fails the rows behind it wait (a receiver never sees a meeting end before it started).
Retries of that head row back off exponentially from 1 s to 5 min; after ``max_attempts`` it
is marked failed and logged, and the next row goes. A restarted gateway retries pending
rows at once: the old process's back-off says nothing about whether the receiver is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from gateway import logs

log = logs.get_logger("vtcgw.events")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    url          TEXT NOT NULL,
    body         BLOB NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    delivered_at REAL,
    failed_at    REAL,
    UNIQUE (event_id, url)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt) WHERE delivered_at IS NULL AND failed_at IS NULL;
"""


def envelope(*, kind: str, account: str, region: str, source: str, resources: list[str],
             detail: dict[str, Any], now_wall: float) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": kind,
        "source": source,
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_wall)),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class Outbox:
    def __init__(self, db_path: Path, *, urls: tuple[str, ...], secret: str,
                 max_attempts: int = 30, timeout_s: float = 10.0) -> None:
        self.urls = urls
        self.secret = secret
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.executescript(_SCHEMA)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def add(self, event: dict[str, Any]) -> None:
        if not self.urls:
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox(event_id, url, body, next_attempt) VALUES (?,?,?,?)",
                [(event["id"], url, body, now) for url in self.urls])
        self._wake.set()

    def pending(self) -> int:
        return self._db.execute(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL").fetchone()[0]

    async def start(self) -> None:
        if self.urls:
            with self._db:
                self._db.execute("UPDATE outbox SET next_attempt = ? WHERE delivered_at IS NULL"
                                 " AND failed_at IS NULL", (time.time(),))
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-outbox")

    async def close(self, *, flush_s: float = 2.0) -> None:
        if self._task is not None:
            deadline = time.monotonic() + flush_s
            while self.pending() and time.monotonic() < deadline and self._due_in() == 0.0:
                self._wake.set()
                await asyncio.sleep(0.05)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._db.close()

    def _due_in(self) -> float | None:
        """Seconds until the first URL's oldest pending row is due (None: nothing pending)."""
        row = self._db.execute(
            "SELECT min(o.next_attempt) FROM outbox o WHERE o.delivered_at IS NULL AND o.failed_at IS NULL"
            " AND o.seq = (SELECT min(p.seq) FROM outbox p WHERE p.url = o.url"
            " AND p.delivered_at IS NULL AND p.failed_at IS NULL)").fetchone()
        return None if row[0] is None else max(0.0, row[0] - time.time())

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as http:
            while True:
                for url in self.urls:
                    await self._drain(http, url)
                self._wake.clear()
                wait = self._due_in()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def _drain(self, http: aiohttp.ClientSession, url: str) -> None:
        """Send one URL's pending rows oldest first, stopping at one that is not due yet or
        fails (its back-off then holds the rows behind it)."""
        rows = self._db.execute(
            "SELECT seq, event_id, body, attempts, next_attempt FROM outbox WHERE url = ?"
            " AND delivered_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT 100", (url,)).fetchall()
        for seq, event_id, body, attempts, next_attempt in rows:
            if next_attempt > time.time():
                return
            if not await self._send(http, seq, event_id, url, body, attempts):
                return

    async def _send(self, http: aiohttp.ClientSession, seq: int, event_id: str, url: str,
                    body: bytes, attempts: int) -> bool:
        """One attempt; True when the row is settled (delivered, or given up on)."""
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": event_id,
                   "X-Vtcgw-Timestamp": ts, "X-Vtcgw-Signature": sign(self.secret, ts, body)}
        status: int | str
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = type(exc).__name__
        if isinstance(status, int) and 200 <= status < 300:
            with self._db:
                self._db.execute("UPDATE outbox SET delivered_at = ?, attempts = ? WHERE seq = ?",
                                 (time.time(), attempts + 1, seq))
            self.delivered += 1
            return True
        attempts += 1
        if attempts >= self.max_attempts:
            with self._db:
                self._db.execute("UPDATE outbox SET failed_at = ?, attempts = ? WHERE seq = ?",
                                 (time.time(), attempts, seq))
            log.error("webhook gave up", url=url, event_id=event_id, last=str(status))
            return True
        delay = min(300.0, 2.0 ** (attempts - 1))
        with self._db:
            self._db.execute("UPDATE outbox SET attempts = ?, next_attempt = ? WHERE seq = ?",
                             (attempts, time.time() + delay, seq))
        log.warning("webhook retry", url=url, event_id=event_id, status=str(status), retry_in_s=delay)
        return False
