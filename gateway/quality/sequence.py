"""RFC 3550 A.1 sequence validation and A.3 loss accounting, batch-vectorized.

Rules (RFC 3550 appendix A.1, constants as in the RFC and pjmedia's rtp.c):

* A new source is on probation: it becomes valid when a packet arrives whose
  seq equals the previous packet's seq + 1 (compared as integers: the C code
  compares `seq == s->max_seq + 1` with int promotion, so 65535 -> 0 does not end
  probation). Probation packets are not counted; the packet that ends probation
  calls init_seq (base_seq = its seq) and is the first one counted.
* After that, with udelta = (seq - max_seq) mod 2^16:
  - udelta < MAX_DROPOUT: in order with a permissible gap; a smaller seq means
    the 16-bit counter wrapped (cycles += 2^16);
  - udelta <= 2^16 - MAX_MISORDER: a big jump; not counted, unless seq equals
    bad_seq (the successor of the previous big jump), which re-syncs (init_seq);
  - otherwise a duplicate or late packet: counted (so loss can go negative).
* A.3: expected = extended max - base_seq + 1, lost = expected - received.

Vectorization, in three tiers; every segment (one per stream) of a batch goes
through each tier in one NumPy pass, and the result equals the literal scalar
port (tests/quality/reference.py) exactly:

1. Probation prefix: the first index whose seq is the previous + 1, found with
   one comparison over the first rows of each new stream.
2. Fast path (`_fast`), the common case: 16-bit steps between consecutive rows.
   Rows 1..MAX_DROPOUT-1 ahead of their predecessor advance the max; the rare
   other rows ("candidates") are accepted when they prove to be late or
   duplicate packets (within MAX_MISORDER behind the max, summing the 16-bit
   steps since the last advancing row, which is exact modulo 2^16 as A.1 is)
   and the row after them is again ahead. Loss runs, duplicates and reorders
   come from the few candidate and jump positions only.
3. General path (`_common`), for segments the fast path declines: unwrap with
   cumulative sums of the 16-bit differences, running maximum by
   `maximum.accumulate` (segments kept apart by an offset), branch check
   afterwards; the first row failing it is a big jump, handled by the literal
   scalar rule before the vector pass resumes on the rest of that segment.

Extra counts, our definitions (not in RFC 3550):
* duplicate: a counted packet whose extended seq was already counted;
* reordered: a counted late packet (e < M_before) that is not a duplicate;
* loss runs for burst metrics: each advance of the max by d >= 2 is a run of
  d - 1 provisionally lost packets after the received ones since the last run
  (late arrivals do not shorten runs already recorded).
"""

from __future__ import annotations

import numpy as np

MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
RTP_SEQ_MOD = 1 << 16
WINDOW = 128  # bits of duplicate history kept behind the max (> MAX_MISORDER)

_BIG = np.int64(1) << np.int64(40)  # separates segments for the segmented cummax


