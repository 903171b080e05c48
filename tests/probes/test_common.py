"""Shared probe plumbing: checks, tables, the TTY-only progress bar, exit status."""

from __future__ import annotations

import io

from probes.common import EXIT_FAIL, EXIT_PASS, Check, Op, ProbeResult, Progress, table


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress("rtp", 10.0, stream)
        for t in (0.0, 5.0, 10.0, 12.0):
            p.update(t)
        p.close()
    assert " 50%" in tty.getvalue() and "100%" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_checks_and_exit_status() -> None:
    ok = Check(name="loss", value=0.5, limit=1.0)
    bad = Check(name="mos", value=3.1, limit=3.6, op=Op.MIN)
    missing = Check(name="jitter", value=None, limit=30.0)
    assert ok.ok and not bad.ok and not missing.ok
    res = ProbeResult(probe="x", target="t", checks=[ok])
    assert res.exit_status == EXIT_PASS and res.to_json()["verdict"] == "pass"
    res.checks.append(bad)
    assert res.exit_status == EXIT_FAIL and res.to_json()["checks"][1]["ok"] is False


def test_table_aligns_numbers_right() -> None:
    out = table(["name", "n"], [["a", 1], ["bbb", 100]]).splitlines()
    assert out[2] == "a       1" and out[3] == "bbb   100"
