/*
 * gateway._udpbatch: batched UDP receive/send over caller-owned buffers.
 *
 * One concern, three calls (pure-Python twin with the identical signature and
 * results: gateway/rtp/udpbatch.py, which documents the buffer layouts):
 *
 *   recv_batch(fd, buf, lengths, addrs, ts_ns, max_count) -> int
 *       recvmmsg(MSG_DONTWAIT | MSG_TRUNC) into the rows of buf (uint8, N x maxlen,
 *       C-contiguous). lengths[i] is the datagram's size on the wire: a value above
 *       maxlen means the datagram was truncated to maxlen bytes. addrs[i] receives
 *       the raw source sockaddr (28-byte slots, ADDR_DTYPE), ts_ns[i] the kernel
 *       receive time (SO_TIMESTAMPNS, CLOCK_REALTIME ns) or 0 when absent. addrs
 *       and ts_ns may be None. Returns the count; 0 when nothing is queued.
 *   send_batch(fd, buf, lengths, dst_addrs, count) -> int
 *       sendmmsg(MSG_DONTWAIT) of rows 0..count-1, each to dst_addrs[i] (or to the
 *       connected peer when dst_addrs is None). Short kernel returns are resumed
 *       until all are sent or the socket says EAGAIN; returns the count sent.
 *   enable_timestamps(fd) -> None        setsockopt(SO_TIMESTAMPNS, 1)
 *   relay_batch(...)                     the relay's per-batch work (native/relay.c)
 *   rtp_stats(...)                       the quality engine's per-stream loop (native/rtpstats.c)
 *
 * Rules: limited API (abi3, 3.11+) only; the GIL is released around each
 * syscall; EINTR is retried after running Python signal handlers (PEP 475);
 * an error before anything was transferred raises OSError with errno, an error
 * after some datagrams returns the count so far (the kernel reports it again
 * on the next call); bad buffers raise TypeError/ValueError before any syscall.
 */
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#define ADDR_SIZE 28 /* sizeof(struct sockaddr_in6): holds an IPv4 or IPv6 sockaddr */
#define CHUNK 64     /* messages per syscall; bounds the stack used per call */
#define CTRL_SIZE CMSG_SPACE(sizeof(struct timespec))

_Static_assert(sizeof(struct sockaddr_in6) == ADDR_SIZE, "sockaddr_in6 is 28 bytes");

/* ---------------------------------------------------------------- buffers */

/* A NumPy-style integer format code of the given byte size and signedness. */
static int
int_format_ok(const char *fmt, Py_ssize_t itemsize, Py_ssize_t want_size)
{
    if (fmt == NULL || itemsize != want_size)
        return 0;
    if (*fmt == '@' || *fmt == '=')
        fmt++;
#if PY_LITTLE_ENDIAN
    else if (*fmt == '<')
        fmt++;
#else
    else if (*fmt == '>' || *fmt == '!')
        fmt++;
#endif
    if (fmt[0] == '\0' || fmt[1] != '\0')
        return 0;
    return strchr("bhilq", fmt[0]) != NULL; /* signed integers only */
}

enum kind { K_BYTES2D, K_INT32, K_INT64, K_ADDR };

static const char *kind_name[] = {
    "a C-contiguous 2-D uint8 array (N x maxlen)",
    "a C-contiguous 1-D int32 array",
    "a C-contiguous 1-D int64 array",
    "a C-contiguous 1-D array of 28-byte address slots (ADDR_DTYPE)",
};

/* Get and check one buffer argument. On success the view must be released. */
static int
get_buf(PyObject *obj, enum kind kind, int writable, const char *name, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be %s", name, kind_name[kind]);
        return -1;
    }
    int type_ok = 0, shape_ok = 0;
    switch (kind) {
    case K_BYTES2D:
        type_ok = view->itemsize == 1;
        shape_ok = view->ndim == 2 && view->shape[1] > 0;
        break;
    case K_INT32:
        type_ok = int_format_ok(view->format, view->itemsize, 4);
        shape_ok = view->ndim == 1;
        break;
    case K_INT64:
        type_ok = int_format_ok(view->format, view->itemsize, 8);
        shape_ok = view->ndim == 1;
        break;
    case K_ADDR:
        type_ok = view->itemsize == ADDR_SIZE;
        shape_ok = view->ndim == 1;
        break;
    }
    if (!type_ok) {
        PyErr_Format(PyExc_TypeError, "%s must be %s", name, kind_name[kind]);
        goto fail;
    }
    if (writable && view->readonly) {
        PyErr_Format(PyExc_TypeError, "%s must be writable", name);
        goto fail;
    }
    if (!shape_ok || !PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s must be %s", name, kind_name[kind]);
        goto fail;
    }
    return 0;
