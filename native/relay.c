/*
 * gateway._udpbatch.relay_batch: the two-party relay's per-batch work in one call.
 *
 * Part of the gateway._udpbatch module (native/udpbatch.c adds these methods at
 * module exec). Pure-Python/NumPy twin with the identical signature and results:
 * gateway/rtp/udpbatch.py `_relay_batch_py`, which documents the arguments.
 *
 *   relay_batch(buf, lengths, addrs, ts_ns, count, expect, pt_mask, rows, accepted,
 *               clock_offset_ns, now_ns, out_fd, dest)
 *       -> (n_accepted, nbytes, n_sent, last_ts, send_errno)
 *
 * For rows 0..count-1 of a received batch: a datagram is accepted when it came
 * from `expect` (a 28-byte sockaddr slot: family, port and address compared), was
 * not truncated, is RTP version 2 with room for its CSRCs, is not RTCP on a
 * multiplexed port (second byte 192..223) and pt_mask[payload type] is non-zero.
 * accepted[i] (uint8) says which; each accepted datagram gets one PACKET_DTYPE
 * record (gateway/quality/records.py, 22 packed bytes) in rows[0..n_accepted-1],
 * in batch order; arrival_ns is ts_ns[i] - clock_offset_ns, or now_ns without a
 * kernel stamp. When dest is not None and out_fd >= 0 the accepted datagrams
 * leave on out_fd to dest with sendmmsg, runs of equal size as one UDP GSO message
 * each (GIL released, EINTR retried, EAGAIN is loss like the network's). A send error is returned as send_errno (0: none),
 * never raised: the records are already written. Bad buffers raise
 * TypeError/ValueError before anything is written or sent.
 */
#define _GNU_SOURCE
#include <Python.h>

#include "common.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>


/* UDP GSO (UDP_SEGMENT, Linux 4.18+): a run of equal-sized datagrams to one destination
 * leaves as one message the kernel cuts into datagrams, identical on the wire to sending
 * them one by one; the stack is walked once per run instead of once per datagram. Turned
 * off for the process when the kernel or the route refuses it. */
static int gso_ok = 1;

/* Send rows idx[0..k-1] to dest; returns datagrams sent. EAGAIN ends it quietly (loss, like
 * the network's); another error is stored in *err (-1: a Python exception from a signal
 * handler is set). Called with the GIL, released around each syscall; EINTR is retried. */
