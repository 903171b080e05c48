"""Run tshark's RTP stream statistics on a capture and parse its table by header."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import require_binary

_PERCENT = re.compile(r"^\(-?[\d.]+%\)$")


def tshark_rtp_streams(path: Path, *extra: str) -> list[dict[str, str]]:
    """Rows of `tshark -z rtp,streams`, each keyed by its column header.

    Repeated header names (the two "Port" columns) get a numeric suffix ("Port",
    "Port#2"); "Lost" keeps its "N (p%)" text; "Problems?" may be empty."""
    exe = require_binary("tshark")
    proc = subprocess.run(
        [exe, "-r", str(path), "-q", "-o", "rtp.heuristic_rtp:TRUE", *extra, "-z", "rtp,streams"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    hi = next(i for i, ln in enumerate(lines) if "SSRC" in ln and "Payload" in ln)
    names: list[str] = []
    # columns are separated by 2+ spaces, except after "(ms)" where one space may do
    for name in re.split(r"\s{2,}|(?<=\)) (?=\S)", lines[hi].strip()):
        base, k = name, 2
        while name in names:
            name = f"{base}#{k}"
            k += 1
        names.append(name)
    rows = []
    for ln in lines[hi + 1 :]:
        if not ln.strip() or ln.startswith("="):
            continue
        toks: list[str] = []
        for tok in ln.split():
            if _PERCENT.match(tok) and toks:
                toks[-1] += " " + tok
            else:
                toks.append(tok)
        si = next(i for i, t in enumerate(toks) if t.lower().startswith("0x"))
        li = next(i for i, t in enumerate(toks) if "%)" in t)
        toks = toks[: si + 1] + [" ".join(toks[si + 1 : li - 1])] + toks[li - 1 :]
        if len(toks) == len(names) - 1:
            toks.append("")
        if len(toks) != len(names):
            raise AssertionError(f"cannot parse tshark row {ln!r} with header {names}")
        rows.append(dict(zip(names, toks, strict=True)))
    return rows


def lost_count(row: dict[str, str]) -> int:
    return int(row["Lost"].split()[0])
