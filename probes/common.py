"""What every probe shares: results with checks, tables, progress, exit status.

Every subcommand returns a `ProbeResult`: a JSON-able `data` dict plus a list of
`Check`s (a measured value against a configured limit). The verdict is "pass"
when every check passes; the CLI maps it to exit status 0 (pass) or 1 (fail).
Usage errors and failures to run at all raise `ProbeError` (exit status 2, one line).
"""

from __future__ import annotations

import enum
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class ProbeError(Exception):
    """The probe could not run (bad argument, unreachable name, unreadable file)."""


class Op(enum.Enum):
    MAX = "<="
    MIN = ">="
    EQ = "=="


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    value: Any
    limit: Any
    op: Op = Op.MAX
    unit: str = ""

    @property
    def ok(self) -> bool:
        if self.value is None:
            return False
        if self.op is Op.MAX:
            return self.value <= self.limit
        if self.op is Op.MIN:
            return self.value >= self.limit
        return self.value == self.limit

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "op": self.op.value,
                "unit": self.unit, "ok": self.ok}


@dataclass(slots=True, kw_only=True)
class ProbeResult:
    probe: str
    target: str
    data: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exit_status(self) -> int:
        return EXIT_PASS if self.passed else EXIT_FAIL

    def to_json(self) -> dict[str, Any]:
        return {"probe": self.probe, "version": 1, "target": self.target,
                "started": round(self.started, 3), "verdict": "pass" if self.passed else "fail",
                "checks": [c.to_json() for c in self.checks], **self.data}


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]], *, right: set[int] | None = None) -> str:
    """A plain aligned text table (numbers right-aligned unless told otherwise)."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if right is None:
        right = {i for i in range(len(headers))
                 if rows and all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                                 for r in rows if r[i] is not None)}

    def line(vals: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(vals, widths, strict=False))).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def checks_table(checks: list[Check]) -> str:
    rows = [[c.name, f"{fmt(c.value)} {c.unit}".strip(), f"{c.op.value} {fmt(c.limit)} {c.unit}".strip(),
             "PASS" if c.ok else "FAIL"] for c in checks]
    return table(["check", "measured", "limit", "result"], rows, right=set())


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: float, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label, self.total, self._last = label, max(total, 1e-9), -1

    def update(self, done: float) -> None:
        if not self.enabled:
            return
        pct = int(100 * min(max(done / self.total, 0.0), 1.0))
        if pct == self._last:
            return
        self._last = pct
        bar = "#" * (pct // 4) + " " * (25 - pct // 4)
        self.stream.write(f"\r{self.label} [{bar}] {pct:3d}%")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            self.stream.write("\r" + " " * (len(self.label) + 36) + "\r")
            self.stream.flush()