static Py_ssize_t
send_accepted(int fd, unsigned char *base, size_t maxlen, const int32_t *lens,
              const Py_ssize_t *idx, int k, void *dest, socklen_t dest_len, int *err)
{
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    GsoCtrl ctrl[CHUNK];
    int segs[CHUNK];
    for (int j = 0; j < k; j++) {
        iov[j].iov_base = base + (size_t)idx[j] * maxlen;
        iov[j].iov_len = (size_t)lens[idx[j]];
    }
    int gso = gso_ok;
again:;
    int m = gso_messages(iov, k, dest, dest_len, gso, msgs, ctrl, segs);
    Py_ssize_t sent = 0;
    int done = 0;
    while (done < m) {
        int got, e = 0;
        Py_BEGIN_ALLOW_THREADS
        got = sendmmsg(fd, msgs + done, (unsigned int)(m - done), MSG_DONTWAIT);
        if (got < 0)
            e = errno;
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (e == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    *err = -1; /* a Python exception is set */
                    return sent;
                }
                continue;
            }
            if (gso && segs[done] > 1 && sent == 0 && done == 0 &&
                (e == EIO || e == EINVAL || e == ENOPROTOOPT || e == EOPNOTSUPP)) {
                gso_ok = gso = 0; /* no GSO here: the same datagrams one by one */
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

static PyObject *
relay_batch(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *len_o, *addr_o, *ts_o, *exp_o, *mask_o, *rows_o, *acc_o, *dest_o;
    Py_ssize_t count;
    long long clock_off, now_ns;
    int out_fd;
    Py_buffer v[9];
    int held = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OOOOnOOOOLLiO:relay_batch", &buf_o, &len_o, &addr_o, &ts_o,
                          &count, &exp_o, &mask_o, &rows_o, &acc_o, &clock_off, &now_ns, &out_fd,
                          &dest_o))
        return NULL;
    struct {
        PyObject *o;
        Py_ssize_t itemsize;
        int ndim, writable;
        const char *name;
    } spec[] = {
        {buf_o, 1, 2, 0, "buf"},          {len_o, 4, 1, 0, "lengths"},
        {addr_o, ADDR_SIZE, 1, 0, "addrs"}, {ts_o, 8, 1, 0, "ts_ns"},
        {exp_o, 0, 1, 0, "expect"},        {mask_o, 0, 1, 0, "pt_mask"},
        {rows_o, REC_SIZE, 1, 1, "rows"},  {acc_o, 1, 1, 1, "accepted"},
        {dest_o, 0, 1, 0, "dest"},
    };
    int nspec = dest_o == Py_None ? 8 : 9;
    for (; held < nspec; held++)
        if (get_view(spec[held].o, spec[held].itemsize, spec[held].ndim, spec[held].writable,
                     spec[held].name, &v[held]) < 0)
            goto done;
    if (v[0].shape[1] < 12) {
        PyErr_SetString(PyExc_ValueError, "buf rows must hold an RTP header (12+ bytes)");
        goto done;
    }
    Py_ssize_t cap = v[0].shape[0];
    for (int k = 1; k < 4; k++)
        if (v[k].shape[0] < cap)
            cap = v[k].shape[0];
    if (v[6].shape[0] < cap)
        cap = v[6].shape[0];
    if (v[7].shape[0] < cap)
        cap = v[7].shape[0];
    if (count < 0 || count > cap) {
        PyErr_Format(PyExc_ValueError, "count must be in 0..%zd (the smallest buffer), got %zd",
                     cap, count);
        goto done;
    }
    if (v[4].len != ADDR_SIZE || (nspec == 9 && v[8].len != ADDR_SIZE)) {
        PyErr_SetString(PyExc_ValueError, "expect and dest must be 28-byte address slots");
        goto done;
    }
    if (v[5].len != 128) {
        PyErr_SetString(PyExc_ValueError, "pt_mask must be 128 bytes");
        goto done;
    }
    sa_family_t efam;
    memcpy(&efam, v[4].buf, sizeof efam);
    if (efam != AF_INET && efam != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "expect must hold an AF_INET or AF_INET6 address");
        goto done;
    }
    socklen_t dest_len = 0;
    if (nspec == 9) {
        sa_family_t dfam;
        memcpy(&dfam, v[8].buf, sizeof dfam);
        if (dfam != AF_INET && dfam != AF_INET6) {
            PyErr_SetString(PyExc_ValueError, "dest must hold an AF_INET or AF_INET6 address");
            goto done;
        }
        dest_len = dfam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    }

    const Py_ssize_t maxlen = v[0].shape[1];
    unsigned char *base = v[0].buf;
    const int32_t *lens = v[1].buf;
    const unsigned char *addrs = v[2].buf, *expect = v[4].buf, *mask = v[5].buf;
    const int64_t *ts_ns = v[3].buf;
    unsigned char *rec = v[6].buf, *acc = v[7].buf;

    Py_ssize_t n_acc = 0;
    long long nbytes = 0;
    uint32_t last_ts = 0;
    Py_ssize_t idx[CHUNK];
    Py_ssize_t n_sent = 0;
    int send_errno = 0;
    int sending = nspec == 9 && out_fd >= 0;

    for (Py_ssize_t start = 0; start < count; start += CHUNK) {
        Py_ssize_t end = count - start < CHUNK ? count : start + CHUNK;
        int k = 0;
        for (Py_ssize_t i = start; i < end; i++) {
            const unsigned char *p = base + (size_t)i * (size_t)maxlen;
            int32_t n = lens[i];
            uint8_t b0 = p[0], b1 = p[1];
            int ok = n >= 12 && n <= maxlen && (b0 >> 6) == 2 && n >= 12 + 4 * (b0 & 0x0F) &&
                     (b1 < 192 || b1 > 223) && mask[b1 & 0x7F] &&
                     same_addr(addrs + (size_t)i * ADDR_SIZE, expect);
            acc[i] = (unsigned char)ok;
            if (!ok)
                continue;
            unsigned char *r = rec + (size_t)n_acc * REC_SIZE;
            int64_t t = ts_ns[i];
            put64(r, (uint64_t)(t ? t - clock_off : now_ns));
            put16(r + 8, (uint16_t)(p[2] << 8 | p[3]));
            last_ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
            put32(r + 10, last_ts);
            put32(r + 14, (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11]);
            r[18] = b1 & 0x7F;
            r[19] = b1 >> 7;
            put16(r + 20, (uint16_t)(n > 0xFFFF ? 0xFFFF : n));
            n_acc++;
            nbytes += n;
            idx[k++] = i;
        }
        if (!sending || k == 0 || send_errno)
            continue;
        n_sent += send_accepted(out_fd, base, (size_t)maxlen, lens, idx, k, v[8].buf, dest_len,
                                &send_errno);
        if (send_errno == -1)
            goto done;
    }
    result = Py_BuildValue("(nLnkI)", n_acc, nbytes, n_sent, (unsigned long)last_ts,
                           (unsigned int)send_errno);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

static PyMethodDef relay_methods[] = {
    {"relay_batch", relay_batch, METH_VARARGS,
     "relay_batch(buf, lengths, addrs, ts_ns, count, expect, pt_mask, rows, accepted, "
     "clock_offset_ns, now_ns, out_fd, dest) -> (n_accepted, nbytes, n_sent, last_ts, "
     "send_errno)"},
    {NULL, NULL, 0, NULL},
};

/* Called from gateway._udpbatch's module exec. */
int
vtcgw_relay_add(PyObject *m)
{
    return PyModule_AddFunctions(m, relay_methods);
}
