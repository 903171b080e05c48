"""add_batch_reader drains a socket in batches on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
import uvloop

from gateway.rtp.udpbatch import BatchBuffers, add_batch_reader

N = 500


async def _relay_count(max_rounds: int) -> tuple[list[int], list[int]]:
    loop = asyncio.get_running_loop()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    seqs: list[int] = []
    sizes: list[int] = []
    done = loop.create_future()

    def on_batch(b: BatchBuffers, n: int) -> None:
        sizes.append(n)
        seqs.extend(b.buf[:n, :2].copy().view(">u2")[:, 0].tolist())
        if len(seqs) >= N and not done.done():
            done.set_result(None)

    reader = add_batch_reader(
        loop, rx, on_batch, buffers=BatchBuffers(32, 64), max_rounds=max_rounds
    )
    try:
        for i in range(N):
            tx.sendto(np.uint16(i).byteswap().tobytes() + b"x" * 10, rx.getsockname())
        await asyncio.wait_for(done, 10)
    finally:
        reader.close()
        reader.close()  # idempotent
        rx.close()
        tx.close()
    return seqs, sizes


@pytest.mark.parametrize("max_rounds", [1, 16])
async def test_reader_on_default_loop(max_rounds):
    seqs, sizes = await _relay_count(max_rounds)
    assert seqs == list(range(N))
    assert max(sizes) <= 32 and sum(sizes) == N


def test_reader_on_uvloop():
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        seqs, sizes = runner.run(_relay_count(16))
    assert seqs == list(range(N))
    assert sum(sizes) == N
