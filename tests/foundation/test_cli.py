"""`vtcgw meetings ...` as a user runs it: a real subprocess on a real data dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def vtcgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_create_list_show_set_passcode_reset_delete(data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    r = vtcgw("meetings", "create", *d, "--digits", "13", "--title", "Ops", "--moderated",
              "--moderator-passcode", "123456")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert len(m["meeting_id"]) == 13 and m["moderated"] and m["has_moderator_passcode"]
    assert "123456" not in r.stdout + r.stderr
    assert (data_dir / "vtcgw.sqlite3").exists()

    r = vtcgw("meetings", "create", *d, "--id", "4718203956", "--title", "Mine")
    assert r.returncode == 0 and json.loads(r.stdout)["meeting_id"] == "4718203956"

    listed = [json.loads(line) for line in vtcgw("meetings", "list", *d).stdout.splitlines()]
    assert {x["meeting_id"] for x in listed} == {m["meeting_id"], "4718203956"}

    shown = json.loads(vtcgw("meetings", "show", *d, "4718203956").stdout)
    assert shown["title"] == "Mine"

    r = vtcgw("meetings", "set-passcode", *d, "4718203956", "--passcode", "9753")
    assert r.returncode == 0 and json.loads(r.stdout)["has_moderator_passcode"]

    r = vtcgw("meetings", "reset-id", *d, "4718203956")
    new_id = json.loads(r.stdout)["meeting_id"]
    assert new_id != "4718203956" and len(new_id) == 10

    assert vtcgw("meetings", "delete", *d, new_id).returncode == 0
    r = vtcgw("meetings", "show", *d, new_id)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no meeting" in r.stderr


def test_errors_are_one_line_exit_2(data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    assert vtcgw("meetings", "create", *d, "--id", "4718203956").returncode == 0
    for args, needle in (
        (["create", *d, "--id", "4718203956"], "already in use"),
        (["create", *d, "--id", "12345"], "10 or 13 digits"),
        (["create", *d, "--moderator-passcode", "12"], "4 to 8 digits"),
        (["create", *d, "--digits", "11"], "invalid choice"),
        (["import", *d, str(data_dir / "missing.csv")], "missing.csv"),
    ):
        r = vtcgw("meetings", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (args, r.stderr)


def test_export_import_between_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    vtcgw("meetings", "create", "--data-dir", str(a), "--id", "4718203956", "--moderated",
          "--moderator-passcode", "2468", "--host-id", "5819203746182")
    csv_path = tmp_path / "m.csv"
    assert vtcgw("meetings", "export", "--data-dir", str(a), str(csv_path)).returncode == 0
    assert "2468" not in csv_path.read_text()
    r = vtcgw("meetings", "import", "--data-dir", str(b), str(csv_path))
    assert r.returncode == 0 and json.loads(r.stdout) == {"imported": 1}
    shown = json.loads(vtcgw("meetings", "show", "--data-dir", str(b), "4718203956").stdout)
    assert shown["host_ids"] == ["5819203746182"] and shown["has_moderator_passcode"]
