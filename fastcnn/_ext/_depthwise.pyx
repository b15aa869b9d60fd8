# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Depthwise 2-D convolution on NHWC arrays: forward, data gradient, weight gradient.

Output channel c is input channel c correlated with its own R x S filter (weights
(R, S, C)); stride, dilation and zero padding (top and left given, bottom and right implied
by the output size) are handled inside the kernels, with no padded copy. A depth
multiplier is the caller's business (``fastcnn.ops._depthwise_plan`` repeats the input
channels).

The forward pass splits the work by output rows, the data gradient by input rows (each
gathers the deltas that reach it), so every element is written by exactly one task. The
weight gradient splits the batch into the caller's fixed chunks and the channels into
vector blocks; each (chunk, block) task sums its images in order into its own slice of
``partial``, which the caller adds up in chunk order: the same result for any thread
count.

The arithmetic is in ``_dw_microkernel.h``, one instance per (type, instruction set),
reached through the table of the instruction set asked for with ``isa`` (-1: the CPU's
best). The arrays arrive validated by ``fastcnn.ops``; nothing here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc

from ._dispatch cimport fc_cpu_isa, resolve_isa
from ._openmp cimport per_thread

cdef extern from "_dw_kernels.h" nogil:
    ctypedef struct fc_dw_geometry:
        Py_ssize_t H, W, C
        Py_ssize_t Ho, Wo
        int R, S
        int sh, sw, dh, dw
        int pt, pl
    ctypedef struct fc_dw_table_f32:
        int lanes
        void (*forward_row)(const fc_dw_geometry *g, const float *x, const float *w,
                            const float *bias, int relu, Py_ssize_t oh,
                            float *y) noexcept nogil
        void (*backward_data_row)(const fc_dw_geometry *g, const float *dy, const float *w,
                                  Py_ssize_t ih, float *dx) noexcept nogil
        void (*weight_grad)(const fc_dw_geometry *g, const float *x, const float *dy,
                            Py_ssize_t n_images, Py_ssize_t c0, Py_ssize_t c_from,
                            float *scratch, float *dw) noexcept nogil
    ctypedef struct fc_dw_table_f64:
        int lanes
        void (*forward_row)(const fc_dw_geometry *g, const double *x, const double *w,
                            const double *bias, int relu, Py_ssize_t oh,
                            double *y) noexcept nogil
        void (*backward_data_row)(const fc_dw_geometry *g, const double *dy, const double *w,
                                  Py_ssize_t ih, double *dx) noexcept nogil
        void (*weight_grad)(const fc_dw_geometry *g, const double *x, const double *dy,
                            Py_ssize_t n_images, Py_ssize_t c0, Py_ssize_t c_from,
                            double *scratch, double *dw) noexcept nogil
    const fc_dw_table_f32 *fc_dw_table_f32_for(int isa)
    const fc_dw_table_f64 *fc_dw_table_f64_for(int isa)

# The CPU's instruction set, detected once at import; a driver's isa=-1 means this one.
cdef int _DETECTED_ISA = fc_cpu_isa()


