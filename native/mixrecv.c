/*
 * gateway._mixrecv: the conference mix engine's per-tick receive, jitter and send steps.
 *
 * Pure-Python/NumPy twins with the identical signatures and results live in
 * gateway/rtp/tickrecv.py, which documents the arrays (one row per engine slot = one
 * conference audio leg on the fast path):
 *
 *   tick_recv(fds, expect, pt_mask, ring, ring_ext, ring_len, js, jf, logs, log_n,
 *             fb_buf, fb_len, fb_addr, fb_ts, fb_leg, fb_n, clock_offset_ns, now_ns)
 *       -> (fb_n, n_accepted, complete)
 *       For every slot with fds[i] >= 0: recvmmsg (MSG_DONTWAIT) until the socket is
 *       empty. A datagram that is plain RTP v2 (no padding, extension or CSRC) from the
 *       slot's latched source expect[i], not RTCP-mux, with pt_mask[i][pt] set, a
 *       payload of at most SLOT bytes and room in the slot's packet log, gets one
 *       PACKET_DTYPE row in logs[i, log_n[i]++] and goes into the slot's jitter ring
 *       (the JitterBuffer rules of gateway/rtp/jitter.py). Every other datagram stays
 *       in the fallback rows fb_*[fb_n..] with fb_leg = i, for the Python path.
 *       A socket is read only while the fallback rows and the slot's log have room;
 *       complete is 0 when either filled up (datagrams stay queued for the next call).
 *   tick_pull(active, js, jf, ring, ring_ext, ring_len, law, dtab, last, pcm, kind) -> None
 *       One jitter-buffer pull per active slot; PACKET rows are decoded through
 *       dtab[law[i]] into pcm[i] (zero padded), LOST rows concealed from last[i] (repeat
 *       with a fade over three frames, then silence), EMPTY rows are zero.
 *   mix_tick(pcm, kind, rows, grp, starts, talkers, quiet, lobby, extra, own, law, etab,
 *            level, sel, meeting, pkt) -> None
 *       The AudioMixer's rules for many meetings at once (rows grouped by meeting):
 *       level = mean square (0 when quiet or EMPTY), the talkers[g] loudest rows at or
 *       above LEVEL_FLOOR are selected (first row on ties), meeting[g] = extra[g] + the
 *       selected frames, each row gets meeting - its own selected frame + own[r] (lobby:
 *       own[r] only), clipped and encoded through etab[law] into pkt[r, 12:12+SLOT].
 *   send_rows(fds, buf, lengths, addrs, count) -> (n_sent, n_failed, first_errno)
 *       sendmsg (MSG_DONTWAIT) of row i on fds[i] to addrs[i]; rows with fds[i] < 0 or a
 *       zero family are skipped. EAGAIN is loss (counted failed, no errno).
 *
 * Limited API (abi3, 3.11+); the GIL is released around the syscall loops; bad
 * buffers raise TypeError/ValueError before any syscall.
 */
#define _GNU_SOURCE
#include <Python.h>

#include "common.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#define SLOT 160     /* payload bytes per ring slot: 20 ms of G.711 */
#define CTRL_SIZE CMSG_SPACE(sizeof(struct timespec))
#define NJS 16
#define NONE INT64_MIN
/* js columns (gateway/rtp/tickrecv.py JS_*) */
enum { J_NEXT, J_HIGHEST, J_PLAYING, J_COUNT, J_LATE, J_DUP, J_LOST, J_UNDERRUNS, J_OVERFLOWS,
       J_CONCEALED, J_RX_PACKETS, J_RX_BYTES, J_LAST_ARRIVAL, J_LAST_LEN, J_PREV_SEQ, J_MAX_GAP };
#define MAX_DROPOUT 3000 /* gateway/rtp/session.py */
enum { F_JITTER, F_TRANSIT };
/* JitterBuffer defaults (gateway/rtp/jitter.py) */
#define MIN_DEPTH 1
#define MAX_DEPTH 10
#define CAPACITY 50
#define PTIME_S 0.02
#define CLOCK 8000.0
#define LEVEL_FLOOR (30.0 * 30.0) /* gateway/rtp/mixer.py */

typedef struct {
    PyObject *o;
    Py_ssize_t itemsize;
    int ndim, writable;
    const char *name;
} Spec;

