"""The SQLite meeting directory and the ID/passcode rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.meetings import csvio
from gateway.meetings.ids import (
    InvalidValue,
    check_passcode,
    generate_id,
    hash_passcode,
    is_trivial,
    validate_id,
)
from gateway.meetings.store import DuplicateId, MeetingNotFound, Role, SQLiteMeetingStore


@pytest.fixture
def store(tmp_path: Path) -> SQLiteMeetingStore:
    s = SQLiteMeetingStore(tmp_path / "db.sqlite3")
    yield s
    s.close()


def test_create_random_ids_of_both_lengths(store: SQLiteMeetingStore) -> None:
    a = store.create(digits=10, title="Board room")
    b = store.create(digits=13)
    assert len(a.meeting_id) == 10 and len(b.meeting_id) == 13
    assert not is_trivial(a.meeting_id) and a.meeting_id[0] != "0"
    assert store.get(a.meeting_id).title == "Board room"
    assert [m.meeting_id for m in store.list()] == [a.meeting_id, b.meeting_id]


def test_wal_mode(store: SQLiteMeetingStore) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_duplicate_ids_refused_across_meeting_and_host_ids(store: SQLiteMeetingStore) -> None:
    m = store.create(meeting_id="4718203956", moderated=True, host_ids=("5819203746182",))
    with pytest.raises(DuplicateId):
        store.create(meeting_id="4718203956")
    with pytest.raises(DuplicateId):
        store.create(meeting_id="5819203746182")  # a host ID is a dialable number too
    lk = store.lookup("5819203746182")
    assert lk is not None and lk.role == Role.HOST and lk.meeting.meeting_id == m.meeting_id
    assert store.lookup("9999999998") is None


def test_passcode_is_hashed_and_checked(store: SQLiteMeetingStore) -> None:
    m = store.create(moderated=True, moderator_passcode="482913")
    assert m.has_passcode
    stored = store.passcode_hash(m.meeting_id)
    assert stored and "482913" not in stored and stored.startswith("scrypt$")
    assert store.check_passcode(m.meeting_id, "482913")
    assert not store.check_passcode(m.meeting_id, "482914")
    assert not store.check_passcode(m.meeting_id, "")
    assert not store.set_passcode(m.meeting_id, None).has_passcode
    assert not store.check_passcode(m.meeting_id, "482913")


@pytest.mark.parametrize("bad", ["123", "123456789", "12a4", "1234 5"])
def test_bad_passcodes_refused(store: SQLiteMeetingStore, bad: str) -> None:
    with pytest.raises(InvalidValue) as err:
        store.create(moderator_passcode=bad)
    assert err.value.field == "moderator_passcode"


@pytest.mark.parametrize("bad", ["1234567890", "0000000000", "5555555555555", "0123456789",
                                 "9876543210", "1212121212", "123", "abcdefghij", "0481726354"])
def test_trivial_or_malformed_ids_refused(bad: str) -> None:
    with pytest.raises(InvalidValue):
        validate_id(bad)


def test_update_reset_delete(store: SQLiteMeetingStore) -> None:
    m = store.create(meeting_id="4718203956")
    assert store.update(m.meeting_id, title="x", moderated=True).moderated
    new = store.reset_id(m.meeting_id)
    assert new.meeting_id != m.meeting_id and len(new.meeting_id) == 10
    with pytest.raises(MeetingNotFound):
        store.get(m.meeting_id)
    assert store.lookup(m.meeting_id) is None  # the old number no longer dials
    store.delete(new.meeting_id)
    with pytest.raises(MeetingNotFound):
        store.delete(new.meeting_id)


def test_csv_round_trip_keeps_hashes(tmp_path: Path, store: SQLiteMeetingStore) -> None:
    import io

    store.create(meeting_id="4718203956", title="A, with comma", moderated=True,
                 moderator_passcode="2468", host_ids=("5819203746182",))
    store.create(digits=13, title="B")
    buf = io.StringIO()
    assert csvio.export_csv(store, buf) == 2
    assert "2468" not in buf.getvalue()
    other = SQLiteMeetingStore(tmp_path / "other.sqlite3")
    assert csvio.import_csv(other, io.StringIO(buf.getvalue())) == 2
    assert other.check_passcode("4718203956", "2468")
    assert other.get("4718203956").host_ids == ("5819203746182",)
    # importing again clashes and writes nothing
    with pytest.raises(csvio.CsvError):
        csvio.import_csv(other, io.StringIO(buf.getvalue()))
    assert len(other.list()) == 2


def test_csv_bad_row_names_the_line(store: SQLiteMeetingStore) -> None:
    import io

    text = "meeting_id,title,moderated\n4718203956,ok,true\n12,bad,true\n"
    with pytest.raises(csvio.CsvError) as err:
        csvio.import_csv(store, io.StringIO(text))
    assert "line 3" in str(err.value)
    assert store.list() == []  # all or nothing


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([10, 13]))
def test_generated_ids_are_valid(digits: int) -> None:
    assert validate_id(generate_id(digits)) is not None


@settings(max_examples=20, deadline=None)
@given(st.from_regex(r"\A[0-9]{4,8}\Z"), st.from_regex(r"\A[0-9]{4,8}\Z"))
def test_passcode_hash_accepts_only_itself(a: str, b: str) -> None:
    h = hash_passcode(a)
    assert check_passcode(a, h)
    assert check_passcode(b, h) == (a == b)
