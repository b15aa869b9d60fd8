# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Max, average, global average, L2 and spatial pyramid pooling on NHWC arrays: forward
and backward (L2 in _pool_l2.pxi, the pyramid in _pool_pyramid.pxi).

Windows have no padding and the output size is floored. Forward passes split the work
by output rows; each output element is computed by exactly one task. Backward passes
scatter into ``dx`` and overlapping windows add up, so they are split by image: each
image's ``dx`` slice is written by one task in a fixed order, which makes the result
independent of the thread count; max pooling whose windows tile the image instead writes
each ``dx`` row once, split by rows (``max_pool2d_backward_tiled``, the same bits).

The arithmetic is in the micro-kernels of ``_pool_microkernel.h``, one instance per (type,
instruction set), reached through the table of the instruction set detected at import or
asked for with ``isa``.

The arrays arrive validated by ``fastcnn.ops.pool``, ``.l2_pool`` and ``.pyramid``
(shapes, sizes, argmax range, bins); nothing here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from ._dispatch cimport fc_cpu_isa, resolve_isa
from ._openmp cimport per_thread

include "_pool_kernels.pxi"

# The CPU's instruction set, detected once at import; a driver's isa=-1 means this one.
cdef int _DETECTED_ISA = fc_cpu_isa()


def cpu_isa():
    """The best SIMD level of this CPU: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return _DETECTED_ISA


def vector_length(int isa, int itemsize):
    """Elements per SIMD vector of the pooling kernels at ``isa`` (``itemsize`` 4 or 8)."""
    isa = resolve_isa(isa, _DETECTED_ISA)
    if itemsize == 4:
        return fc_pool_table_f32_for(isa).lanes
    return fc_pool_table_f64_for(isa).lanes


# Each driver takes its kernel table once, before any loop. The f32 and f64 tables differ
# in type; fused-type specialisation removes the `floating is float` branches around them.


cdef int _window_init(fc_pool_window *window, int pool_h, int pool_w, Py_ssize_t W,
                      Py_ssize_t C) except -1:
    if _window_make(window, pool_h, pool_w, W, C):
        raise MemoryError()
    return 0


def max_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int64_t[:, :, :, ::1] argmax,         # OUT (N, Ho, Wo, C), flat ih * W + iw
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """y = max over each window; argmax = the flat in-image index of the maximum.

    Ties go to the first maximum in row-major window order. A window holding NaN gives
    NaN and the index of its first NaN, as ``numpy.max`` / ``numpy.argmax`` do.
    ``isa`` picks the SIMD path (-1: the CPU's best).
    """
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Ho = y.shape[1], Wo = y.shape[2]
        Py_ssize_t n_rows = n_images * Ho
        Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C
        Py_ssize_t row, n, oh
        const floating *xbase
        floating *ybase
        int64_t *abase
        floating *scratch
        floating *all_scratch = NULL
        bint narrow
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0, 0]
    abase = &argmax[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    if floating is float:
        narrow = C < k32.narrow_below and window.rel32_fits
    else:
        narrow = C < k64.narrow_below
    try:
        if narrow:
            # per thread: the running maximum and its position along one row
            all_scratch = <floating *> malloc(
                n_threads * per_thread(2 * span, sizeof(floating)) * sizeof(floating))
            if all_scratch == NULL:
                raise MemoryError()
        for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            scratch = NULL
            if narrow:
                scratch = all_scratch + threadid() * per_thread(2 * span, sizeof(floating))
            if floating is float:
                k32.max_row(xbase + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                            scratch, ybase + row * Wo * C, abase + row * Wo * C,
                            oh * stride_h * W)
            else:
                k64.max_row(xbase + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                            scratch, ybase + row * Wo * C, abase + row * Wo * C,
                            oh * stride_h * W)
    finally:
        free(all_scratch)
        _window_free(&window)


def max_pool2d_values_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """y = max over each window, as :func:`max_pool2d_forward` gives it, without the
    positions (prediction: no backward pass to come)."""
    _pool_values(x, y, pool_h, pool_w, stride_h, stride_w, False, n_threads, isa)


cdef void _pool_values(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, int pool_h,
                       int pool_w, int stride_h, int stride_w, bint average, int n_threads,
                       int isa) except *:
    if y.size == 0:
        return
    if _pool_values_images(&x[0, 0, 0, 0], &y[0, 0, 0, 0], x.shape[0], x.shape[1],
                           x.shape[2], x.shape[3], y.shape[1], y.shape[2], pool_h, pool_w,
                           stride_h, stride_w, average, resolve_isa(isa, _DETECTED_ISA),
                           n_threads):
        raise MemoryError()


# The one kernel left in Cython, a scalar loop: it is given no window (any argmax in the
# image is valid), so there are no fixed positions for vectors to compare against.
def max_pool2d_backward(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    const int64_t[:, :, :, ::1] argmax,   # IN (N, Ho, Wo, C), each in [0, H*W)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int n_threads, int isa=-1,
):
    """dx = 0, then dx[n, a // W, a % W, c] += dy[n, oh, ow, c] with a = argmax[n, oh, ow, c]."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n_outputs = Ho * Wo * C
        Py_ssize_t n, q, c
        floating *dxbase
        floating *dximg
        const floating *dyimg
        const int64_t *aimg

    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        dximg = dxbase + n * image_size
        memset(dximg, 0, image_size * sizeof(floating))
        if n_outputs > 0:
            dyimg = &dy[n, 0, 0, 0]
            aimg = &argmax[n, 0, 0, 0]
            # Output q = (oh * Wo + ow) * C + c, in order: overlapping windows add up in a
            # fixed order. One flat loop with a wrapping channel counter: cheaper than q % C,
            # and than a nested channel loop when C is small.
            c = 0
            for q in range(n_outputs):
                dximg[aimg[q] * C + c] += dyimg[q]
                c = c + 1
                if c == C:
                    c = 0


def max_pool2d_forward_tiled(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C), Ho = H // pool_h, ...
    uint8_t[:, :, :, ::1] positions,      # OUT (N, Ho, Wo, C): i * pool_w + j
    int pool_h, int pool_w, int n_threads, int isa=-1,
):
    """:func:`max_pool2d_forward` for windows that tile the image (stride == pool size,
    pool_h * pool_w <= 256): the same y, and each maximum's position in its window, (i, j)
    as i * pool_w + j in one byte (an eighth of the flat int64 index), for
    :func:`max_pool2d_backward_tiled`. Rows and columns past the last window are not
    read."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Ho = y.shape[1], Wo = y.shape[2], row, n, oh
        const floating *xbase
        floating *ybase
        uint8_t *pbase
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if pool_h < 1 or pool_w < 1 or pool_h * pool_w > 256:
        raise ValueError(f"a tiled max pooling's window holds 1 to 256 elements, not "
                         f"{pool_h}x{pool_w}")
    if (y.shape[0] != n_images or Ho != H // pool_h or Wo != W // pool_w or y.shape[3] != C
            or tuple(positions.shape) != tuple(y.shape)):
        raise ValueError("y and positions must be (N, H // pool_h, W // pool_w, C)")
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images * Ho * Wo * C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0, 0]
    pbase = &positions[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        for row in prange(n_images * Ho, schedule="static", nogil=True,
                          num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            if floating is float:
                k32.max_tiled_row(xbase + (n * H + oh * pool_h) * W * C, C, Wo, pool_w,
                                  &window, ybase + row * Wo * C, pbase + row * Wo * C)
            else:
                k64.max_tiled_row(xbase + (n * H + oh * pool_h) * W * C, C, Wo, pool_w,
                                  &window, ybase + row * Wo * C, pbase + row * Wo * C)
    finally:
        _window_free(&window)


def max_pool2d_backward_tiled(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    const uint8_t[:, :, :, ::1] positions,  # IN (N, Ho, Wo, C): max_pool2d_forward_tiled's
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int pool_h, int pool_w, int n_threads, relu_y=None, int isa=-1,
):
    """:func:`max_pool2d_backward` for windows that tile the image (stride == pool size,
    so no two overlap), written row by row in one pass, with no zeroing pass first: the
    same dx, from the maxima's window positions (:func:`max_pool2d_forward_tiled`'s). With
    ``relu_y`` (the pooled output, (N, Ho, Wo, C)) the gradient of a relu before the
    pooling is applied too (dy where the pooled value is above zero, else 0: the relu's
    own output is above zero exactly where its window's maximum is)."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t row, n, ih, oh
        const floating[:, :, :, ::1] ry
        const floating *rybase = NULL
        const floating *ryrow
        floating *dxbase
        const floating *dybase
        const uint8_t *abase
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if tuple(positions.shape) != tuple(dy.shape) or pool_h * pool_w > 256 \
            or Ho != H // pool_h or Wo != W // pool_w:
        raise ValueError("positions must have dy's shape (N, H // pool_h, W // pool_w, C) "
                         "and the window at most 256 elements")
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or H * W * C == 0:
        return
    if relu_y is not None:
        ry = relu_y
        if Ho * Wo > 0:
            rybase = &ry[0, 0, 0, 0]
    dxbase = &dx[0, 0, 0, 0]
    if Ho * Wo * C == 0:
        memset(dxbase, 0, n_images * H * W * C * sizeof(floating))
        return
    dybase = &dy[0, 0, 0, 0]
    abase = &positions[0, 0, 0, 0]
    for row in prange(n_images * H, schedule="static", nogil=True, num_threads=n_threads):
        n = row // H
        ih = row % H
        oh = ih // pool_h
        if oh >= Ho:
            memset(dxbase + row * W * C, 0, W * C * sizeof(floating))
        else:
            ryrow = NULL
            if rybase != NULL:
                ryrow = rybase + (n * Ho + oh) * Wo * C
            if floating is float:
                k32.max_backward_tiled_row(dxbase + row * W * C,
                                           dybase + (n * Ho + oh) * Wo * C,
                                           abase + (n * Ho + oh) * Wo * C, ryrow, Wo, C,
                                           pool_w, <int> (ih % pool_h) * pool_w)
            else:
                k64.max_backward_tiled_row(dxbase + row * W * C,
                                           dybase + (n * Ho + oh) * Wo * C,
                                           abase + (n * Ho + oh) * Wo * C, ryrow, Wo, C,
                                           pool_w, <int> (ih % pool_h) * pool_w)
            memset(dxbase + row * W * C + Wo * pool_w * C, 0,
                   (W - Wo * pool_w) * C * sizeof(floating))


def avg_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """y = mean of each pool_h x pool_w window."""
    _pool_values(x, y, pool_h, pool_w, stride_h, stride_w, True, n_threads, isa)


def avg_pool2d_backward(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads, int isa=-1,
):
    """dx = 0, then dy / (pool_h * pool_w) is added to every element of its window."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n, oh
        floating count = pool_h * pool_w
        floating *dxbase
        floating *dximg
        const floating *dybase = NULL
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    if Ho > 0 and Wo > 0:
        dybase = &dy[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            dximg = dxbase + n * image_size
            memset(dximg, 0, image_size * sizeof(floating))
            if dybase == NULL:
                continue
            # output rows in order: overlapping windows add up in a fixed order
            for oh in range(Ho):
                if floating is float:
                    k32.avg_backward_row(dximg + oh * stride_h * W * C, C, Wo, stride_w,
                                         &window, count, dybase + (n * Ho + oh) * Wo * C)
                else:
                    k64.avg_backward_row(dximg + oh * stride_h * W * C, C, Wo, stride_w,
                                         &window, count, dybase + (n * Ho + oh) * Wo * C)
    finally:
        _window_free(&window)


def global_avg_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, ::1] y,                   # OUT (N, C)
    int n_threads, int isa=-1,
):
    """y[n, c] = mean of x[n, :, :, c], summed in double precision pixel by pixel."""
    cdef Py_ssize_t n_images = x.shape[0], C = x.shape[3]
    isa = resolve_isa(isa, _DETECTED_ISA)
    if n_images == 0 or C == 0:
        return
    _global_avg_images(&x[0, 0, 0, 0] if x.shape[1] * x.shape[2] > 0 else NULL, &y[0, 0],
                       n_images, x.shape[1] * x.shape[2], C, isa, n_threads)


def global_avg_pool2d_backward(
    const floating[:, ::1] dy,            # IN (N, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C)
    int n_threads, int isa=-1,
):
    """dx[n, h, w, c] = dy[n, c] / (H * W)."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t n_rows = n_images * H
        Py_ssize_t row
        floating count = H * W
        const floating *dybase
        floating *dxbase
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_rows == 0 or W == 0 or C == 0:
        return
    dybase = &dy[0, 0]
    dxbase = &dx[0, 0, 0, 0]
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        if floating is float:
            k32.global_avg_backward_row(dybase + (row // H) * C, W, C, count,
                                        dxbase + row * W * C)
        else:
            k64.global_avg_backward_row(dybase + (row // H) * C, W, C, count,
                                        dxbase + row * W * C)


include "_pool_l2.pxi"
include "_pool_pyramid.pxi"
