/*
 * gateway._udpbatch.rtp_stats: the quality engine's per-stream loop (RFC 3550 A.1 and A.8).
 *
 * Part of the gateway._udpbatch module (native/udpbatch.c adds it at module exec).
 * The NumPy twin is the engine's vectorized path (gateway/quality/sequence.py and
 * engine.py `_jitter`); both equal the literal per-packet port in
 * tests/quality/reference.py, this one by construction: it is that loop.
 *
 *   rtp_stats(parts, sids, seq_state, jit_state, events, rate_table) -> n_events
 *
 * parts: a sequence of 1-D PACKET_DTYPE arrays (22 packed bytes a row, see
 *        gateway/quality/records.py), one stream each, rows in arrival order.
 * sids:  int64 array, the stream id (state row) of each part; distinct.
 * seq_state: the SeqTable arrays, in this order: init (bool), probation (int8),
 *        ext_max, base_seq, bad_seq, received, received_prior, expected_prior,
 *        duplicates, reordered (int64), seen (uint64, 2 words a stream: bit k =
 *        ext_max - k counted), newmax, seq_lost, loss_runs, recv_since_loss (int64).
 * jit_state: the jitter table arrays: rate, jit, jit_max, jit_sum (float64), jit_n,
 *        last_arr, last_ts (int64), has_last (bool), max_delta, packets, bytes (int64),
 *        pt (int16; -1 until the stream's first row, which sets it and, when rate is
 *        0, rate = rate_table[pt]: float64 x 128, the static payload types' rates).
 * events: int64 (N, 3) output, N >= total rows: one (part index, received since the
 *        previous loss run, run length) per loss run, in order.
 *
 * State is read and written in place; the loop runs without the GIL. Bad
 * arguments raise TypeError/ValueError before any state changes.
 */
#define _GNU_SOURCE
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define MIN_SEQUENTIAL 2
#define RTP_SEQ_MOD 65536
#define REC_SIZE 22

enum { S_INIT, S_PROB, S_EXT, S_BASE, S_BAD, S_RECV, S_RPRIOR, S_EPRIOR, S_DUP, S_REORD,
       S_SEEN, S_NEWMAX, S_LOST, S_RUNS, S_RSL, N_SEQ };
enum { J_RATE, J_JIT, J_MAX, J_SUM, J_N, J_LARR, J_LTS, J_HAS, J_MDELTA, J_PKTS, J_BYTES, J_PT,
       N_JIT };

static const Py_ssize_t seq_size[N_SEQ] = {1, 1, 8, 8, 8, 8, 8, 8, 8, 8, 16, 8, 8, 8, 8};
static const Py_ssize_t jit_size[N_JIT] = {8, 8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 2};

typedef struct {
    uint8_t *init;
    int8_t *prob;
    int64_t *ext, *base, *bad, *recv, *rprior, *eprior, *dup, *reord;
    uint64_t *seen;
    int64_t *newmax, *lost, *runs, *rsl;
    double *rate, *jit, *jmax, *jsum;
    int64_t *jn, *larr, *lts;
    uint8_t *has;
    int64_t *mdelta, *pkts, *bytes;
    int16_t *pt;
    const double *rate_table;
} State;

static inline uint16_t
rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline int64_t
rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | p[k];
    return (int64_t)v;
}

/* One stream's A.1 state, copied into locals for the loop (no aliasing between arrays). */
typedef struct {
    int64_t ext, base, bad, recv, rprior, eprior, dup, reord, newmax, lost, runs, rsl;
    uint64_t seen0, seen1;
    int prob;
} Seq;

static inline void
init_seq(Seq *q, int64_t seq)
{
    q->base = seq;
    q->ext = seq;
    q->bad = RTP_SEQ_MOD + 1;
    q->recv = 0;
    q->rprior = 0;
    q->eprior = 0;
    q->seen0 = q->seen1 = 0;
}

/* The packet that becomes the first counted one after init_seq (probation end, restart). */
static inline void
first_counted(Seq *q)
{
    q->recv = 1;
    q->seen0 = 1;
    q->newmax++;
    q->rsl++;
}

