"""A literal per-packet port of RFC 3550 A.1/A.3/A.8, the oracle for the engine.

Written straight from the RFC pseudocode (update_seq, init_seq, the A.3 loss
figures and the A.8 float jitter), plus the engine's documented extra counts
(duplicates, reordered, loss runs). Deliberately scalar and simple.
"""

from __future__ import annotations

MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
RTP_SEQ_MOD = 1 << 16


class RefSource:
    def __init__(self, clock_rate: int) -> None:
        self.rate = clock_rate
        self.heard = False
        # A.1 state
        self.max_seq = self.cycles = self.base_seq = self.bad_seq = 0
        self.probation = 0
        self.received = self.received_prior = self.expected_prior = 0
        # extras
        self.seen: set[int] = set()
        self.duplicates = self.reordered = 0
        self.newmax = self.seq_lost = self.loss_runs = self.recv_since_loss = 0
        self.events: list[tuple[int, int]] = []
        # A.8
        self.jitter = 0.0
        self.jit_max = 0.0
        self.jit_sum = 0.0
        self.jit_n = 0
        self.prev: tuple[int, int] | None = None
        self.max_delta_ns = 0
        self.packets = 0
        self.bytes = 0

    def init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self.seen = set()

    def _counted_new_max(self, ext: int) -> None:
        self.seen.add(ext)
        self.newmax += 1
        self.recv_since_loss += 1

    def update_seq(self, seq: int) -> int:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == self.max_seq + 1:  # int compare, as the C code does
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self.init_seq(seq)
                    self.received += 1
                    self._counted_new_max(seq)
                    return 1
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return 0
        elif udelta < MAX_DROPOUT:
            ext_before = self.cycles + self.max_seq
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
            ext = self.cycles + seq
            d = ext - ext_before
            if d == 0:
                self.duplicates += 1
            else:
                if d >= 2:
                    self.events.append((self.recv_since_loss, d - 1))
                    self.loss_runs += 1
                    self.seq_lost += d - 1
                    self.recv_since_loss = 0
                self._counted_new_max(ext)
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                self.init_seq(seq)
                self.received += 1
                self._counted_new_max(seq)
                return 1
            self.bad_seq = (seq + 1) & (RTP_SEQ_MOD - 1)
            return 0
        else:
            ext = self.cycles + self.max_seq - (RTP_SEQ_MOD - udelta)
            if ext in self.seen:
                self.duplicates += 1
            else:
                self.reordered += 1
                self.seen.add(ext)
        self.received += 1
        return 1

    def packet(self, arrival_ns: int, seq: int, ts: int, size: int = 0) -> None:
        if not self.heard:
            self.heard = True
            self.init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        self.update_seq(seq)
        self.packets += 1
        self.bytes += size
        if self.prev is not None:
            pa, pts = self.prev
            self.max_delta_ns = max(self.max_delta_ns, arrival_ns - pa)
            if self.rate:
                ds = ((ts - pts + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
                d = float(arrival_ns - pa) * self.rate / 1e9 - ds
                if d < 0:
                    d = -d
                self.jitter += (1.0 / 16.0) * (d - self.jitter)
                self.jit_max = max(self.jit_max, self.jitter)
                self.jit_sum += self.jitter
                self.jit_n += 1
        self.prev = (arrival_ns, ts)

    # A.3
    @property
    def established(self) -> bool:
        return self.heard and self.probation == 0

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1 if self.established else 0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def take_fraction(self) -> int:
        expected = self.expected
        exp_int = expected - self.expected_prior
        self.expected_prior = expected
        rec_int = self.received - self.received_prior
        self.received_prior = self.received
        lost_int = exp_int - rec_int
        return 0 if exp_int == 0 or lost_int <= 0 else (lost_int << 8) // exp_int
