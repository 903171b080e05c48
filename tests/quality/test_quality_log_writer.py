"""The quality log keeps its descriptor open and follows rotation (rename or delete)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.quality.export import QualityLogWriter


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines()]


def test_appends_follow_a_rotated_and_a_deleted_log(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "quality.jsonl"
    w = QualityLogWriter(path)
    w.append({"n": 1})
    w.append({"n": 2})
    path.rename(tmp_path / "logs" / "quality.jsonl.1")  # logrotate's default move
    w.append({"n": 3})
    assert _lines(tmp_path / "logs" / "quality.jsonl.1") == [{"n": 1}, {"n": 2}]
    assert _lines(path) == [{"n": 3}]
    path.unlink()
    w.append({"n": 4})
    assert _lines(path) == [{"n": 4}]
    w.close()
    w.append({"n": 5})  # reopens after close
    assert _lines(path) == [{"n": 4}, {"n": 5}]
    w.close()
