"""Type stub of the C accelerator built from native/udpbatch.c (see gateway.rtp.udpbatch)."""

from typing import Any

ADDR_SIZE: int
SO_TIMESTAMPNS: int

def recv_batch(
    fd: Any, buf: Any, lengths: Any, addrs: Any | None, ts_ns: Any | None, max_count: int, /
) -> int: ...
def send_batch(fd: Any, buf: Any, lengths: Any, dst_addrs: Any | None, count: int, /) -> int: ...
def enable_timestamps(fd: Any, /) -> None: ...
