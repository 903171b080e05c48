"""Helpers shared by the batched-UDP tests."""

from __future__ import annotations

import select
import socket

from gateway.rtp.udpbatch import BatchBuffers, Implementation


def drain(impl: Implementation, sock: socket.socket, expect: int, batch: int, maxlen: int = 2048):
    """Receive `expect` datagrams with batches of `batch`; return (payloads, lengths, addrs, ts)."""
    b = BatchBuffers(batch, maxlen)
    payloads: list[bytes] = []
    lengths: list[int] = []
    addrs: list[bytes] = []
    ts: list[int] = []
    while len(lengths) < expect:
        ready, _, _ = select.select([sock], [], [], 5.0)
        assert ready, f"timed out with {len(lengths)} of {expect} datagrams"
        n = impl.recv_batch(sock.fileno(), b.buf, b.lengths, b.addrs, b.ts_ns, batch)
        assert 0 <= n <= batch
        for i in range(n):
            lengths.append(int(b.lengths[i]))
            payloads.append(b.payload(i))
            addrs.append(b.addrs[i : i + 1].tobytes())
            ts.append(int(b.ts_ns[i]))
    return payloads, lengths, addrs, ts
