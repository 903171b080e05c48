/*
 * gateway._relayhub: every relayed leg's RTP socket drained in one call.
 *
 * The media plane's relay hub (gateway/rtp/relayhub.py) keeps the RTP sockets of all
 * relayed legs in one private epoll set; its fd is the one reader on the event loop. On
 * each wake-up Python makes one call:
 *
 *   hub_relay(ep, table, counters, logs, fd_slot, scratch, fb_buf, fb_meta,
 *             clock_offset_ns, now_ns, budget) -> (n_accepted, n_fallback, status)
 *
 * Pure-Python/NumPy twin with the identical signature and results:
 * gateway/rtp/relayhub.py `_hub_relay_py`, which documents the arrays (HUB_DTYPE table
 * rows, counter columns C_*, per-slot PACKET_DTYPE log regions, FB_DTYPE fallback rows).
 * In short, with the GIL released: epoll_wait(ep, timeout 0); for each ready socket
 * (slot = fd_slot[fd]) one recvmmsg (MSG_DONTWAIT | MSG_TRUNC, kernel receive stamps) of
 * at most min(scratch rows, 64, free log rows of the slot, free fallback rows, budget
 * left) datagrams; a datagram from the slot's expected source that is RTP version 2 with
 * room for its CSRCs, not truncated, not RTCP-mux (second byte 192..223), with a payload
 * type set in the slot's mask, gets one PACKET_DTYPE row in the slot's log region and
 * leaves on the slot's out_fd to its dest with sendmmsg (runs of equal size as one UDP
 * GSO message), and its sequence number goes through the session's DTMF loss-run rule
 * (C_NEWEST, C_MAX_GAP); any other datagram is copied to the fallback rows for Python.
 * Then, when the epoll_wait filled its 64 events, epoll_wait again, until no socket is
 * ready, `budget` datagrams were read, the fallback rows are full (status 1), or a ready
 * slot's log region is full (status 2: fold the logs and call again). status 0: every
 * socket ready at the last epoll_wait was read once (what arrives later makes the set's fd
 * readable again).
 *
 * Limited API (abi3, 3.11+). Bad buffers raise TypeError/ValueError before any syscall;
 * an epoll_wait error raises OSError; receive errors (ICMP port unreachable) skip the
 * socket; a send error is counted in the slot's counters, never raised; EINTR ends the
 * call with status 1 so the caller runs its signal handlers and calls again.
 */
#define _GNU_SOURCE
#include <Python.h>

#include "common.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#define EVENTS 64
#define CTRL_SIZE CMSG_SPACE(sizeof(struct timespec))

/* HUB_DTYPE: one row per slot */
#define ROW_SIZE 192
#define R_FD 0      /* <i4 the leg's RTP socket, -1: free slot */
#define R_OUT_FD 4  /* <i4 the peer's RTP socket, -1: accept and log, do not send */
#define R_EXPECT 8  /* 28-byte sockaddr slot: the latched source (family 0: accept nothing) */
#define R_DEST 36   /* 28-byte sockaddr slot: where the peer sends (family 0: do not send) */
#define R_MASK 64   /* 128 bytes: non-zero at each payload type to relay */

/* counter columns (int64), deltas since the Python side last folded them */
enum { C_RX_PACKETS, C_RX_BYTES, C_LAST_RX_NS, C_TX_PACKETS, C_TX_BYTES, C_LAST_TX_TS,
       C_LAST_TX_NS, C_SEND_ERRORS, C_SEND_ERRNO, C_BATCHES, C_LOG_N, C_FALLBACK,
       C_NEWEST, C_MAX_GAP, NCOUNTERS };
/* C_NEWEST: 1 + the newest sequence number seen (0: none yet; the caller seeds it with the
 * session's); C_MAX_GAP: the longest run of missing sequence numbers since the caller last
 * zeroed it (RFC 3550 A.1 order: a step is forward when (seq - newest) mod 2^16 < 2^15;
 * steps of MAX_DROPOUT or more are restarts, not loss) */
#define MAX_DROPOUT 3000

/* FB_DTYPE: one row per datagram handed back to Python */
#define FB_SIZE 48
#define F_LEN 0     /* <i4 size on the wire (above the row length: truncated) */
#define F_SLOT 4    /* <i4 */
#define F_ARRIVAL 8 /* <i8 monotonic ns */
#define F_ADDR 16   /* 28-byte sockaddr slot */

