"""Type stub of the C accelerator built from native/udpbatch.c, native/relay.c and
native/rtpstats.c (see gateway.rtp.udpbatch and gateway.quality.engine)."""

from typing import Any

ADDR_SIZE: int
SO_TIMESTAMPNS: int

def recv_batch(
    fd: Any, buf: Any, lengths: Any, addrs: Any | None, ts_ns: Any | None, max_count: int, /
) -> int: ...
def send_batch(fd: Any, buf: Any, lengths: Any, dst_addrs: Any | None, count: int, /) -> int: ...
def enable_timestamps(fd: Any, /) -> None: ...
def relay_batch(
    buf: Any,
    lengths: Any,
    addrs: Any,
    ts_ns: Any,
    count: int,
    expect: Any,
    pt_mask: Any,
    rows: Any,
    accepted: Any,
    clock_offset_ns: int,
    now_ns: int,
    out_fd: int,
    dest: Any | None,
    /,
) -> tuple[int, int, int, int, int]: ...
def rtp_stats(
    parts: Any, sids: Any, seq_state: Any, jit_state: Any, events: Any, rate_table: Any, /
) -> int: ...