/* RFC 3550 A.1 update_seq with the engine's extra counts; ev: loss-run output. */
static inline void
update_seq(Seq *q, int64_t seq, int64_t part, int64_t *ev, Py_ssize_t *n_ev)
{
    int64_t ext = q->ext;
    int64_t max_seq = ext & 0xFFFF;
    int64_t udelta = (seq - max_seq) & 0xFFFF;
    if (q->prob > 0) {
        if (seq == max_seq + 1) { /* integer compare: 65535 -> 0 does not end probation */
            q->prob--;
            q->ext = seq;
            if (q->prob == 0) {
                init_seq(q, seq);
                first_counted(q);
            }
        } else {
            q->prob = MIN_SEQUENTIAL - 1;
            q->ext = seq;
        }
        return;
    }
    if (udelta < MAX_DROPOUT) {
        if (udelta == 0) {
            q->dup++;
        } else {
            /* seq < max_seq means the 16-bit counter wrapped: ext advances by udelta */
            if (udelta >= 2) {
                int64_t *e = ev + 3 * *n_ev;
                e[0] = part;
                e[1] = q->rsl;
                e[2] = udelta - 1;
                (*n_ev)++;
                q->runs++;
                q->lost += udelta - 1;
                q->rsl = 0;
            }
            q->ext = ext + udelta;
            if (udelta >= 128) {
                q->seen0 = q->seen1 = 0;
            } else if (udelta >= 64) {
                q->seen1 = q->seen0 << (udelta - 64);
                q->seen0 = 0;
            } else {
                q->seen1 = (q->seen1 << udelta) | (q->seen0 >> (64 - udelta));
                q->seen0 <<= udelta;
            }
            q->seen0 |= 1;
            q->newmax++;
            q->rsl++;
        }
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
        if (seq == q->bad) {
            init_seq(q, seq);
            first_counted(q);
            return;
        }
        q->bad = (seq + 1) & (RTP_SEQ_MOD - 1);
        return;
    } else {
        int64_t back = RTP_SEQ_MOD - udelta; /* 1 .. MAX_MISORDER - 1 below the max */
        uint64_t *w = back >= 64 ? &q->seen1 : &q->seen0;
        uint64_t bit = (uint64_t)1 << (back & 63);
        if (*w & bit) {
            q->dup++;
        } else {
            q->reord++;
            *w |= bit;
        }
    }
    q->recv++;
}

static void
run_part(State *st, int64_t s, const unsigned char *rec, Py_ssize_t n, int64_t part, int64_t *ev,
         Py_ssize_t *n_ev)
{
    Seq q = {
        .ext = st->ext[s], .base = st->base[s], .bad = st->bad[s], .recv = st->recv[s],
        .rprior = st->rprior[s], .eprior = st->eprior[s], .dup = st->dup[s],
        .reord = st->reord[s], .newmax = st->newmax[s], .lost = st->lost[s],
        .runs = st->runs[s], .rsl = st->rsl[s], .seen0 = st->seen[2 * s],
        .seen1 = st->seen[2 * s + 1], .prob = st->prob[s],
    };
    double rate = st->rate[s], jit = st->jit[s], jmax = st->jmax[s], jsum = st->jsum[s];
    int64_t jn = st->jn[s], mdelta = st->mdelta[s], nbytes = 0;
    int has = st->has[s];
    int64_t pa = st->larr[s];
    uint32_t pts = (uint32_t)st->lts[s];
    Py_ssize_t i = 0;
    if (n > 0 && st->pt[s] < 0) { /* the stream's first rows: PT, and a static rate if unset */
        st->pt[s] = rec[18];
        if (rate == 0.0)
            rate = st->rate[s] = rec[18] < 128 ? st->rate_table[rec[18]] : 0.0;
    }
    if (n > 0 && !st->init[s]) { /* a new source: init_seq, max_seq = seq - 1, probation */
        int64_t seq = rd16(rec + 8);
        init_seq(&q, seq);
        q.ext = (seq - 1) & 0xFFFF;
        q.prob = MIN_SEQUENTIAL;
        st->init[s] = 1;
    }
    for (; i < n; i++, rec += REC_SIZE) {
        int64_t arrival = rd64(rec);
        uint32_t ts = rd32(rec + 10);
        update_seq(&q, rd16(rec + 8), part, ev, n_ev);
        nbytes += rd16(rec + 20);
        if (has) {
            int64_t darr = arrival - pa;
            if (darr > mdelta)
                mdelta = darr;
            if (rate != 0.0) {
                int32_t ds = (int32_t)(ts - pts);
                double d = fabs((double)darr * rate / 1e9 - (double)ds);
                jit += (1.0 / 16.0) * (d - jit);
                if (jit > jmax)
                    jmax = jit;
                jsum += jit;
                jn++;
            }
        }
        has = 1;
        pa = arrival;
        pts = ts;
    }
    st->ext[s] = q.ext;
    st->base[s] = q.base;
    st->bad[s] = q.bad;
    st->recv[s] = q.recv;
    st->rprior[s] = q.rprior;
    st->eprior[s] = q.eprior;
    st->dup[s] = q.dup;
    st->reord[s] = q.reord;
    st->newmax[s] = q.newmax;
    st->lost[s] = q.lost;
    st->runs[s] = q.runs;
    st->rsl[s] = q.rsl;
    st->seen[2 * s] = q.seen0;
    st->seen[2 * s + 1] = q.seen1;
    st->prob[s] = (int8_t)q.prob;
    st->jit[s] = jit;
    st->jmax[s] = jmax;
    st->jsum[s] = jsum;
    st->jn[s] = jn;
    st->mdelta[s] = mdelta;
    st->has[s] = (uint8_t)has;
    st->larr[s] = pa;
    st->lts[s] = (int64_t)pts;
    st->pkts[s] += n;
    st->bytes[s] += nbytes;
}