static inline int32_t
get_i32(const unsigned char *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t
family_of(const unsigned char *slot)
{
    sa_family_t f;
    memcpy(&f, slot, sizeof f);
    return (uint16_t)f;
}

static int gso_ok = 1; /* off for the process once the kernel or route refuses UDP GSO */

/* sendmmsg of iov[0..k-1] to dest (no GIL held); runs of equal size go as one GSO message.
 * Returns datagrams sent; a real error (not EAGAIN, which is loss) is stored in *err. */
static int
send_run(int fd, struct iovec *iov, int k, void *dest, socklen_t dest_len, int *err)
{
    struct mmsghdr msgs[CHUNK];
    GsoCtrl ctrl[CHUNK];
    int segs[CHUNK];
    int gso = gso_ok;
again:;
    int m = gso_messages(iov, k, dest, dest_len, gso, msgs, ctrl, segs);
    int sent = 0, done = 0, tries = 0;
    while (done < m) {
        int got = sendmmsg(fd, msgs + done, (unsigned int)(m - done), MSG_DONTWAIT);
        if (got < 0) {
            int e = errno;
            if (e == EINTR && ++tries < 8)
                continue;
            if (gso && segs[done] > 1 && sent == 0 && done == 0 &&
                (e == EIO || e == EINVAL || e == ENOPROTOOPT || e == EOPNOTSUPP)) {
                gso_ok = gso = 0;
                goto again;
            }
            if (e != EAGAIN && e != EWOULDBLOCK)
                *err = e;
            return sent;
        }
        for (int t = done; t < done + got; t++)
            sent += segs[t];
        done += got;
    }
    return sent;
}

typedef struct {
    int ep;
    unsigned char *table;
    Py_ssize_t nslots;
    int64_t *cnt;
    unsigned char *logs;
    Py_ssize_t log_rows;
    const int32_t *fd_slot;
    Py_ssize_t nfd;
    unsigned char *scratch;
    Py_ssize_t srows, maxlen;
    unsigned char *fb_buf;
    Py_ssize_t fb_rows, fb_maxlen;
    unsigned char *fb_meta;
    int64_t clock_off, now_ns;
    Py_ssize_t budget;
    /* results */
    Py_ssize_t n_acc, n_fb, total;
    int status, os_err;
} Hub;

/* Read and relay one ready socket once. Returns 1 when something was read, 0 when not,
 * -1 when the call must stop (status set). */
static int
drain_one(Hub *h, int slot, int fd)
{
    unsigned char *row = h->table + (size_t)slot * ROW_SIZE;
    int64_t *c = h->cnt + (size_t)slot * NCOUNTERS;
    Py_ssize_t room_log = h->log_rows - c[C_LOG_N];
    Py_ssize_t room_fb = h->fb_rows - h->n_fb;
    Py_ssize_t left = h->budget - h->total;
    if (room_fb <= 0 || left <= 0) {
        h->status = 1;
        return -1;
    }
    if (room_log <= 0) {
        h->status = 2;
        return 0;
    }
    Py_ssize_t vlen = h->srows < CHUNK ? h->srows : CHUNK;
    if (room_log < vlen)
        vlen = room_log;
    if (room_fb < vlen)
        vlen = room_fb;
    if (left < vlen)
        vlen = left;

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    unsigned char addrs[CHUNK][ADDR_SIZE];
    union {
        char buf[CTRL_SIZE];
        struct cmsghdr align;
    } ctrl[CHUNK];
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)vlen);
    for (Py_ssize_t i = 0; i < vlen; i++) {
        iov[i].iov_base = h->scratch + (size_t)i * (size_t)h->maxlen;
        iov[i].iov_len = (size_t)h->maxlen;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = addrs[i];
        msgs[i].msg_hdr.msg_namelen = ADDR_SIZE;
        msgs[i].msg_hdr.msg_control = ctrl[i].buf;
        msgs[i].msg_hdr.msg_controllen = CTRL_SIZE;
    }
    int got = recvmmsg(fd, msgs, (unsigned int)vlen, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (got < 0) {
        if (errno == EINTR) {
            h->status = 1;
            return -1;
        }
        /* EAGAIN (another reader won), or a queued ICMP error: reported once, then gone;
         * an error counts against the budget, so a socket that keeps failing cannot spin */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        h->total++;
        return 1;
    }
    if (got == 0)
        return 0;
    h->total += got;

    const unsigned char *expect = row + R_EXPECT, *mask = row + R_MASK;
    unsigned char *dest = row + R_DEST;
    int efam = family_of(expect);
    int32_t out_fd = get_i32(row + R_OUT_FD);
    int dfam = family_of(dest);
    int sending = out_fd >= 0 && (dfam == AF_INET || dfam == AF_INET6);
    struct iovec out[CHUNK];
    int k = 0;
    int64_t nbytes = 0;
    uint32_t last_ts = 0;
    int64_t last_arrival = 0;
    for (int i = 0; i < got; i++) {
        const unsigned char *p = iov[i].iov_base;
        int64_t n = (int64_t)msgs[i].msg_len; /* MSG_TRUNC: the size on the wire */
        int64_t arrival = h->now_ns;
        struct msghdr *mh = &msgs[i].msg_hdr;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS &&
                cm->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                struct timespec t;
                memcpy(&t, CMSG_DATA(cm), sizeof t);
                int64_t stamp = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
                if (stamp)
                    arrival = stamp - h->clock_off;
            }
        if (mh->msg_namelen < ADDR_SIZE)
            memset(addrs[i] + mh->msg_namelen, 0, ADDR_SIZE - mh->msg_namelen);
        int ok = 0;
        if ((efam == AF_INET || efam == AF_INET6) && n >= 12 && n <= h->maxlen) {
            uint8_t b0 = p[0], b1 = p[1];
            ok = (b0 >> 6) == 2 && n >= 12 + 4 * (b0 & 0x0F) && (b1 < 192 || b1 > 223) &&
                 mask[b1 & 0x7F] && same_addr(addrs[i], expect);
        }
        if (!ok) {
            unsigned char *m = h->fb_meta + (size_t)h->n_fb * FB_SIZE;
            int32_t len32 = n > INT32_MAX ? INT32_MAX : (int32_t)n;
            int32_t slot32 = slot;
            memcpy(m + F_LEN, &len32, 4);
            memcpy(m + F_SLOT, &slot32, 4);
            memcpy(m + F_ARRIVAL, &arrival, 8);
            memcpy(m + F_ADDR, addrs[i], ADDR_SIZE);
            size_t copy = (size_t)(n < h->maxlen ? n : h->maxlen);
            if (copy > (size_t)h->fb_maxlen)
                copy = (size_t)h->fb_maxlen;
            memcpy(h->fb_buf + (size_t)h->n_fb * (size_t)h->fb_maxlen, p, copy);
            h->n_fb++;
            c[C_FALLBACK]++;
            continue;
        }
        unsigned char *r = h->logs + ((size_t)slot * (size_t)h->log_rows + (size_t)c[C_LOG_N]) * REC_SIZE;
        uint8_t b1 = p[1];
        put64(r, (uint64_t)arrival);
        put16(r + 8, (uint16_t)(p[2] << 8 | p[3]));
        last_ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        put32(r + 10, last_ts);
        put32(r + 14, (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11]);
        r[18] = b1 & 0x7F;
        r[19] = b1 >> 7;
        put16(r + 20, (uint16_t)(n > 0xFFFF ? 0xFFFF : n));
        c[C_LOG_N]++;
        uint32_t seq = (uint32_t)(p[2] << 8 | p[3]);
        int64_t top = c[C_NEWEST] - 1;
        if (top < 0 || ((seq - (uint32_t)top) & 0xFFFF) < 0x8000) {
            int64_t gap = (int64_t)((seq - (uint32_t)top - 1) & 0xFFFF);
            if (top >= 0 && gap < MAX_DROPOUT && gap > c[C_MAX_GAP])
                c[C_MAX_GAP] = gap;
            c[C_NEWEST] = (int64_t)seq + 1;
        }
        nbytes += n;
        last_arrival = arrival;
        out[k].iov_base = (void *)p;
        out[k].iov_len = (size_t)n;
        k++;
    }
    if (k == 0)
        return 1;
    h->n_acc += k;
    c[C_RX_PACKETS] += k;
    c[C_RX_BYTES] += nbytes;
    c[C_LAST_RX_NS] = last_arrival;
    c[C_BATCHES]++;
    if (sending) {
        int err = 0;
        socklen_t dlen = dfam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        send_run(out_fd, out, k, dest, dlen, &err);
        c[C_TX_PACKETS] += k; /* a full buffer is loss, like the network's: counted as sent */
        c[C_TX_BYTES] += nbytes;
        c[C_LAST_TX_TS] = last_ts;
        c[C_LAST_TX_NS] = last_arrival;
        if (err) {
            c[C_SEND_ERRORS]++;
            c[C_SEND_ERRNO] = err;
        }
    }
    return 1;
}