class SeqTable:
    """Per-stream A.1 state as parallel arrays (struct of arrays), index = stream id."""

    __slots__ = (
        "bad_seq",
        "base_seq",
        "duplicates",
        "expected_prior",
        "ext_max",
        "init",
        "loss_runs",
        "n",
        "newmax",
        "probation",
        "received",
        "received_prior",
        "recv_since_loss",
        "reordered",
        "run_events",
        "seen",
        "seq_lost",
    )

    def __init__(self, capacity: int = 16) -> None:
        self.n = 0
        self.init = np.zeros(capacity, bool)
        self.probation = np.full(capacity, MIN_SEQUENTIAL, np.int8)
        self.ext_max = np.zeros(capacity, np.int64)  # cycles + max_seq
        self.base_seq = np.zeros(capacity, np.int64)
        self.bad_seq = np.full(capacity, RTP_SEQ_MOD + 1, np.int64)
        self.received = np.zeros(capacity, np.int64)
        self.received_prior = np.zeros(capacity, np.int64)
        self.expected_prior = np.zeros(capacity, np.int64)
        self.duplicates = np.zeros(capacity, np.int64)
        self.reordered = np.zeros(capacity, np.int64)
        # duplicate history: 128 bits per stream in two words, bit k: ext_max - k counted
        self.seen = np.zeros((capacity, 2), np.uint64)
        self.newmax = np.zeros(capacity, np.int64)  # packets that advanced the max
        self.seq_lost = np.zeros(capacity, np.int64)  # sum of run lengths
        self.loss_runs = np.zeros(capacity, np.int64)
        self.recv_since_loss = np.zeros(capacity, np.int64)
        # per stream: list of (gap_before, run_length) int64 arrays, for RFC 3611 densities
        self.run_events: list[list[np.ndarray]] = [[] for _ in range(capacity)]

    def grow(self, n: int) -> None:
        """Make room for stream ids < n."""
        cap = len(self.init)
        if n > cap:
            new = max(n, 2 * cap)
            for name in self.__slots__:
                if name in ("n", "run_events"):
                    continue
                old = getattr(self, name)
                arr = np.zeros((new,) + old.shape[1:], old.dtype)
                if name == "probation":
                    arr[:] = MIN_SEQUENTIAL
                elif name == "bad_seq":
                    arr[:] = RTP_SEQ_MOD + 1
                arr[:cap] = old
                setattr(self, name, arr)
            self.run_events.extend([] for _ in range(new - cap))
        self.n = max(self.n, n)

    def reset(self, sid: int) -> None:
        """Return one stream's slot to its new-source state (the slot is being reused)."""
        for name in self.__slots__:
            if name in ("n", "run_events"):
                continue
            getattr(self, name)[sid] = 0
        self.probation[sid] = MIN_SEQUENTIAL
        self.bad_seq[sid] = RTP_SEQ_MOD + 1
        self.run_events[sid] = []

    def state_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays native/rtpstats.c reads and writes, in its order."""
        return (
            self.init, self.probation, self.ext_max, self.base_seq, self.bad_seq, self.received,
            self.received_prior, self.expected_prior, self.duplicates, self.reordered, self.seen,
            self.newmax, self.seq_lost, self.loss_runs, self.recv_since_loss,
        )  # fmt: skip

    # --- A.1 init_seq, applied to stream ids (vectorized over an index array) ---
    def _init_seq(self, sids: np.ndarray, seq: np.ndarray) -> None:
        self.base_seq[sids] = seq
        self.ext_max[sids] = seq
        self.bad_seq[sids] = RTP_SEQ_MOD + 1
        self.received[sids] = 0
        self.received_prior[sids] = 0
        self.expected_prior[sids] = 0
        self.seen[sids] = 0

    # --- A.3 ---
    def expected(self) -> np.ndarray:
        n = self.n
        exp = self.ext_max[:n] - self.base_seq[:n] + 1
        return np.where(self.init[:n] & (self.probation[:n] == 0), exp, 0)

    def take_interval(self, sid: int) -> tuple[int, int, int]:
        """A.3 interval figures for an RR; advances the priors.

        Returns (fraction_lost_8bit, expected_interval, lost_interval)."""
        if not self.init[sid] or self.probation[sid]:
            return 0, 0, 0
        expected = int(self.ext_max[sid] - self.base_seq[sid] + 1)
        exp_int = expected - int(self.expected_prior[sid])
        self.expected_prior[sid] = expected
        rec_int = int(self.received[sid] - self.received_prior[sid])
        self.received_prior[sid] = self.received[sid]
        lost_int = exp_int - rec_int
        fraction = 0 if exp_int == 0 or lost_int <= 0 else (lost_int << 8) // exp_int
        return fraction, exp_int, lost_int

    # --- the batch update ---
    def update(self, sids: np.ndarray, starts: np.ndarray, seq16: np.ndarray) -> None:
        """Feed packets in arrival order. seq16: the batch's seq column (uint16),
        grouped so that stream sids[i] owns seq16[starts[i]:starts[i+1]]."""
        seq = np.ascontiguousarray(seq16, dtype=np.uint16)
        begin = starts[:-1].astype(np.int64)
        end = starts[1:].astype(np.int64)
        keep = end > begin
        sids, begin, end = sids[keep], begin[keep], end[keep]
        if not len(sids):
            return
        window = 8
        while True:
            pending = (~self.init[sids] | (self.probation[sids] > 0)) & (begin < end)
            if not pending.any():
                break
            begin = self._probation(sids, begin, np.minimum(end, begin + window), seq)
            window *= 4
        slow = self._fast(sids, begin, end, seq)
        sids, begin, end = sids[slow], begin[slow], end[slow]
        while len(sids):
            live = begin < end
            sids, begin, end = sids[live], begin[live], end[live]
            if not len(sids):
                break
            abn = self._common(sids, begin, end, seq)
            hit = abn < end
            for s, i in zip(sids[hit].tolist(), abn[hit].tolist(), strict=True):
                self._big_jump(s, int(seq[i]))
            begin = np.where(hit, abn + 1, end)

    def _fast(self, sids: np.ndarray, begin: np.ndarray, end: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """The common case, vectorized over whole segments. "Kept" packets are
        1..MAX_DROPOUT-1 ahead of their predecessor (the first: of the stored max);
        the others ("candidates", rare) must turn out to be late or duplicate
        packets: within MAX_MISORDER behind the max, the packet after them again
        1..MAX_DROPOUT-1 ahead of the max, the segment's last packet kept. Then the
        kept packets are exactly the ones advancing the max and every packet is
        counted. Applies such segments; returns a mask of the others."""
        S = len(sids)
        starts0 = np.empty(S, np.int64)  # where each segment's rows begin
        starts0[0] = 0
        starts0[1:] = end[:-1]
        hi = int(end[-1])
        dw = np.empty(hi, np.uint16)
        np.subtract(seq[1:hi], seq[: hi - 1], out=dw[1:])
        rb = begin
        live = begin < end
        dw[rb[live]] = seq[begin[live]] - (self.ext_max[sids[live]] & 0xFFFF).astype(np.uint16)
        # probation prefixes look like +1 steps and are taken out of the sums below
        prefix = begin - starts0
        if prefix.any():
            for b0, b1 in zip(starts0[prefix > 0].tolist(), begin[prefix > 0].tolist(), strict=True):
                dw[b0:b1] = 1
        sdw = dw.view(np.int16)  # the step modulo 2^16, as a signed value
        cand = (dw - np.uint16(1)) >= np.uint16(MAX_DROPOUT - 1)
        n_rows = end - begin
        fast = live.copy()
        cpos = np.zeros(0, np.int64)
        if cand.any():
            cpos = np.flatnonzero(cand)
            cseg = np.searchsorted(starts0, cpos, side="right") - 1
            ncand = np.bincount(cseg, minlength=S)
            fast &= ncand * 8 <= n_rows
            fast[cseg[cpos == end[cseg] - 1]] = False  # the last packet must be kept
            cpos = cpos[fast[cseg]]
        late = None
        if len(cpos):
            late = _Lates(cpos, starts0, rb, sdw, cand)
            fast[late.bad_segments] = False
            late.restrict(fast)
        if not fast.any():
            return live
        f = np.flatnonzero(fast)
        fs = sids[f]
        n_new = n_rows[f]
        ncand_f = late.count_per_segment(f, S) if late else np.zeros(len(f), np.int64)
        gain = np.add.reduceat(sdw, starts0, dtype=np.int64)[f] - prefix[f]
        m0 = self.ext_max[fs]
        self.received[fs] += n_new
        self.newmax[fs] += n_new - ncand_f
        if late is not None:
            self.duplicates[fs] += late.dups_per_segment(f, S, self.seen, sids)
            self.reordered[fs] += late.reorders_per_segment(f, S)
        # loss runs: kept packets stepping 2 or more ahead of the max
        jumps = np.flatnonzero((dw >= 2) & ~cand)
        steps = dw[jumps].astype(np.int64)
        if late is not None and len(late.after):
            regular = ~np.isin(jumps, late.after)
            jumps = np.concatenate([jumps[regular], late.after[late.after_step >= 2]])
            steps = np.concatenate([steps[regular], late.after_step[late.after_step >= 2]])
            order = np.argsort(jumps, kind="stable")
            jumps, steps = jumps[order], steps[order]
        if len(jumps):
            jseg = np.searchsorted(starts0, jumps, side="right") - 1
            keepj = fast[jseg]
            jumps, steps, jseg = jumps[keepj], steps[keepj], jseg[keepj]
        if len(jumps):
            fpos = np.cumsum(fast) - 1  # index among fast segments
            jf = fpos[jseg]
            length = steps - 1
            rank = jumps - rb[jseg]  # rank among the kept packets of the segment
            if late is not None:
                rank -= np.searchsorted(late.cpos, jumps) - np.searchsorted(late.cpos, rb[jseg])
            gap = np.empty(len(jumps), np.int64)
            gap[1:] = rank[1:] - rank[:-1]
            first = np.ones(len(jumps), bool)
            first[1:] = jseg[1:] != jseg[:-1]
            gap[first] = self.recv_since_loss[sids[jseg[first]]] + rank[first]
            nrun = np.bincount(jf, minlength=len(fs))
            self.loss_runs[fs] += nrun
            self.seq_lost[fs] += np.bincount(jf, weights=length, minlength=len(fs)).astype(np.int64)
            last = np.zeros(len(fs), np.int64)
            last[jf] = rank
            kept = n_new - ncand_f
            self.recv_since_loss[fs] = np.where(nrun > 0, kept - last, self.recv_since_loss[fs] + kept)
            ev = np.stack([gap, length], axis=1)
            bounds = np.searchsorted(jf, np.arange(len(fs) + 1))
            for j in np.flatnonzero(nrun).tolist():
                self.run_events[int(fs[j])].append(ev[bounds[j] : bounds[j + 1]])
        else:
            self.recv_since_loss[fs] += n_new - ncand_f
        # duplicate-history bitmap: old bits shifted by the advance, plus the last packets
        k = np.arange(WINDOW)
        pos = end[f][:, None] - 1 - k[None, :]  # the last WINDOW rows, newest first
        inside = pos >= rb[f][:, None]
        st = np.where(inside, sdw[np.maximum(pos, 0)], 0).astype(np.int64)
        back = np.cumsum(st, axis=1) - st  # new max - ext of that row
        self.seen[fs] = _hist_shift(self.seen[fs], gain) | _hist_bits(back, inside)
        self.ext_max[fs] = m0 + gain
        return live & ~fast

    def _probation(self, sids: np.ndarray, begin: np.ndarray, end: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Consume the probation prefix of every segment; return new begins."""
        on = (~self.init[sids] | (self.probation[sids] > 0)) & (begin < end)
        if not on.any():
            return begin
        ps, pb, pe = sids[on], begin[on], end[on]
        counts = pe - pb
        np.repeat(np.arange(len(ps)), counts)
        idx = concat_ranges(pb, counts)
        s = seq[idx].astype(np.int64)
        first = np.zeros(len(idx), bool)
        first[np.cumsum(counts)[:-1]] = True
        first[0] = True
        prev = np.empty_like(s)
        prev[1:] = s[:-1]
        # at a segment start: the stored max_seq for streams already on probation
        was_init = self.init[ps]
        prev[first] = np.where(was_init, self.ext_max[ps] & 0xFFFF, -2)
        cond = s == prev + 1  # integer compare, as in the C code
        cond[first] &= was_init
        pos = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = np.where(cond, pos, np.iinfo(np.int64).max)
        firsthit = np.minimum.reduceat(cand, np.cumsum(counts) - counts)
        ended = firsthit < counts
        # streams that stay on probation: max_seq = last seq seen
        stay = ~ended
        st = ps[stay]
        self.init[st] = True
        self.probation[st] = MIN_SEQUENTIAL - 1
        self.ext_max[st] = seq[pe[stay] - 1]
        # streams whose probation ends at firsthit: init_seq + received = 1
        en = ps[ended]
        at = pb[ended] + firsthit[ended]
        self.init[en] = True
        self.probation[en] = 0
        self._init_seq(en, seq[at])
        self.received[en] = 1
        self.seen[en, 0] = 1
        self.recv_since_loss[en] += 1
        self.newmax[en] += 1
        newbegin = begin.copy()
        nb = newbegin[on]
        nb[stay] = pe[stay]
        nb[ended] = at + 1
        newbegin[on] = nb
        return newbegin

    def _big_jump(self, sid: int, s: int) -> None:
        """The literal A.1 big-jump branch (udelta in [MAX_DROPOUT, 2^16 - MAX_MISORDER])."""
        if s == self.bad_seq[sid]:
            ids = np.array([sid])
            self._init_seq(ids, np.array([s]))
            self.received[sid] = 1
            self.seen[sid, 0] = 1
            self.newmax[sid] += 1
            self.recv_since_loss[sid] += 1
        else:
            self.bad_seq[sid] = (s + 1) & (RTP_SEQ_MOD - 1)

    def _common(self, sids: np.ndarray, begin: np.ndarray, end: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Vector pass over established streams; returns the index of the first
        packet not on the common path per segment (== end if none)."""
        counts = end - begin
        S = len(sids)
        offs = np.cumsum(counts) - counts
        contiguous = S == 1 or bool(np.all(begin[1:] == end[:-1]))
        if contiguous:
            lo = int(begin[0])
            s = seq[lo : int(end[-1])].astype(np.int64)
        else:
            s = seq[concat_ranges(begin, counts)].astype(np.int64)
        n = len(s)
        seg = np.repeat(np.arange(S, dtype=np.int64), counts)
        m0 = self.ext_max[sids]
        # nearest-value 16-bit unwrap relative to the previous packet (or the max)
        prev = np.empty(n, np.int64)
        prev[1:] = s[:-1]
        prev[offs] = m0 & 0xFFFF
        dw = ((s - prev + 32768) & 0xFFFF) - 32768
        cs = np.cumsum(dw)
        rel = cs - np.repeat(cs[offs] - dw[offs], counts)  # ext - m0
        v = rel + seg * _BIG  # segments kept apart for one global cummax
        cm = np.maximum.accumulate(v)
        segbase = seg * _BIG
        mb = np.empty(n, np.int64)  # running max before each packet (relative, with offset)
        mb[1:] = cm[:-1]
        mb[offs] = segbase[offs]
        mb = np.maximum(mb, segbase)
        d = v - mb
        normal = (d > -MAX_MISORDER) & (d < MAX_DROPOUT)
        pos = np.arange(n, dtype=np.int64) - np.repeat(offs, counts)
        bad = np.where(normal, np.iinfo(np.int64).max, pos)
        firstbad = np.minimum.reduceat(bad, offs)
        firstbad = np.minimum(firstbad, counts)
        valid = pos < np.repeat(firstbad, counts)

        ncount = firstbad
        self.received[sids] += ncount
        # new max per segment: max of valid rel (>= 0 because mb starts at 0)
        relv = np.where(valid, rel, 0)
        newrel = np.maximum.reduceat(relv, offs)
        newrel = np.maximum(newrel, 0)
        adv = valid & (d >= 1)
        dup0 = valid & (d == 0)
        late = valid & (d < 0)
        ndup = np.bincount(seg[dup0], minlength=S)
        nlate = np.bincount(seg[late], minlength=S)
        if nlate.any():
            li = np.nonzero(late)[0]
            lv = v[li]
            av = v[adv]
            k = np.searchsorted(av, lv)
            k = np.minimum(k, max(len(av) - 1, 0))
            isdup = (av[k] == lv) if len(av) else np.zeros(len(li), bool)
            # late vs late: later copies of the same value are duplicates
            _, firstocc = np.unique(lv, return_index=True)
            repeat = np.ones(len(li), bool)
            repeat[firstocc] = False
            isdup |= repeat
            # history bitmap of the previous batches
            back = -rel[li]  # m0 - ext (negative: above m0, seen only in this pass)
            inwin = (back >= 0) & (back < WINDOW)
            lsid = sids[seg[li]]
            hist = np.zeros(len(li), bool)
            hist[inwin] = _hist_test(self.seen[lsid[inwin]], back[inwin])
            isdup |= hist
            ndup += np.bincount(seg[li[isdup]], minlength=S)
            nre = np.bincount(seg[li[~isdup]], minlength=S)
            self.reordered[sids] += nre
        self.duplicates[sids] += ndup

        # loss runs (advance by d >= 2) and received-since-loss bookkeeping
        nadv = np.bincount(seg[adv], minlength=S)
        runs = adv & (d >= 2)
        if runs.any():
            ai = np.nonzero(adv)[0]
            advrank = np.cumsum(adv) - 1  # rank among advancing packets (global)
            aseg = seg[ai]
            firstadv = np.full(S, -1, np.int64)
            # first advancing rank of each segment
            has = nadv > 0
            firstadv[has] = advrank[ai[np.searchsorted(aseg, np.nonzero(has)[0])]]
            ri = np.nonzero(runs)[0]
            rseg = seg[ri]
            rrank = advrank[ri]
            gap = np.empty(len(ri), np.int64)
            gap[1:] = rrank[1:] - rrank[:-1]
            newseg = np.ones(len(ri), bool)
            newseg[1:] = rseg[1:] != rseg[:-1]
            gap[newseg] = self.recv_since_loss[sids[rseg[newseg]]] + rrank[newseg] - firstadv[rseg[newseg]]
            length = d[ri] - 1
            self.seq_lost[sids] += np.bincount(rseg, weights=length, minlength=S).astype(np.int64)
            nrun = np.bincount(rseg, minlength=S)
            self.loss_runs[sids] += nrun
            # received since the last run, at the end of the pass
            lastrun = np.full(S, -1, np.int64)
            lastrun[rseg] = rrank  # the last assignment wins for repeated indices
            lastadv = firstadv + nadv - 1
            tail = lastadv - lastrun + 1
            withrun = nrun > 0
            rs = self.recv_since_loss[sids]
            rs = np.where(withrun, tail, rs + nadv)
            self.recv_since_loss[sids] = rs
            ev = np.stack([gap, length], axis=1)
            bounds = np.searchsorted(rseg, np.arange(S + 1))
            for j in np.nonzero(withrun)[0].tolist():
                self.run_events[int(sids[j])].append(ev[bounds[j] : bounds[j + 1]])
        else:
            self.recv_since_loss[sids] += nadv
        self.newmax[sids] += nadv

        # duplicate-history bitmap, re-anchored at the new max
        new = _hist_shift(self.seen[sids], newrel)
        back = np.repeat(newrel, counts) - rel
        mark = valid & (back >= 0) & (back < WINDOW)
        b = back[mark].astype(np.uint64)
        bits = _ONE << (b & np.uint64(63))
        low = b < 64
        np.bitwise_or.at(new[:, 0], seg[mark][low], bits[low])
        np.bitwise_or.at(new[:, 1], seg[mark][~low], bits[~low])
        self.seen[sids] = new
        self.ext_max[sids] = m0 + newrel
        return begin + firstbad


def concat_ranges(begin: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(b, b + c) for each (b, c), vectorized."""
    total = int(counts.sum())
    offs = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offs - begin, counts)