fail:
    PyBuffer_Release(view);
    return -1;
}

static Py_ssize_t
rows(const Py_buffer *v)
{
    return v->shape[0];
}

/* ---------------------------------------------------------------- recv */

static PyObject *
recv_batch(PyObject *self, PyObject *args)
{
    PyObject *fd_obj, *buf_obj, *len_obj, *addr_obj, *ts_obj;
    Py_ssize_t max_count;
    Py_buffer buf = {0}, lens = {0}, addrs = {0}, ts = {0};
    int have_buf = 0, have_lens = 0, have_addrs = 0, have_ts = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OOOOOn:recv_batch", &fd_obj, &buf_obj, &len_obj, &addr_obj,
                          &ts_obj, &max_count))
        return NULL;
    int fd = PyObject_AsFileDescriptor(fd_obj);
    if (fd < 0)
        return NULL;
    if (get_buf(buf_obj, K_BYTES2D, 1, "buf", &buf) < 0)
        goto done;
    have_buf = 1;
    if (get_buf(len_obj, K_INT32, 1, "lengths", &lens) < 0)
        goto done;
    have_lens = 1;
    Py_ssize_t cap = rows(&buf) < rows(&lens) ? rows(&buf) : rows(&lens);
    if (addr_obj != Py_None) {
        if (get_buf(addr_obj, K_ADDR, 1, "addrs", &addrs) < 0)
            goto done;
        have_addrs = 1;
        if (rows(&addrs) < cap)
            cap = rows(&addrs);
    }
    if (ts_obj != Py_None) {
        if (get_buf(ts_obj, K_INT64, 1, "ts_ns", &ts) < 0)
            goto done;
        have_ts = 1;
        if (rows(&ts) < cap)
            cap = rows(&ts);
    }
    if (max_count < 0 || max_count > cap) {
        PyErr_Format(PyExc_ValueError, "max_count must be in 0..%zd (the smallest buffer), got %zd",
                     cap, max_count);
        goto done;
    }

    const size_t maxlen = (size_t)buf.shape[1];
    unsigned char *base = buf.buf;
    int32_t *out_len = lens.buf;
    unsigned char *out_addr = have_addrs ? addrs.buf : NULL;
    int64_t *out_ts = have_ts ? ts.buf : NULL;

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    union {
        char bytes[CTRL_SIZE];
        struct cmsghdr align;
    } ctrl[CHUNK];

    Py_ssize_t total = 0;
    while (total < max_count) {
        unsigned int k = (unsigned int)(max_count - total < CHUNK ? max_count - total : CHUNK);
        memset(msgs, 0, sizeof(struct mmsghdr) * k);
        for (unsigned int i = 0; i < k; i++) {
            Py_ssize_t row = total + i;
            iov[i].iov_base = base + (size_t)row * maxlen;
            iov[i].iov_len = maxlen;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (out_addr) {
                msgs[i].msg_hdr.msg_name = out_addr + (size_t)row * ADDR_SIZE;
                msgs[i].msg_hdr.msg_namelen = ADDR_SIZE;
            }
            if (out_ts) {
                msgs[i].msg_hdr.msg_control = ctrl[i].bytes;
                msgs[i].msg_hdr.msg_controllen = CTRL_SIZE;
            }
        }
        int n, err = 0;
        Py_BEGIN_ALLOW_THREADS
        n = recvmmsg(fd, msgs, k, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (n < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto done;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK || total > 0)
                break;
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            Py_ssize_t row = total + i;
            out_len[row] = (int32_t)msgs[i].msg_len;
            if (out_addr && msgs[i].msg_hdr.msg_namelen < ADDR_SIZE)
                memset(out_addr + (size_t)row * ADDR_SIZE + msgs[i].msg_hdr.msg_namelen, 0,
                       ADDR_SIZE - msgs[i].msg_hdr.msg_namelen);
            if (out_ts) {
                int64_t t = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
                        c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                        struct timespec tv;
                        memcpy(&tv, CMSG_DATA(c), sizeof tv);
                        t = (int64_t)tv.tv_sec * 1000000000LL + (int64_t)tv.tv_nsec;
                    }
                }
                out_ts[row] = t;
            }
        }
        total += n;
        if ((unsigned int)n < k)
            break; /* queue drained */
    }
    result = PyLong_FromSsize_t(total);
done:
    if (have_ts)
        PyBuffer_Release(&ts);
    if (have_addrs)
        PyBuffer_Release(&addrs);
    if (have_lens)
        PyBuffer_Release(&lens);
    if (have_buf)
        PyBuffer_Release(&buf);
    return result;
}

/* ---------------------------------------------------------------- send */