static void
run_hub(Hub *h)
{
    struct epoll_event evs[EVENTS];
    for (;;) {
        if (h->total >= h->budget) {
            h->status = 1;
            return;
        }
        int n = epoll_wait(h->ep, evs, EVENTS, 0);
        if (n < 0) {
            if (errno == EINTR)
                h->status = 1;
            else
                h->os_err = errno;
            return;
        }
        if (n == 0)
            return;
        int progressed = 0;
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            if (fd < 0 || fd >= h->nfd)
                continue;
            int32_t slot = h->fd_slot[fd];
            if (slot < 0 || slot >= h->nslots ||
                get_i32(h->table + (size_t)slot * ROW_SIZE + R_FD) != fd)
                continue; /* not (or no longer) ours: the Python side unregisters it */
            int r = drain_one(h, slot, fd);
            if (r < 0)
                return;
            progressed |= r;
        }
        if (!progressed || h->status)
            return; /* status 2: a log region is full, fold it first */
        if (h->total >= h->budget || h->n_fb >= h->fb_rows) {
            h->status = 1;
            return;
        }
        if (n < EVENTS)
            return; /* every socket ready at the epoll_wait was read: what came since wakes
                     * the caller's loop again (the set's fd is level-triggered there) */
    }
}

static PyObject *
hub_relay(PyObject *self, PyObject *args)
{
    PyObject *ep_o, *o[7];
    long long clock_off, now_ns;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "OOOOOOOOLLn:hub_relay", &ep_o, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &clock_off, &now_ns, &budget))
        return NULL;
    int ep = PyObject_AsFileDescriptor(ep_o);
    if (ep < 0)
        return NULL;
    static const struct {
        Py_ssize_t itemsize;
        int ndim, writable;
        const char *name;
    } spec[7] = {
        {ROW_SIZE, 1, 0, "table"}, {8, 2, 1, "counters"}, {REC_SIZE, 2, 1, "logs"},
        {4, 1, 0, "fd_slot"},      {1, 2, 1, "scratch"},  {1, 2, 1, "fb_buf"},
        {FB_SIZE, 1, 1, "fb_meta"},
    };
    Py_buffer v[7];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 7; held++)
        if (get_view(o[held], spec[held].itemsize, spec[held].ndim, spec[held].writable,
                     spec[held].name, &v[held]) < 0)
            goto done;
    Hub h = {
        .ep = ep, .table = v[0].buf, .nslots = v[0].shape[0], .cnt = v[1].buf,
        .logs = v[2].buf, .log_rows = v[2].shape[1], .fd_slot = v[3].buf, .nfd = v[3].shape[0],
        .scratch = v[4].buf, .srows = v[4].shape[0], .maxlen = v[4].shape[1],
        .fb_buf = v[5].buf, .fb_rows = v[5].shape[0], .fb_maxlen = v[5].shape[1],
        .fb_meta = v[6].buf, .clock_off = clock_off, .now_ns = now_ns, .budget = budget,
    };
    if (v[1].shape[1] != NCOUNTERS || v[1].shape[0] != h.nslots || v[2].shape[0] != h.nslots) {
        PyErr_Format(PyExc_ValueError,
                     "counters must be (slots, %d) and logs (slots, rows) for %zd slots",
                     NCOUNTERS, h.nslots);
        goto done;
    }
    if (v[6].shape[0] < h.fb_rows)
        h.fb_rows = v[6].shape[0];
    if (h.maxlen < 12 || h.srows < 1 || h.fb_maxlen < 1) {
        PyErr_SetString(PyExc_ValueError, "scratch and fb_buf need rows of 12+ and 1+ bytes");
        goto done;
    }
    if (budget < 0) {
        PyErr_SetString(PyExc_ValueError, "budget must be >= 0");
        goto done;
    }
    for (Py_ssize_t i = 0; i < h.nslots; i++) {
        Py_ssize_t n = (Py_ssize_t)h.cnt[i * NCOUNTERS + C_LOG_N];
        if (n < 0 || n > h.log_rows) {
            PyErr_Format(PyExc_ValueError, "counters[%zd, C_LOG_N] is outside 0..%zd", i,
                         h.log_rows);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    run_hub(&h);
    Py_END_ALLOW_THREADS
    if (h.os_err) {
        errno = h.os_err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = Py_BuildValue("(nni)", h.n_acc, h.n_fb, h.status);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

static PyMethodDef methods[] = {
    {"hub_relay", hub_relay, METH_VARARGS,
     "hub_relay(ep, table, counters, logs, fd_slot, scratch, fb_buf, fb_meta, clock_offset_ns, "
     "now_ns, budget) -> (n_accepted, n_fallback, status)"},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *m)
{
    if (PyModule_AddIntConstant(m, "ROW_SIZE", ROW_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "FB_SIZE", FB_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "NCOUNTERS", NCOUNTERS) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway._relayhub",
    .m_doc = "The relay hub: every relayed leg's RTP socket drained and forwarded in one call.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__relayhub(void)
{
    return PyModuleDef_Init(&moduledef);
}