static int
views(Spec *spec, int n, Py_buffer *v, int *held)
{
    for (*held = 0; *held < n; (*held)++)
        if (get_view(spec[*held].o, spec[*held].itemsize, spec[*held].ndim, spec[*held].writable,
                 spec[*held].name, &v[*held]) < 0)
            return -1;
    return 0;
}

/* ---------------------------------------------------------------- jitter ring */

typedef struct {
    int64_t *js;
    double *jf;
    unsigned char *ring; /* R x SLOT */
    int64_t *ext;        /* R */
    int16_t *len;        /* R */
    int64_t mask;        /* R - 1 */
} Jb;

static int
target_depth(const Jb *b)
{
    double want = 1.0 + ceil(2.0 * b->jf[F_JITTER] / PTIME_S);
    if (want > MAX_DEPTH)
        want = MAX_DEPTH;
    if (want < MIN_DEPTH)
        want = MIN_DEPTH;
    return (int)want;
}

static void
jb_restart(Jb *b)
{
    for (int64_t s = 0; s <= b->mask; s++)
        b->ext[s] = NONE;
    b->js[J_COUNT] = 0;
    b->js[J_NEXT] = b->js[J_HIGHEST] = NONE;
    b->js[J_PLAYING] = 0;
}

static void
jb_remove(Jb *b, int64_t e)
{
    b->ext[e & b->mask] = NONE;
    b->js[J_COUNT]--;
    if (b->js[J_NEXT] != NONE && b->js[J_NEXT] <= e)
        b->js[J_NEXT] = e + 1;
}

/* JitterBuffer.put over the ring; a slot collision (two buffered packets R apart)
 * evicts the older one as an overflow. */
static void
jb_put(Jb *b, int64_t seq, uint32_t ts, const unsigned char *payload, int n, int64_t arrival_ns)
{
    int64_t *js = b->js;
    int64_t ref = js[J_HIGHEST] != NONE ? js[J_HIGHEST] : seq;
    int64_t e = ref + ((seq - ref + 0x8000) & 0xFFFF) - 0x8000;
    double transit = (double)arrival_ns / 1e9 - (double)ts / CLOCK;
    if (!isnan(b->jf[F_TRANSIT])) {
        double d = fabs(transit - b->jf[F_TRANSIT]);
        if (d < 1.0)
            b->jf[F_JITTER] += (d - b->jf[F_JITTER]) / 16;
    }
    b->jf[F_TRANSIT] = transit;
    if (js[J_NEXT] != NONE && e < js[J_NEXT]) {
        if (!js[J_PLAYING] && js[J_NEXT] - e <= CAPACITY)
            js[J_NEXT] = e;
        else if (js[J_NEXT] - e > MAX_DEPTH * 4) {
            jb_restart(b);
            e = seq;
        } else {
            js[J_LATE]++;
            return;
        }
    }
    if (js[J_HIGHEST] != NONE && e - js[J_HIGHEST] > MAX_DEPTH * 4 + CAPACITY) {
        jb_restart(b);
        e = seq;
    }
    int64_t s = e & b->mask;
    if (b->ext[s] == e) {
        js[J_DUP]++;
        return;
    }
    if (b->ext[s] != NONE) { /* ring collision: the older packet goes */
        js[J_OVERFLOWS]++;
        int64_t old = b->ext[s];
        jb_remove(b, old);
    }
    b->ext[s] = e;
    b->len[s] = (int16_t)n;
    memcpy(b->ring + s * SLOT, payload, (size_t)n);
    js[J_COUNT]++;
    if (js[J_HIGHEST] == NONE || e > js[J_HIGHEST])
        js[J_HIGHEST] = e;
    if (js[J_NEXT] == NONE || (e < js[J_NEXT] && !js[J_PLAYING]))
        js[J_NEXT] = e;
    while (js[J_COUNT] > CAPACITY) {
        js[J_OVERFLOWS]++;
        int64_t oldest = NONE;
        for (int64_t k = 0; k <= b->mask; k++)
            if (b->ext[k] != NONE && (oldest == NONE || b->ext[k] < oldest))
                oldest = b->ext[k];
        jb_remove(b, oldest);
    }
}

