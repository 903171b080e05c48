/*
 * Helpers shared by the native modules (udpbatch/relay, mixrecv, relayhub): buffer
 * views over caller-owned NumPy arrays, little-endian stores into packed records, and the
 * 28-byte sockaddr slots the batch calls compare and send to. Header-only (static), so
 * each extension module stays one self-contained shared object.
 */
#ifndef VTCGW_NATIVE_COMMON_H
#define VTCGW_NATIVE_COMMON_H

#include <Python.h>

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define ADDR_SIZE 28 /* sockaddr_in6 (or sockaddr_in, zero-padded) as udpbatch.ADDR_DTYPE */
#define REC_SIZE 22  /* PACKET_DTYPE: <i8 arrival_ns, <u2 seq, <u4 ts, <u4 ssrc, u1 pt, ? marker, <u2 size */
#define CHUNK 64     /* datagrams per recvmmsg/sendmmsg call */

/* A C-contiguous view of `obj` with `ndim` dimensions and items of `itemsize` bytes (0: any
 * size), writable when asked; raises TypeError/ValueError naming `name` and returns -1.
 * No PyBUF_FORMAT: only sizes are checked, and NumPy would build a format string for a
 * structured dtype (the packet records) on every request. */
static inline int
get_view(PyObject *obj, Py_ssize_t itemsize, int ndim, int writable, const char *name,
         Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous buffer", name);
        return -1;
    }
    if ((itemsize && view->itemsize != itemsize) || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s has the wrong item size or dimensions", name);
        goto fail;
    }
    if (writable && view->readonly) {
        PyErr_Format(PyExc_TypeError, "%s must be writable", name);
        goto fail;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous", name);
        goto fail;
    }
    return 0;
fail:
    PyBuffer_Release(view);
    return -1;
}

static inline void
put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void
put32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static inline void
put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

/* Same source: family and port, then the IPv4 address or the IPv6 address and scope. An
 * expected slot of another family (0: nothing latched yet) matches nothing. */
static inline int
same_addr(const unsigned char *a, const unsigned char *e)
{
    sa_family_t fam;
    memcpy(&fam, e, sizeof fam);
    if ((fam != AF_INET && fam != AF_INET6) || memcmp(a, e, 4) != 0)
        return 0;
    if (fam == AF_INET)
        return memcmp(a + 4, e + 4, 4) == 0;
    return memcmp(a + 8, e + 8, 20) == 0;
}

/* UDP GSO (UDP_SEGMENT, Linux 4.18+): a run of equal-sized datagrams to one destination
 * leaves as one message the kernel cuts into datagrams, identical on the wire to sending
 * them one by one; the stack is walked once per run instead of once per datagram. */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 60000

typedef union {
    char bytes[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} GsoCtrl;

/* Fill msgs[] (zeroed here) for datagrams iov[0..k-1] to dest: with gso, each run of equal
 * sizes becomes one message with a UDP_SEGMENT control; segs[m] counts the datagrams of
 * message m. Returns the number of messages. */
static inline int
gso_messages(struct iovec *iov, int k, void *dest, socklen_t dest_len, int gso,
             struct mmsghdr *msgs, GsoCtrl *ctrl, int *segs)
{
    int m = 0;
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)k);
    for (int j = 0; j < k; m++) {
        int run = 1;
        size_t len = iov[j].iov_len;
        if (gso && len > 0)
            while (j + run < k && run < GSO_MAX_SEGS && iov[j + run].iov_len == len &&
                   len * (size_t)(run + 1) <= GSO_MAX_BYTES)
                run++;
        struct msghdr *h = &msgs[m].msg_hdr;
        h->msg_name = dest;
        h->msg_namelen = dest_len;
        h->msg_iov = &iov[j];
        h->msg_iovlen = (size_t)run;
        if (run > 1) {
            h->msg_control = ctrl[m].bytes;
            h->msg_controllen = sizeof ctrl[m].bytes;
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)len;
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
        segs[m] = run;
        j += run;
    }
    return m;
}

#endif
