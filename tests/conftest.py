"""Test-wide helpers: ephemeral ports and loud failure when a real peer is missing."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """An ephemeral port the kernel just handed out (closed again before return)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sipp_ports(host: str = "127.0.0.1") -> tuple[int, int, int]:
    """SIPp's (-p, -mp, -cp), chosen with every one held open so none is handed out twice:
    SIPp binds -mp and -mp + 2 (audio and video RTP, RTCP above each) besides -p and -cp, so
    -mp is the first of four consecutive free UDP ports."""
    held: list[socket.socket] = []

    def hold(port: int) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.append(s)
        s.bind((host, port))
        return s.getsockname()[1]

    try:
        sip, control = hold(0), hold(0)
        for _ in range(100):
            base = hold(0)
            try:
                for k in (1, 2, 3):
                    hold(base + k)
            except OSError:
                continue  # a neighbour is taken (or past the range): try another base
            return sip, base, control
        raise RuntimeError("no four consecutive free UDP ports for SIPp's media")
    finally:
        for s in held:
            s.close()


def require_binary(name: str) -> str:
    """Path of a peer binary; a missing peer fails the test (never a silent skip)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        pytest.fail(f"peer {name!r} is not installed: run `make test` (it installs the peers)")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "var"
    d.mkdir()
    return d