class _Lates:
    """Late / duplicate packets ("candidates") inside otherwise in-order segments.

    For candidate c in a run of consecutive candidates starting after kept packet
    pk, d = ext(c) - ext(pk) is the sum of the 16-bit steps since pk (A.1 only
    looks at seq modulo 2^16, so this is exact); c takes the duplicate/reorder
    branch iff -MAX_MISORDER < d <= 0. The kept packet after the run is ahead of
    the max by the run's sum plus its own step. A candidate is a duplicate if
    d == 0 or an earlier packet had the same extended seq: searched among the
    WINDOW rows before it (any such packet is at most MAX_MISORDER kept packets
    back, so the window suffices when it holds >= MAX_MISORDER kept rows or
    reaches the segment start; segments where it does not go the general way)
    and in the history bitmap."""

    def __init__(self, cpos, starts0, rb, sdw, cand) -> None:
        cseg = np.searchsorted(starts0, cpos, side="right") - 1
        run_start = np.ones(len(cpos), bool)
        run_start[1:] = (cpos[1:] != cpos[:-1] + 1) | (cseg[1:] != cseg[:-1])
        rid = np.cumsum(run_start) - 1
        sv = sdw[cpos].astype(np.int64)
        cs = np.cumsum(sv)
        d = cs - (cs - sv)[run_start][rid]
        run_end = np.ones(len(cpos), bool)
        run_end[:-1] = run_start[1:]
        after = cpos[run_end] + 1  # exists: a segment's last packet is kept
        after_step = d[run_end] + sdw[after].astype(np.int64)
        bad = ~((d > -MAX_MISORDER) & (d <= 0))
        bad_after = ~((after_step >= 1) & (after_step < MAX_DROPOUT))
        # duplicate search among earlier rows: narrow window first, wide for the rest
        seen, resolved, reaches, rel = _window_search(cpos, rb[cseg], sdw, cand, 16)
        wide = np.flatnonzero(~resolved)
        if len(wide):
            w = _window_search(cpos[wide], rb[cseg[wide]], sdw, cand, WINDOW)
            seen[wide], resolved[wide], reaches[wide], rel[wide] = w
        bad |= ~resolved
        self.bad_segments = np.unique(np.concatenate([cseg[bad], cseg[run_end][bad_after]]))
        self.cpos, self.cseg, self.d = cpos, cseg, d
        self.aseg, self.after, self.after_step = cseg[run_end], after, after_step
        self.seen_in_batch = seen
        self.reaches = reaches  # the window reached the segment start: rel = ext(c) - m0
        self.rel = rel
        self.isdup = np.zeros(len(cpos), bool)

    def restrict(self, fast: np.ndarray) -> None:
        keep = fast[self.cseg]
        for name in ("cpos", "cseg", "d", "seen_in_batch", "reaches", "rel", "isdup"):
            setattr(self, name, getattr(self, name)[keep])
        akeep = fast[self.aseg]
        for name in ("aseg", "after", "after_step"):
            setattr(self, name, getattr(self, name)[akeep])

    def count_per_segment(self, f: np.ndarray, S: int) -> np.ndarray:
        return np.bincount(self.cseg, minlength=S)[f]

    def dups_per_segment(self, f, S, seen, sids) -> np.ndarray:
        dup = (self.d == 0) | self.seen_in_batch
        h = np.flatnonzero(self.reaches & (self.rel <= 0) & (self.rel > -WINDOW))
        if len(h):
            dup[h] |= _hist_test(seen[sids[self.cseg[h]]], -self.rel[h])
        self.isdup = dup
        return np.bincount(self.cseg[dup], minlength=S)[f]

    def reorders_per_segment(self, f, S) -> np.ndarray:
        return np.bincount(self.cseg[~self.isdup], minlength=S)[f]