/* JitterBuffer.pull: 0 EMPTY, 1 PACKET (slot index in *slot), 2 LOST. */
static int
jb_pull(Jb *b, int64_t *slot)
{
    int64_t *js = b->js;
    int target = target_depth(b);
    if (!js[J_PLAYING]) {
        if (js[J_NEXT] == NONE || js[J_COUNT] < target)
            return 0;
        js[J_PLAYING] = 1;
    }
    if (js[J_COUNT] == 0) {
        js[J_PLAYING] = 0;
        js[J_UNDERRUNS]++;
        return 0;
    }
    int64_t e = js[J_NEXT];
    int64_t s = e & b->mask;
    int found = b->ext[s] == e;
    if (found) {
        b->ext[s] = NONE;
        js[J_COUNT]--;
    }
    js[J_NEXT] = e + 1;
    if (!found) {
        js[J_LOST]++;
        return 2;
    }
    if (js[J_COUNT] > 2 * target + 2) {
        int64_t n = js[J_NEXT], ns = n & b->mask;
        if (b->ext[ns] == n) {
            b->ext[ns] = NONE;
            js[J_COUNT]--;
        }
        js[J_NEXT] = n + 1;
    }
    *slot = s;
    return 1;
}

/* ---------------------------------------------------------------- tick_recv */