/* A struct format naming PACKET_DTYPE's fields in order (NumPy's type codes in it vary
 * with the data's alignment, so only the names are compared; the item size is too). */
static int
is_packet_format(const char *fmt)
{
    static const char *names[] = {":arrival_ns:", ":seq:", ":ts:", ":ssrc:", ":pt:", ":marker:",
                                  ":size:"};
    if (fmt == NULL || strncmp(fmt, "T{", 2) != 0)
        return 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const char *at = strstr(fmt, names[k]);
        if (at == NULL)
            return 0;
        fmt = at + strlen(names[k]) - 1;
    }
    return strchr(fmt + 1, ':') == NULL; /* nothing after size */
}

/* Get a writable C-contiguous buffer of the given item size; len: its item count. */
static int
get_state(PyObject *obj, Py_ssize_t itemsize, const char *what, Py_buffer *v, Py_ssize_t *len)
{
    if (PyObject_GetBuffer(obj, v, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a writable C-contiguous array", what);
        return -1;
    }
    Py_ssize_t rowsize = v->ndim >= 1 && v->shape[0] ? v->len / v->shape[0] : v->itemsize;
    if (v->ndim < 1 || rowsize != itemsize || !PyBuffer_IsContiguous(v, 'C')) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous array of %zd-byte rows", what,
                     itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    *len = v->shape[0];
    return 0;
}

static PyObject *
rtp_stats(PyObject *self, PyObject *args)
{
    PyObject *parts_o, *sids_o, *seq_o, *jit_o, *ev_o, *rt_o;
    if (!PyArg_ParseTuple(args, "OOOOOO:rtp_stats", &parts_o, &sids_o, &seq_o, &jit_o, &ev_o,
                          &rt_o))
        return NULL;
    PyObject *parts = PySequence_Tuple(parts_o); /* limited API: no PySequence_Fast macros */
    if (parts == NULL)
        return NULL;
    PyObject *result = NULL;
    Py_buffer sv[N_SEQ], jv[N_JIT], sidv, evv, rtv;
    int n_sv = 0, n_jv = 0, have_sid = 0, have_ev = 0, have_rt = 0;
    Py_ssize_t n_parts = PyTuple_Size(parts), n_pv = 0;
    Py_buffer *pv = PyMem_Calloc(n_parts ? (size_t)n_parts : 1, sizeof(Py_buffer));
    if (pv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (!PyTuple_Check(seq_o) || PyTuple_Size(seq_o) != N_SEQ || !PyTuple_Check(jit_o) ||
        PyTuple_Size(jit_o) != N_JIT) {
        PyErr_Format(PyExc_TypeError, "seq_state and jit_state must be tuples of %d and %d arrays",
                     N_SEQ, N_JIT);
        goto done;
    }
    Py_ssize_t cap = PY_SSIZE_T_MAX, len;
    for (; n_sv < N_SEQ; n_sv++) {
        if (get_state(PyTuple_GetItem(seq_o, n_sv), seq_size[n_sv], "seq_state", &sv[n_sv],
                      &len) < 0)
            goto done;
        cap = len < cap ? len : cap;
    }
    for (; n_jv < N_JIT; n_jv++) {
        if (get_state(PyTuple_GetItem(jit_o, n_jv), jit_size[n_jv], "jit_state", &jv[n_jv],
                      &len) < 0)
            goto done;
        cap = len < cap ? len : cap;
    }
    Py_ssize_t n_sids, n_ev_cap;
    if (get_state(sids_o, 8, "sids", &sidv, &n_sids) < 0)
        goto done;
    have_sid = 1;
    if (get_state(ev_o, 24, "events", &evv, &n_ev_cap) < 0)
        goto done;
    have_ev = 1;
    Py_ssize_t n_rates;
    if (get_state(rt_o, 8, "rate_table", &rtv, &n_rates) < 0)
        goto done;
    have_rt = 1;
    if (n_rates != 128) {
        PyErr_SetString(PyExc_ValueError, "rate_table must hold 128 clock rates");
        goto done;
    }
    if (n_sids != n_parts) {
        PyErr_SetString(PyExc_ValueError, "sids must have one stream id per part");
        goto done;
    }
    const int64_t *sids = sidv.buf;
    Py_ssize_t total = 0;
    for (; n_pv < n_parts; n_pv++) {
        Py_buffer *b = &pv[n_pv];
        if (PyObject_GetBuffer(PyTuple_GetItem(parts, n_pv), b,
                               PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "parts must be 1-D PACKET_DTYPE arrays");
            goto done;
        }
        if (b->ndim != 1 || b->itemsize != REC_SIZE || !PyBuffer_IsContiguous(b, 'C') ||
            !is_packet_format(b->format)) {
            PyErr_SetString(PyExc_TypeError, "parts must be C-contiguous 1-D PACKET_DTYPE arrays");
            n_pv++;
            goto done;
        }
        if (sids[n_pv] < 0 || sids[n_pv] >= cap) {
            PyErr_Format(PyExc_ValueError, "sids[%zd]=%lld is outside the state arrays (0..%zd)",
                         n_pv, (long long)sids[n_pv], cap - 1);
            n_pv++;
            goto done;
        }
        total += b->shape[0];
    }
    if (n_ev_cap < total) {
        PyErr_Format(PyExc_ValueError, "events must hold at least %zd rows", total);
        goto done;
    }
    State st = {
        .init = sv[S_INIT].buf, .prob = sv[S_PROB].buf, .ext = sv[S_EXT].buf,
        .base = sv[S_BASE].buf, .bad = sv[S_BAD].buf, .recv = sv[S_RECV].buf,
        .rprior = sv[S_RPRIOR].buf, .eprior = sv[S_EPRIOR].buf, .dup = sv[S_DUP].buf,
        .reord = sv[S_REORD].buf, .seen = sv[S_SEEN].buf, .newmax = sv[S_NEWMAX].buf,
        .lost = sv[S_LOST].buf, .runs = sv[S_RUNS].buf, .rsl = sv[S_RSL].buf,
        .rate = jv[J_RATE].buf, .jit = jv[J_JIT].buf, .jmax = jv[J_MAX].buf,
        .jsum = jv[J_SUM].buf, .jn = jv[J_N].buf, .larr = jv[J_LARR].buf,
        .lts = jv[J_LTS].buf, .has = jv[J_HAS].buf, .mdelta = jv[J_MDELTA].buf,
        .pkts = jv[J_PKTS].buf, .bytes = jv[J_BYTES].buf, .pt = jv[J_PT].buf,
        .rate_table = rtv.buf,
    };
    Py_ssize_t n_ev = 0;
    int64_t *ev = evv.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_parts; k++)
        run_part(&st, sids[k], pv[k].buf, pv[k].shape[0], k, ev, &n_ev);
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(n_ev);
done:
    while (n_pv-- > 0)
        PyBuffer_Release(&pv[n_pv]);
    PyMem_Free(pv);
    if (have_rt)
        PyBuffer_Release(&rtv);
    if (have_ev)
        PyBuffer_Release(&evv);
    if (have_sid)
        PyBuffer_Release(&sidv);
    while (n_jv-- > 0)
        PyBuffer_Release(&jv[n_jv]);
    while (n_sv-- > 0)
        PyBuffer_Release(&sv[n_sv]);
    Py_DECREF(parts);
    return result;
}

static PyMethodDef stats_methods[] = {
    {"rtp_stats", rtp_stats, METH_VARARGS,
     "rtp_stats(parts, sids, seq_state, jit_state, events, rate_table) -> n_events"},
    {NULL, NULL, 0, NULL},
};

/* Called from gateway._udpbatch's module exec. */
int
vtcgw_rtpstats_add(PyObject *m)
{
    return PyModule_AddFunctions(m, stats_methods);
}
