"""CSV import and export of the meeting directory.

Columns: meeting_id, title, host, moderated, region, host_ids (space-separated),
and either moderator_passcode (plain digits, hashed on import) or passcode_hash
(as exported). Export never writes a plain passcode. Import is all-or-nothing:
the file is checked row by row first and nothing is written if any row is bad.
"""

from __future__ import annotations

import csv
from typing import IO

from gateway.meetings.ids import InvalidValue, is_passcode_hash, validate_id, validate_passcode
from gateway.meetings.store import MeetingStore

COLUMNS = ["meeting_id", "title", "host", "moderated", "region", "host_ids", "passcode_hash"]
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


class CsvError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


def export_csv(store: MeetingStore, out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for m in store.list(limit=10**9):
        writer.writerow({
            "meeting_id": m.meeting_id, "title": m.title, "host": m.host,
            "moderated": "true" if m.moderated else "false", "region": m.region,
            "host_ids": " ".join(m.host_ids), "passcode_hash": store.passcode_hash(m.meeting_id) or "",
        })
        n += 1
    return n


def _parse_rows(src: IO[str]) -> list[dict]:
    reader = csv.DictReader(src)
    if reader.fieldnames is None or "meeting_id" not in reader.fieldnames:
        raise CsvError(1, "header must name at least meeting_id")
    unknown = set(reader.fieldnames) - set(COLUMNS) - {"moderator_passcode"}
    if unknown:
        raise CsvError(1, f"unknown columns: {', '.join(sorted(unknown))}")
    rows, seen = [], set()
    for row in reader:
        line = reader.line_num
        try:
            mid = validate_id((row.get("meeting_id") or "").strip())
            moderated_text = (row.get("moderated") or "").strip().lower()
            if moderated_text not in _TRUE | _FALSE:
                raise InvalidValue("moderated", "must be true or false")
            host_ids = tuple((row.get("host_ids") or "").split())
            plain = (row.get("moderator_passcode") or "").strip()
            hashed = (row.get("passcode_hash") or "").strip()
            if plain and hashed:
                raise InvalidValue("moderator_passcode", "give either moderator_passcode or passcode_hash")
            if plain:
                validate_passcode(plain)
            if hashed and not is_passcode_hash(hashed):
                raise InvalidValue("passcode_hash", "not a hash this gateway wrote")
        except InvalidValue as exc:
            raise CsvError(line, str(exc)) from None
        for number in (mid, *host_ids):
            if number in seen:
                raise CsvError(line, f"number {number} appears twice in the file")
            seen.add(number)
        rows.append(dict(meeting_id=mid, title=row.get("title") or "", host=row.get("host") or "",
                         moderated=moderated_text in _TRUE, region=row.get("region") or "",
                         host_ids=host_ids, moderator_passcode=plain or None,
                         passcode_hash=hashed or None))
    return rows


def import_csv(store: MeetingStore, src: IO[str]) -> int:
    rows = _parse_rows(src)
    for r in rows:  # check clashes with the directory before writing anything
        for number in (r["meeting_id"], *r["host_ids"]):
            if store.lookup(number) is not None:
                raise CsvError(0, f"number {number} is already in the directory")
    for r in rows:
        store.create(**r)
    return len(rows)