static PyObject *
tick_recv(PyObject *self, PyObject *args)
{
    PyObject *o[15];
    Py_ssize_t fb_n;
    long long clock_off, now_ns;
    Py_buffer v[15];
    int held = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOnLL:tick_recv", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13],
                          &o[14], &fb_n, &clock_off, &now_ns))
        return NULL;
    Spec spec[15] = {
        {o[0], 4, 1, 0, "fds"},        {o[1], 1, 2, 0, "expect"},   {o[2], 1, 2, 0, "pt_mask"},
        {o[3], 1, 2, 1, "ring"},       {o[4], 8, 2, 1, "ring_ext"}, {o[5], 2, 2, 1, "ring_len"},
        {o[6], 8, 2, 1, "js"},         {o[7], 8, 2, 1, "jf"},       {o[8], REC_SIZE, 2, 1, "logs"},
        {o[9], 4, 1, 1, "log_n"},      {o[10], 1, 2, 1, "fb_buf"},  {o[11], 4, 1, 1, "fb_len"},
        {o[12], ADDR_SIZE, 1, 1, "fb_addr"}, {o[13], 8, 1, 1, "fb_ts"}, {o[14], 4, 1, 1, "fb_leg"},
    };
    if (views(spec, 15, v, &held) < 0)
        goto done;
    Py_ssize_t L = v[0].shape[0];
    for (int k = 1; k < 10; k++)
        if (v[k].shape[0] != L) {
            PyErr_Format(PyExc_ValueError, "%s must have one row per slot (%zd)", spec[k].name, L);
            goto done;
        }
    Py_ssize_t R = v[4].shape[1], K = v[8].shape[1], F = v[10].shape[0], M = v[10].shape[1];
    if (v[1].shape[1] != ADDR_SIZE || v[2].shape[1] != 128 || v[3].shape[1] != R * SLOT ||
        v[5].shape[1] != R || v[6].shape[1] != NJS || v[7].shape[1] != 2 || R < 1 ||
        (R & (R - 1)) != 0 || M < 12) {
        PyErr_SetString(PyExc_ValueError, "per-slot arrays have the wrong widths");
        goto done;
    }
    for (int k = 11; k < 15; k++)
        if (v[k].shape[0] != F) {
            PyErr_SetString(PyExc_ValueError, "fallback arrays must have the same length");
            goto done;
        }
    if (fb_n < 0 || fb_n > F) {
        PyErr_SetString(PyExc_ValueError, "fb_n out of range");
        goto done;
    }
    const int32_t *fds = v[0].buf;
    const unsigned char *expect = v[1].buf, *mask = v[2].buf;
    unsigned char *ring = v[3].buf, *logs = v[8].buf, *fb_buf = v[10].buf, *fb_addr = v[12].buf;
    int64_t *ring_ext = v[4].buf, *js = v[6].buf, *fb_ts = v[13].buf;
    int16_t *ring_len = v[5].buf;
    double *jf = v[7].buf;
    int32_t *log_n = v[9].buf, *fb_len = v[11].buf, *fb_leg = v[14].buf;
    Py_ssize_t n_acc = 0;
    int complete = 1;

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    union {
        char bytes[CTRL_SIZE];
        struct cmsghdr align;
    } ctrl[CHUNK];
    int err = 0;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < L && !err; i++) {
        int fd = fds[i];
        if (fd < 0)
            continue;
        Jb b = {js + i * NJS, jf + i * 2, ring + (size_t)i * R * SLOT, ring_ext + i * R,
                ring_len + i * R, R - 1};
        const unsigned char *exp = expect + i * ADDR_SIZE, *pm = mask + i * 128;
        for (int round = 0;; round++) {
            /* read no more than the fallback rows and the leg's packet log can take: the
             * rest stays queued for the next call (the caller syncs full logs first) */
            Py_ssize_t room = F - fb_n, logroom = K - log_n[i];
            if (room <= 0 || logroom <= 0) {
                complete = 0;
                break;
            }
            if (logroom < room)
                room = logroom;
            /* a leg has one or two packets per tick: a short first read, then full chunks */
            Py_ssize_t want = round ? CHUNK : 4;
            unsigned int k = (unsigned int)(room < want ? room : want);
            memset(msgs, 0, sizeof(struct mmsghdr) * k);
            for (unsigned int j = 0; j < k; j++) {
                Py_ssize_t row = fb_n + j;
                iov[j].iov_base = fb_buf + (size_t)row * M;
                iov[j].iov_len = (size_t)M;
                msgs[j].msg_hdr.msg_iov = &iov[j];
                msgs[j].msg_hdr.msg_iovlen = 1;
                msgs[j].msg_hdr.msg_name = fb_addr + (size_t)row * ADDR_SIZE;
                msgs[j].msg_hdr.msg_namelen = ADDR_SIZE;
                msgs[j].msg_hdr.msg_control = ctrl[j].bytes;
                msgs[j].msg_hdr.msg_controllen = CTRL_SIZE;
            }
            int got = recvmmsg(fd, msgs, k, MSG_DONTWAIT | MSG_TRUNC, NULL);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                break; /* EAGAIN, or an ICMP error: nothing more now */
            }
            Py_ssize_t base = fb_n;
            for (int j = 0; j < got; j++) {
                Py_ssize_t row = base + j;
                unsigned char *p = fb_buf + (size_t)row * M;
                int32_t n = (int32_t)msgs[j].msg_len;
                if (msgs[j].msg_hdr.msg_flags & MSG_TRUNC)
                    n = n > M ? n : (int32_t)M + 1;
                int64_t t = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr); c;
                     c = CMSG_NXTHDR(&msgs[j].msg_hdr, c))
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                        struct timespec tsp;
                        memcpy(&tsp, CMSG_DATA(c), sizeof tsp);
                        t = (int64_t)tsp.tv_sec * 1000000000LL + tsp.tv_nsec;
                    }
                unsigned char *a = fb_addr + (size_t)row * ADDR_SIZE;
                if (msgs[j].msg_hdr.msg_namelen < ADDR_SIZE)
                    memset(a + msgs[j].msg_hdr.msg_namelen, 0,
                           ADDR_SIZE - msgs[j].msg_hdr.msg_namelen);
                uint8_t b0 = p[0], b1 = p[1];
                int ok = n >= 12 && n <= M && b0 == 0x80 && (b1 < 192 || b1 > 223) &&
                         pm[b1 & 0x7F] && n - 12 <= SLOT && log_n[i] < K && same_addr(a, exp);
                if (!ok) { /* keep for the Python path, packed at fb_n */
                    if (fb_n != row) {
                        memcpy(fb_buf + (size_t)fb_n * M, p, (size_t)(n < M ? n : M));
                        memcpy(fb_addr + (size_t)fb_n * ADDR_SIZE, a, ADDR_SIZE);
                    }
                    fb_len[fb_n] = n;
                    fb_ts[fb_n] = t;
                    fb_leg[fb_n] = (int32_t)i;
                    fb_n++;
                    continue;
                }
                int64_t arrival = t ? t - clock_off : now_ns;
                uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
                uint32_t ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
                unsigned char *r = logs + ((size_t)i * K + (size_t)log_n[i]) * REC_SIZE;
                put64(r, (uint64_t)arrival);
                put16(r + 8, seq);
                put32(r + 10, ts);
                put32(r + 14, (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11]);
                r[18] = b1 & 0x7F;
                r[19] = b1 >> 7;
                put16(r + 20, (uint16_t)n);
                log_n[i]++;
                b.js[J_RX_PACKETS]++;
                b.js[J_RX_BYTES] += n;
                b.js[J_LAST_ARRIVAL] = arrival;
                /* the session's loss-run watch for DTMF (RtpSession.receive_rtp) */
                int64_t prev = b.js[J_PREV_SEQ];
                if (prev < 0 || ((seq - prev) & 0xFFFF) < 0x8000) {
                    int64_t gap = prev < 0 ? 0 : (seq - prev - 1) & 0xFFFF;
                    if (gap > b.js[J_MAX_GAP] && gap < MAX_DROPOUT)
                        b.js[J_MAX_GAP] = gap;
                    b.js[J_PREV_SEQ] = seq;
                }
                n_acc++;
                jb_put(&b, seq, ts, p + 12, n - 12, arrival);
            }
            if ((unsigned int)got < k)
                break;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(nni)", fb_n, n_acc, complete);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

