"""CdrWriter: group-committed CDRs land whole, one file each, in the SPEC.md layout."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gateway.meetings.cdr import CallRecord, CdrWriter, write_cdr

pytestmark = pytest.mark.timeout(30)


def _record(i: int, *, conference: str | None = "4718203956") -> CallRecord:
    return CallRecord(account="eu-1", conference_id=conference, organizer="host@example.com",
                      caller_uri=f"sip:room{i}@10.0.0.{i % 250}", called_uri="sip:******3956@gw",
                      protocol="sip", transport="tls", start_s=1_790_000_000 + i, answer_s=1_790_000_001 + i,
                      end_s=1_790_000_061 + i, conference_start_s=1_790_000_001 + i,
                      conference_end_s=1_790_000_061 + i, end_reason="remote-bye", moderator=i == 0,
                      quality={})


def test_a_burst_is_written_whole_one_file_per_record(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path, max_batch=16)  # 100 queued at once: several group commits
    records = [_record(i) for i in range(100)]
    futs = [writer.submit(r) for r in records]
    paths = [f.result(timeout=20) for f in futs]
    writer.close(10)
    assert len(set(paths)) == 100
    for rec, p in zip(records, paths, strict=True):
        assert p == tmp_path / rec.relative_path()
        doc = json.loads(p.read_text())
        assert doc["ConferenceId"] is not None and doc["EndReason"] == "remote-bye"
        assert "4718203956" not in json.dumps(doc.get("ConferencePin"))
    leftovers = [n for _, _, files in os.walk(tmp_path) for n in files if n.startswith(".tmp-")]
    assert leftovers == []


def test_same_document_as_the_single_record_writer(tmp_path: Path) -> None:
    rec = _record(7, conference=None)
    one = write_cdr(tmp_path / "one", rec)
    writer = CdrWriter(tmp_path / "many")
    many = writer.submit(rec).result(timeout=10)
    writer.close(10)
    assert one.relative_to(tmp_path / "one") == many.relative_to(tmp_path / "many")
    assert json.loads(one.read_text()) == json.loads(many.read_text())


def test_a_record_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    blocked = _record(3 * 86_400)  # another day's folder than the good record's
    # a file where the record's folder must go: that record fails, its batch-mates land
    bad_dir = tmp_path / blocked.relative_path().parent
    bad_dir.parent.mkdir(parents=True)
    bad_dir.write_text("not a folder")
    writer = CdrWriter(tmp_path)
    good = writer.submit(_record(2, conference="5820391746"))
    bad = writer.submit(blocked)
    assert good.result(timeout=10).exists()
    with pytest.raises(OSError):
        bad.result(timeout=10)
    writer.close(10)


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path)
    futs = [writer.submit(_record(i)) for i in range(20)]
    writer.close(20)
    assert all(f.done() and f.result().exists() for f in futs)


def test_records_arriving_within_the_gather_window_share_one_commit(tmp_path: Path) -> None:
    # a steady trickle (one call ending every few ms) must not cost two syncfs per record
    writer = CdrWriter(tmp_path, gather_s=30.0)
    first = writer.submit(_record(1))
    time.sleep(0.05)  # the writer thread has long woken for the first record by now
    second = writer.submit(_record(2))
    writer.close(10)  # ends the window at once: what is queued is written
    assert first.result(timeout=1).exists() and second.result(timeout=1).exists()
    assert writer.commits == 1


def test_a_cdr_file_is_one_compact_json_line(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path)
    path = writer.submit(_record(4)).result(timeout=10)
    writer.close(10)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text)["CdrId"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