def _window_search(cpos, seg_rb, sdw, cand, width):
    """Look for an earlier row with the same extended seq among the `width` rows
    before each candidate. ext(c) - ext(c - k) is the sum of the steps of rows
    c-k+1 .. c. The search is complete ("resolved") once it meets a kept row below
    ext(c) (kept rows only rise, and any earlier row is below that one) or the
    segment start (then rel = ext(c) - stored max, for the history bitmap)."""
    k = np.arange(1, width + 1)
    wpos = cpos[:, None] - k[None, :]
    inwin = wpos >= seg_rb[:, None]
    steps = np.where(inwin, sdw[np.maximum(wpos + 1, 0)], 0).astype(np.int64)
    diff = np.cumsum(steps, axis=1)
    kept = inwin & ~cand[np.maximum(wpos, 0)]
    below = (kept & (diff > 0)).any(axis=1)
    reaches = cpos - width <= seg_rb
    seen = (inwin & (diff == 0)).any(axis=1)
    rel = diff[:, -1] + sdw[seg_rb].astype(np.int64)
    return seen, below | reaches, reaches & ~below, rel


_ONE = np.uint64(1)
_ZERO = np.uint64(0)


def _hist_shift(words: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """128-bit histories (n, 2 words, low first) re-anchored at a max higher by
    shift >= 0: bit k moves to k + shift, bits past 127 fall off."""
    lo, hi = words[:, 0], words[:, 1]
    g = np.minimum(shift, 128).astype(np.uint64)
    small = g < 64
    gs = np.where(small, g, _ZERO)  # shift amount when under 64
    gb = np.minimum(np.maximum(g, np.uint64(64)), np.uint64(127)) - np.uint64(64)  # else
    carry = (lo >> _ONE) >> (np.uint64(63) - gs)  # lo >> (64 - g), also for g = 0
    out = np.empty_like(words)
    out[:, 0] = np.where(small, lo << gs, _ZERO)
    out[:, 1] = np.where(small, (hi << gs) | carry, np.where(g < 128, lo << gb, _ZERO))
    return out


def _hist_bits(back: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Histories with bit back[i, j] set for each masked entry with 0 <= back < 128."""
    ok = mask & (back >= 0) & (back < WINDOW)
    b = np.where(ok, back, 0).astype(np.uint64)
    bit = _ONE << (b & np.uint64(63))
    out = np.empty((len(back), 2), np.uint64)
    out[:, 0] = np.bitwise_or.reduce(np.where(ok & (b < 64), bit, _ZERO), axis=1)
    out[:, 1] = np.bitwise_or.reduce(np.where(ok & (b >= 64), bit, _ZERO), axis=1)
    return out


def _hist_test(words: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Whether bit back (0..127) is set in each history row."""
    b = back.astype(np.uint64)
    w = np.where(b < 64, words[:, 0], words[:, 1])
    return ((w >> (b & np.uint64(63))) & _ONE) == _ONE
