#!/usr/bin/env python3
"""Generate the voice-menu prompts with espeak-ng and sox at 8 and 16 kHz.

Run from the repo root: `python3 scripts/gen_prompts.py`. The WAVs are committed
(gateway/prompts/) so a machine without espeak-ng still has a speaking menu.
The texts live in gateway/meetings/prompts.py; this script only renders them.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gateway.meetings.prompts import PROMPT_TEXTS  # noqa: E402

OUT = ROOT / "gateway" / "prompts"


def render(name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        for rate in (8000, 16000):
            dst = OUT / f"{name}.{rate // 1000}k.wav"
            # mono 16-bit at the target rate, 80 ms of silence both ends, peak at -3 dBFS
            subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(dst),
                            "pad", "0.08", "0.08", "gain", "-n", "-3"], check=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in PROMPT_TEXTS.items():
        render(name, text)
    print(f"{len(PROMPT_TEXTS)} prompts written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