def cpu_isa():
    """The best SIMD level of this CPU: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return _DETECTED_ISA


def vector_length(int isa, int itemsize):
    """Channels per vector of the depthwise kernels at ``isa`` (``itemsize`` 4 or 8)."""
    isa = resolve_isa(isa, _DETECTED_ISA)
    if itemsize == 4:
        return fc_dw_table_f32_for(isa).lanes
    return fc_dw_table_f64_for(isa).lanes


cdef fc_dw_geometry _geometry(Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t Ho,
                              Py_ssize_t Wo, int R, int S, int sh, int sw, int pt, int pl,
                              int dh, int dw) noexcept:
    cdef fc_dw_geometry g
    g.H, g.W, g.C, g.Ho, g.Wo = H, W, C, Ho, Wo
    g.R, g.S = R, S
    g.sh, g.sw, g.dh, g.dw = sh, sw, dh, dw
    g.pt, g.pl = pt, pl
    return g


def depthwise_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const floating[:, :, ::1] w,          # IN (R, S, C)
    const floating[::1] bias,             # IN (C,) or None
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int sh, int sw, int pt, int pl, int dh, int dw, bint relu, int n_threads, int isa=-1,
):
    """y[n, oh, ow, c] = bias[c] + sum over (r, s) of
    x[n, oh * sh - pt + r * dh, ow * sw - pl + s * dw, c] * w[r, s, c] (zero outside x),
    then max(y, 0) if ``relu``."""
    cdef:
        Py_ssize_t N = x.shape[0], Ho = y.shape[1], Wo = y.shape[2], C = x.shape[3]
        Py_ssize_t n_rows = N * Ho, row
        fc_dw_geometry g = _geometry(x.shape[1], x.shape[2], C, Ho, Wo, w.shape[0],
                                     w.shape[1], sh, sw, pt, pl, dh, dw)
        const floating *xbase
        const floating *wbase
        const floating *bbase = NULL
        floating *ybase
        const fc_dw_table_f32 *k32 = NULL
        const fc_dw_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_dw_table_f32_for(isa)
    else:
        k64 = fc_dw_table_f64_for(isa)
    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    wbase = &w[0, 0, 0]
    if bias is not None:
        bbase = &bias[0]
    ybase = &y[0, 0, 0, 0]
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        if floating is float:
            k32.forward_row(&g, xbase + (row // Ho) * g.H * g.W * C, wbase, bbase, relu,
                            row % Ho, ybase + row * Wo * C)
        else:
            k64.forward_row(&g, xbase + (row // Ho) * g.H * g.W * C, wbase, bbase, relu,
                            row % Ho, ybase + row * Wo * C)


def depthwise_backward_data(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    const floating[:, :, ::1] w,          # IN (R, S, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), every element written
    int sh, int sw, int pt, int pl, int dh, int dw, int n_threads, int isa=-1,
):
    """dx = the gradient of :func:`depthwise_forward`'s output (before any relu) with
    respect to x, for the output gradient dy."""
    cdef:
        Py_ssize_t N = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t n_rows = N * H, row
        fc_dw_geometry g = _geometry(H, W, C, Ho, Wo, w.shape[0], w.shape[1], sh, sw, pt, pl,
                                     dh, dw)
        const floating *dybase
        const floating *wbase
        floating *dxbase
        const fc_dw_table_f32 *k32 = NULL
        const fc_dw_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_dw_table_f32_for(isa)
    else:
        k64 = fc_dw_table_f64_for(isa)
    if n_rows == 0 or W == 0 or C == 0:
        return
    dybase = &dy[0, 0, 0, 0]
    wbase = &w[0, 0, 0]
    dxbase = &dx[0, 0, 0, 0]
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        if floating is float:
            k32.backward_data_row(&g, dybase + (row // H) * Ho * Wo * C, wbase, row % H,
                                  dxbase + row * W * C)
        else:
            k64.backward_data_row(&g, dybase + (row // H) * Ho * Wo * C, wbase, row % H,
                                  dxbase + row * W * C)


def depthwise_backward_weights(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    floating[:, :, :, ::1] partial,       # OUT (n_chunks, R, S, C)
    int sh, int sw, int pt, int pl, int dh, int dw, int n_threads, int isa=-1,
):
    """partial[k, r, s, c] = sum over the images of chunk k (images [k * N // n_chunks,
    (k + 1) * N // n_chunks)) and their output pixels of x (at tap (r, s)) * dy."""
    cdef:
        Py_ssize_t N = x.shape[0], C = x.shape[3]
        Py_ssize_t n_chunks = partial.shape[0]
        int R = partial.shape[1], S = partial.shape[2]
        fc_dw_geometry g = _geometry(x.shape[1], x.shape[2], C, dy.shape[1], dy.shape[2], R,
                                     S, sh, sw, pt, pl, dh, dw)
        Py_ssize_t lanes, n_blocks, n_tasks, task, chunk, blk, first, last, c0, c_from
        Py_ssize_t scratch_len, image_x, image_dy
        const floating *xbase
        const floating *dybase
        floating *pbase
        floating *all_scratch = NULL
        floating *scratch
        const fc_dw_table_f32 *k32 = NULL
        const fc_dw_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_dw_table_f32_for(isa)
        lanes = k32.lanes
    else:
        k64 = fc_dw_table_f64_for(isa)
        lanes = k64.lanes
    if n_chunks == 0 or C == 0:
        return
    n_blocks = (C + lanes - 1) // lanes if C >= lanes else 1
    n_tasks = n_chunks * n_blocks
    scratch_len = per_thread(R * S * lanes, sizeof(floating))
    image_x = g.H * g.W * C
    image_dy = g.Ho * g.Wo * C
    xbase = &x[0, 0, 0, 0] if N > 0 else NULL
    dybase = &dy[0, 0, 0, 0] if N > 0 and image_dy > 0 else NULL
    pbase = &partial[0, 0, 0, 0]
    all_scratch = <floating *> malloc(n_threads * scratch_len * sizeof(floating))
    if all_scratch == NULL:
        raise MemoryError()
    try:
        for task in prange(n_tasks, schedule="static", nogil=True, num_threads=n_threads):
            chunk = task // n_blocks
            blk = task % n_blocks
            first = chunk * N // n_chunks
            last = (chunk + 1) * N // n_chunks
            c_from = blk * lanes
            c0 = min(c_from, C - lanes) if C >= lanes else 0
            scratch = all_scratch + threadid() * scratch_len
            if floating is float:
                k32.weight_grad(&g, xbase + first * image_x, dybase + first * image_dy,
                                last - first, c0, c_from, scratch,
                                pbase + chunk * R * S * C)
            else:
                k64.weight_grad(&g, xbase + first * image_x, dybase + first * image_dy,
                                last - first, c0, c_from, scratch,
                                pbase + chunk * R * S * C)
    finally:
        free(all_scratch)
