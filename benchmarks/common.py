"""What every benchmark module's command line shares: ``--quick``, ``--out FILE``, JSON on stdout."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def bench_main(run: Callable[[bool], dict[str, Any]], doc: str | None, argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    text = json.dumps(run(args.quick), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0
