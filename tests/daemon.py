"""Start the real daemon as a subprocess on ephemeral ports, for black-box tests."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VTCGW = [sys.executable, "-m", "gateway.cli"]
TOKEN = "test-token-0123456789"


@dataclass
class Daemon:
    proc: subprocess.Popen
    ports: dict[str, int]
    data_dir: Path
    token: str = TOKEN
    stderr_path: Path = field(default=Path("/dev/null"))

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def ephemeral_args(data_dir: Path, *extra: str) -> list[str]:
    return ["serve", "--data-dir", str(data_dir), "--bind-host", "127.0.0.1",
            "--sip-tls-port", "0", "--h323-port", "0", "--api-port", "0", "--api-token", TOKEN,
            "--media-range", "20000-29999", "--h323-media-range", "30000-30999",
            "--log-format", "json", "--drain-s", "2", *extra]


def start_daemon(data_dir: Path, *extra: str, env: dict[str, str] | None = None,
                 timeout: float = 30.0) -> Daemon:
    stderr_path = data_dir.parent / f"daemon-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(VTCGW + ephemeral_args(data_dir, *extra), stdout=subprocess.PIPE,
                            stderr=open(stderr_path, "wb"), env={**os.environ, **(env or {})},
                            cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:  # exited
            proc.wait()
            raise RuntimeError(f"daemon exited {proc.returncode}: {stderr_path.read_text()[-3000:]}")
        msg = json.loads(line)
        if msg.get("event") == "ready":
            ports = {k: v for k, v in msg.items() if isinstance(v, int) and k != "pid"}
            return Daemon(proc=proc, ports=ports, data_dir=data_dir, stderr_path=stderr_path)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"daemon not ready in {timeout}s: {stderr_path.read_text()[-3000:]}")
