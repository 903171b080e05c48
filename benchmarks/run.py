"""Run every benchmark and write one report: ``benchmarks/results/<date>-<host>.json`` and ``.md``.

Each benchmark module exposes ``run(quick: bool) -> dict``; a figure that has a peer
measured in the same run carries the ratio (``*_ratio``). Benchmarks run one after
another, never in parallel: the machine has two cores and the peers need one.

    python -m benchmarks.run              # full run (tens of minutes)
    python -m benchmarks.run --quick      # small sizes, for a smoke check
    python -m benchmarks.run --only quality sip
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import platform
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCHMARKS = {  # name -> module (each has run(quick) -> dict)
    "quality": "benchmarks.bench_quality",
    "sip": "benchmarks.bench_sip",
    "relay": "benchmarks.bench_relay",
    "mix": "benchmarks.bench_mix",
    "udpbatch": "benchmarks.bench_udpbatch",
    "h323": "benchmarks.bench_h323",
    "load": "benchmarks.bench_load",
}
RESULTS = Path(__file__).resolve().parent / "results"


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif (
        isinstance(value, list)
        and len(value) <= 6
        and all(not isinstance(v, dict | list) for v in value)
    ):
        out.append((prefix, ", ".join(map(str, value))))
    elif not isinstance(value, list):
        out.append((prefix, value))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# vtcgw benchmarks — {report['date']} on {report['host']}",
        "",
        f"{report['machine']}",
        "",
    ]
    for name, result in report["benchmarks"].items():
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        rows: list[tuple[str, Any]] = []
        _flatten("", result, rows)
        for key, value in rows:
            if isinstance(value, float):
                value = f"{value:.4g}"
            lines.append(f"| {key} | {value} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.run")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores",
        "quick": args.quick,
        "benchmarks": {},
    }
    for name in names:
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(BENCHMARKS[name])
            result = module.run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["wall_s"] = round(time.monotonic() - t0, 1)
        report["benchmarks"][name] = result
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date'][:10]}-{report['host']}" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(args.out / f"{stem}.json")
    return 0 if all("error" not in r for r in report["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