/* ---------------------------------------------------------------- tick_pull */

static PyObject *
tick_pull(PyObject *self, PyObject *args)
{
    PyObject *o[11];
    Py_buffer v[11];
    int held = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO:tick_pull", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &o[8], &o[9], &o[10]))
        return NULL;
    Spec spec[11] = {
        {o[0], 1, 1, 0, "active"},  {o[1], 8, 2, 1, "js"},       {o[2], 8, 2, 1, "jf"},
        {o[3], 1, 2, 1, "ring"},    {o[4], 8, 2, 1, "ring_ext"}, {o[5], 2, 2, 1, "ring_len"},
        {o[6], 1, 1, 0, "law"},     {o[7], 2, 2, 0, "dtab"},     {o[8], 2, 2, 1, "last"},
        {o[9], 2, 2, 1, "pcm"},     {o[10], 1, 1, 1, "kind"},
    };
    if (views(spec, 11, v, &held) < 0)
        goto done;
    Py_ssize_t L = v[0].shape[0], R = v[4].shape[1], NL = v[7].shape[0];
    for (int k = 1; k < 11; k++)
        if (k != 7 && v[k].shape[0] != L) {
            PyErr_Format(PyExc_ValueError, "%s must have one row per slot (%zd)", spec[k].name, L);
            goto done;
        }
    if (v[1].shape[1] != NJS || v[2].shape[1] != 2 || v[3].shape[1] != R * SLOT ||
        v[5].shape[1] != R || v[7].shape[1] != 256 || v[8].shape[1] != SLOT ||
        v[9].shape[1] != SLOT || R < 1 || (R & (R - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "per-slot arrays have the wrong widths");
        goto done;
    }
    const unsigned char *active = v[0].buf, *law = v[6].buf;
    const int16_t *dtab = v[7].buf;
    int64_t *js = v[1].buf, *ring_ext = v[4].buf;
    double *jf = v[2].buf;
    unsigned char *ring = v[3].buf, *kind = v[10].buf;
    int16_t *ring_len = v[5].buf, *last = v[8].buf, *pcm = v[9].buf;
    for (Py_ssize_t i = 0; i < L; i++)
        if (active[i] && law[i] >= NL) {
            PyErr_SetString(PyExc_ValueError, "law out of range");
            goto done;
        }
    for (Py_ssize_t i = 0; i < L; i++) {
        int16_t *out = pcm + i * SLOT, *lst = last + i * SLOT;
        int64_t *j = js + i * NJS;
        kind[i] = 0;
        if (!active[i]) {
            memset(out, 0, SLOT * sizeof *out);
            continue;
        }
        Jb b = {j, jf + i * 2, ring + (size_t)i * R * SLOT, ring_ext + i * R, ring_len + i * R,
                R - 1};
        int64_t s = 0;
        int k = jb_pull(&b, &s);
        kind[i] = (unsigned char)k;
        if (k == 1) {
            const unsigned char *p = b.ring + s * SLOT;
            int n = b.len[s];
            const int16_t *tab = dtab + (size_t)law[i] * 256;
            for (int q = 0; q < n; q++)
                out[q] = lst[q] = tab[p[q]];
            memset(out + n, 0, (size_t)(SLOT - n) * sizeof *out);
            j[J_LAST_LEN] = n;
            j[J_CONCEALED] = 0;
        } else if (k == 2) {
            j[J_CONCEALED]++;
            int64_t m = j[J_LAST_LEN];
            if (j[J_CONCEALED] > 3 || m == 0) {
                memset(out, 0, SLOT * sizeof *out);
            } else {
                double gain = 1.0 - (double)j[J_CONCEALED] / 4;
                for (int q = 0; q < SLOT; q++)
                    out[q] = (int16_t)(lst[q % m] * gain);
            }
        } else {
            memset(out, 0, SLOT * sizeof *out);
        }
    }
    result = Py_NewRef(Py_None);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

/* ---------------------------------------------------------------- send_rows */

static PyObject *
send_rows(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t count;
    Py_buffer v[4];
    int held = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOn:send_rows", &o[0], &o[1], &o[2], &o[3], &count))
        return NULL;
    Spec spec[4] = {
        {o[0], 4, 1, 0, "fds"}, {o[1], 1, 2, 0, "buf"},
        {o[2], 4, 1, 0, "lengths"}, {o[3], ADDR_SIZE, 1, 0, "addrs"},
    };
    if (views(spec, 4, v, &held) < 0)
        goto done;
    Py_ssize_t cap = v[0].shape[0];
    for (int k = 1; k < 4; k++)
        if (v[k].shape[0] < cap)
            cap = v[k].shape[0];
    if (count < 0 || count > cap) {
        PyErr_Format(PyExc_ValueError, "count must be in 0..%zd (the smallest buffer), got %zd",
                     cap, count);
        goto done;
    }
    const int32_t *fds = v[0].buf, *lens = v[2].buf;
    unsigned char *buf = v[1].buf, *addrs = v[3].buf;
    Py_ssize_t M = v[1].shape[1];
    for (Py_ssize_t i = 0; i < count; i++)
        if (lens[i] < 0 || lens[i] > M) {
            PyErr_Format(PyExc_ValueError, "lengths[%zd]=%d is outside 0..%zd", i, (int)lens[i], M);
            goto done;
        }
    Py_ssize_t sent = 0, failed = 0;
    int first = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char *a = addrs + (size_t)i * ADDR_SIZE;
        sa_family_t fam;
        memcpy(&fam, a, sizeof fam);
        if (fds[i] < 0 || (fam != AF_INET && fam != AF_INET6))
            continue;
        socklen_t alen = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        ssize_t r;
        do
            r = sendto(fds[i], buf + (size_t)i * M, (size_t)lens[i], MSG_DONTWAIT,
                       (struct sockaddr *)a, alen);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            failed++;
            if (!first && errno != EAGAIN && errno != EWOULDBLOCK)
                first = errno;
        } else {
            sent++;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(nni)", sent, failed, first);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}


/* ---------------------------------------------------------------- mix_tick */

static PyObject *
mix_tick(PyObject *self, PyObject *args)
{
    PyObject *o[16];
    Py_buffer v[16];
    int held = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOO:mix_tick", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13],
                          &o[14], &o[15]))
        return NULL;
    Spec spec[16] = {
        {o[0], 2, 2, 0, "pcm"},      {o[1], 1, 1, 0, "kind"},    {o[2], 8, 1, 0, "rows"},
        {o[3], 8, 1, 0, "grp"},      {o[4], 8, 1, 0, "starts"},  {o[5], 8, 1, 0, "talkers"},
        {o[6], 1, 1, 0, "quiet"},    {o[7], 1, 1, 0, "lobby"},   {o[8], 4, 2, 0, "extra"},
        {o[9], 4, 2, 0, "own"},      {o[10], 1, 1, 0, "law"},    {o[11], 1, 2, 0, "etab"},
        {o[12], 8, 1, 1, "level"},   {o[13], 1, 1, 1, "sel"},    {o[14], 4, 2, 1, "meeting"},
        {o[15], 1, 2, 1, "pkt"},
    };
    if (views(spec, 16, v, &held) < 0)
        goto done;
    Py_ssize_t S = v[0].shape[0], L = v[2].shape[0], G = v[4].shape[0];
    if (v[0].shape[1] != SLOT || v[1].shape[0] != S || v[10].shape[0] != S || v[3].shape[0] != L ||
        v[6].shape[0] != L || v[7].shape[0] != L || v[9].shape[0] != L || v[9].shape[1] != SLOT ||
        v[12].shape[0] != L || v[13].shape[0] != L || v[15].shape[0] != L ||
        v[15].shape[1] < 12 + SLOT || v[5].shape[0] != G || v[8].shape[0] != G ||
        v[8].shape[1] != SLOT || v[14].shape[0] != G || v[14].shape[1] != SLOT ||
        v[11].shape[1] != 65536) {
        PyErr_SetString(PyExc_ValueError, "mix_tick arrays have inconsistent shapes");
        goto done;
    }
    const int16_t *pcm = v[0].buf;
    const unsigned char *kind = v[1].buf, *quiet = v[6].buf, *lobby = v[7].buf, *law = v[10].buf,
                        *etab = v[11].buf;
    const int64_t *rows = v[2].buf, *grp = v[3].buf, *starts = v[4].buf, *talkers = v[5].buf;
    const int32_t *extra = v[8].buf, *own = v[9].buf;
    double *level = v[12].buf;
    unsigned char *sel = v[13].buf, *pkt = v[15].buf;
    int32_t *meeting = v[14].buf;
    Py_ssize_t M = v[15].shape[1], NL = v[11].shape[0];
    for (Py_ssize_t r = 0; r < L; r++)
        if (rows[r] < 0 || rows[r] >= S || grp[r] < 0 || grp[r] >= G || law[rows[r]] >= NL) {
            PyErr_SetString(PyExc_ValueError, "rows, grp or law out of range");
            goto done;
        }
    for (Py_ssize_t g = 0; g < G; g++)
        if (starts[g] < 0 || starts[g] > L || (g && starts[g] < starts[g - 1])) {
            PyErr_SetString(PyExc_ValueError, "starts must be ascending offsets into rows");
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < L; r++) {
        const int16_t *x = pcm + rows[r] * SLOT;
        double acc = 0.0; /* exact: 160 squares of int16 stay below 2^53 */
        for (int q = 0; q < SLOT; q++)
            acc += (double)x[q] * (double)x[q];
        level[r] = (quiet[r] || kind[rows[r]] == 0) ? 0.0 : acc / SLOT;
        sel[r] = 0;
    }
    for (Py_ssize_t g = 0; g < G; g++) {
        Py_ssize_t lo = starts[g], hi = g + 1 < G ? starts[g + 1] : L;
        int32_t *mt = meeting + g * SLOT;
        memcpy(mt, extra + g * SLOT, SLOT * sizeof *mt);
        for (int64_t k = 0; k < talkers[g]; k++) { /* the loudest unpicked, first on ties */
            Py_ssize_t best = -1;
            for (Py_ssize_t r = lo; r < hi; r++)
                if (!sel[r] && (best < 0 || level[r] > level[best]))
                    best = r;
            if (best < 0 || level[best] < LEVEL_FLOOR)
                break;
            sel[best] = 1;
            const int16_t *x = pcm + rows[best] * SLOT;
            for (int q = 0; q < SLOT; q++)
                mt[q] += x[q];
        }
    }
    for (Py_ssize_t r = 0; r < L; r++) {
        const int32_t *mt = meeting + grp[r] * SLOT, *ow = own + r * SLOT;
        const int16_t *x = pcm + rows[r] * SLOT;
        const unsigned char *tab = etab + (size_t)law[rows[r]] * 65536;
        unsigned char *out = pkt + r * M + 12;
        for (int q = 0; q < SLOT; q++) {
            int32_t y = lobby[r] ? ow[q] : mt[q] - (sel[r] ? x[q] : 0) + ow[q];
            y = y < -32768 ? -32768 : (y > 32767 ? 32767 : y);
            out[q] = tab[y + 32768];
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

static PyMethodDef methods[] = {
    {"tick_recv", tick_recv, METH_VARARGS,
     "tick_recv(fds, expect, pt_mask, ring, ring_ext, ring_len, js, jf, logs, log_n, fb_buf, "
     "fb_len, fb_addr, fb_ts, fb_leg, fb_n, clock_offset_ns, now_ns) -> (fb_n, n_accepted, "
     "complete)"},
    {"tick_pull", tick_pull, METH_VARARGS,
     "tick_pull(active, js, jf, ring, ring_ext, ring_len, law, dtab, last, pcm, kind) -> None"},
    {"mix_tick", mix_tick, METH_VARARGS,
     "mix_tick(pcm, kind, rows, grp, starts, talkers, quiet, lobby, extra, own, law, etab, "
     "level, sel, meeting, pkt) -> None"},
    {"send_rows", send_rows, METH_VARARGS,
     "send_rows(fds, buf, lengths, addrs, count) -> (n_sent, n_failed, first_errno)"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {{0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway._mixrecv",
    "The conference mix engine's per-tick receive, jitter and send steps (native/mixrecv.c).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__mixrecv(void)
{
    return PyModuleDef_Init(&module);
}