static PyObject *
send_batch(PyObject *self, PyObject *args)
{
    PyObject *fd_obj, *buf_obj, *len_obj, *addr_obj;
    Py_ssize_t count;
    Py_buffer buf = {0}, lens = {0}, addrs = {0};
    int have_buf = 0, have_lens = 0, have_addrs = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OOOOn:send_batch", &fd_obj, &buf_obj, &len_obj, &addr_obj,
                          &count))
        return NULL;
    int fd = PyObject_AsFileDescriptor(fd_obj);
    if (fd < 0)
        return NULL;
    if (get_buf(buf_obj, K_BYTES2D, 0, "buf", &buf) < 0)
        goto done;
    have_buf = 1;
    if (get_buf(len_obj, K_INT32, 0, "lengths", &lens) < 0)
        goto done;
    have_lens = 1;
    Py_ssize_t cap = rows(&buf) < rows(&lens) ? rows(&buf) : rows(&lens);
    if (addr_obj != Py_None) {
        if (get_buf(addr_obj, K_ADDR, 0, "dst_addrs", &addrs) < 0)
            goto done;
        have_addrs = 1;
        if (rows(&addrs) < cap)
            cap = rows(&addrs);
    }
    if (count < 0 || count > cap) {
        PyErr_Format(PyExc_ValueError, "count must be in 0..%zd (the smallest buffer), got %zd",
                     cap, count);
        goto done;
    }

    const Py_ssize_t maxlen = buf.shape[1];
    unsigned char *base = buf.buf;
    const int32_t *in_len = lens.buf;
    unsigned char *in_addr = have_addrs ? addrs.buf : NULL;

    /* Validate every row before the first byte leaves. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (in_len[i] < 0 || in_len[i] > maxlen) {
            PyErr_Format(PyExc_ValueError, "lengths[%zd]=%d is outside 0..%zd", i, (int)in_len[i],
                         maxlen);
            goto done;
        }
        if (in_addr) {
            sa_family_t fam;
            memcpy(&fam, in_addr + (size_t)i * ADDR_SIZE, sizeof fam);
            if (fam != AF_INET && fam != AF_INET6) {
                PyErr_Format(PyExc_ValueError, "dst_addrs[%zd] has address family %d", i, (int)fam);
                goto done;
            }
        }
    }

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    Py_ssize_t total = 0;
    while (total < count) {
        unsigned int k = (unsigned int)(count - total < CHUNK ? count - total : CHUNK);
        memset(msgs, 0, sizeof(struct mmsghdr) * k);
        for (unsigned int i = 0; i < k; i++) {
            Py_ssize_t row = total + i;
            iov[i].iov_base = base + (size_t)row * (size_t)maxlen;
            iov[i].iov_len = (size_t)in_len[row];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (in_addr) {
                unsigned char *a = in_addr + (size_t)row * ADDR_SIZE;
                sa_family_t fam;
                memcpy(&fam, a, sizeof fam);
                msgs[i].msg_hdr.msg_name = a;
                msgs[i].msg_hdr.msg_namelen =
                    fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
            }
        }
        int n, err = 0;
        Py_BEGIN_ALLOW_THREADS
        n = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        if (n < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto done;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK || total > 0)
                break;
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        total += n; /* a short return is resumed from the first unsent row */
    }
    result = PyLong_FromSsize_t(total);
done:
    if (have_addrs)
        PyBuffer_Release(&addrs);
    if (have_lens)
        PyBuffer_Release(&lens);
    if (have_buf)
        PyBuffer_Release(&buf);
    return result;
}

/* ---------------------------------------------------------------- options */

static PyObject *
enable_timestamps(PyObject *self, PyObject *fd_obj)
{
    int fd = PyObject_AsFileDescriptor(fd_obj);
    if (fd < 0)
        return NULL;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, buf, lengths, addrs, ts_ns, max_count) -> int"},
    {"send_batch", send_batch, METH_VARARGS,
     "send_batch(fd, buf, lengths, dst_addrs, count) -> int"},
    {"enable_timestamps", enable_timestamps, METH_O, "enable_timestamps(fd) -> None"},
    {NULL, NULL, 0, NULL},
};

int vtcgw_relay_add(PyObject *m);    /* native/relay.c */
int vtcgw_rtpstats_add(PyObject *m); /* native/rtpstats.c */

static int
exec_module(PyObject *m)
{
    if (vtcgw_relay_add(m) < 0 || vtcgw_rtpstats_add(m) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "ADDR_SIZE", ADDR_SIZE) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "SO_TIMESTAMPNS", SO_TIMESTAMPNS) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway._udpbatch",
    .m_doc = "Batched UDP receive/send (recvmmsg/sendmmsg) over caller-owned buffers.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__udpbatch(void)
{
    return PyModuleDef_Init(&moduledef);
}
