# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Max, average and global average pooling on NHWC arrays: forward and backward.

Windows have no padding and the output size is floored. Forward passes split the work
by output rows; each output element is computed by exactly one task. Backward passes
scatter into ``dx`` and overlapping windows add up, so they are split by image: each
image's ``dx`` slice is written by one task in a fixed order, which makes the result
independent of the thread count.

The arrays arrive validated by ``fastcnn._functional_pool`` (shapes, sizes, argmax range);
nothing here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from *:
    """
    #include <stdint.h>
    /* One window element against the running maximum of every channel of an output pixel.
       pos holds the window position (i * pool_w + j) of each channel's maximum, in a type
       as wide as the value (int32 for float; double, exact to 2**53, for double) so that
       gcc vectorises the compare-and-select over channels with plain SSE2 (a 64-bit index
       beside a float compare, or any int64 select, stays scalar: 4x slower). Strict '>'
       keeps the first maximum; NaN wins over any number and, once held, stays. */
    static inline void fc_max_update_f32(const float *restrict x, float *restrict best,
                                         int32_t *restrict pos, int32_t k, Py_ssize_t C) {
        for (Py_ssize_t c = 0; c < C; c++) {
            float b = best[c], v = x[c];
            int take = (b == b) & ((v > b) | (v != v));
            best[c] = take ? v : b;
            pos[c] = take ? k : pos[c];
        }
    }
    static inline void fc_max_update_f64(const double *restrict x, double *restrict best,
                                         double *restrict pos, double k, Py_ssize_t C) {
        for (Py_ssize_t c = 0; c < C; c++) {
            double b = best[c], v = x[c];
            int take = (b == b) & ((v > b) | (v != v));
            best[c] = take ? v : b;
            pos[c] = take ? k : pos[c];
        }
    }
    """
    void fc_max_update_f32(const float *x, float *best, int32_t *pos, int32_t k,
                           Py_ssize_t C) noexcept nogil
    void fc_max_update_f64(const double *x, double *best, double *pos, double k,
                           Py_ssize_t C) noexcept nogil


cdef inline void _max_pixel(const floating *xbase, Py_ssize_t W, Py_ssize_t C, int pool_h,
                            int pool_w, Py_ssize_t ih, Py_ssize_t iw, floating *ypix,
                            int64_t *apix, void *scratch) noexcept nogil:
    """Max of the window whose top-left element is xbase[(ih * W + iw) * C]."""
    cdef:
        int i, j
        Py_ssize_t c
        int32_t *pos32 = <int32_t *> scratch
        double *pos64 = <double *> scratch
        Py_ssize_t k
        const floating *xrow = xbase + (ih * W + iw) * C
    for c in range(C):
        ypix[c] = xrow[c]
    if floating is float:
        for c in range(C):
            pos32[c] = 0
    else:
        for c in range(C):
            pos64[c] = 0
    for i in range(pool_h):
        for j in range(pool_w):
            if i == 0 and j == 0:
                continue
            if floating is float:
                fc_max_update_f32(xrow + (i * W + j) * C, ypix, pos32, i * pool_w + j, C)
            else:
                fc_max_update_f64(xrow + (i * W + j) * C, ypix, pos64, i * pool_w + j, C)
    # window position -> flat index inside the image
    if floating is float:
        for c in range(C):
            apix[c] = (ih + pos32[c] // pool_w) * W + iw + pos32[c] % pool_w
    else:
        for c in range(C):
            k = <Py_ssize_t> pos64[c]
            apix[c] = (ih + k // pool_w) * W + iw + k % pool_w


def max_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int64_t[:, :, :, ::1] argmax,         # OUT (N, Ho, Wo, C), flat ih * W + iw
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads,
):
    """y = max over each window; argmax = the flat in-image index of the maximum.

    Ties go to the first maximum in row-major window order. A window holding NaN gives
    NaN and the index of its first NaN, as ``numpy.max`` / ``numpy.argmax`` do.
    """
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Ho = y.shape[1], Wo = y.shape[2]
        Py_ssize_t n_rows = n_images * Ho
        Py_ssize_t row, n, oh, ow
        const floating *xbase
        char *all_scratch

    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    # per thread: the window position of each channel's maximum (int32 or double)
    all_scratch = <char *> malloc(n_threads * C * sizeof(double))
    try:
        if all_scratch == NULL:
            raise MemoryError()
        for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            for ow in range(Wo):
                _max_pixel(xbase + n * H * W * C, W, C, pool_h, pool_w, oh * stride_h,
                           ow * stride_w, &y[n, oh, ow, 0], &argmax[n, oh, ow, 0],
                           all_scratch + threadid() * C * sizeof(double))
    finally:
        free(all_scratch)


def max_pool2d_backward(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    const int64_t[:, :, :, ::1] argmax,   # IN (N, Ho, Wo, C), each in [0, H*W)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int n_threads,
):
    """dx = 0, then dx[n, a // W, a % W, c] += dy[n, oh, ow, c] with a = argmax[n, oh, ow, c]."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n_outputs = Ho * Wo * C
        Py_ssize_t n, q
        floating *dxbase
        floating *dximg
        const floating *dybase
        const int64_t *abase

    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        dximg = dxbase + n * image_size
        memset(dximg, 0, image_size * sizeof(floating))
        if n_outputs > 0:
            dybase = &dy[n, 0, 0, 0]
            abase = &argmax[n, 0, 0, 0]
            # Output q = (oh * Wo + ow) * C + c; its channel is q % C.
            for q in range(n_outputs):
                dximg[abase[q] * C + q % C] += dybase[q]


def avg_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, :, :, ::1] y,             # OUT (N, Ho, Wo, C)
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads,
):
    """y = mean of each pool_h x pool_w window."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t Ho = y.shape[1], Wo = y.shape[2]
        Py_ssize_t n_rows = n_images * Ho
        Py_ssize_t row, n, oh, ow, ih, iw, c, i, j
        floating count = pool_h * pool_w
        const floating *xbase
        const floating *xpix
        floating *ypix

    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        n = row // Ho
        oh = row % Ho
        for ow in range(Wo):
            ypix = &y[n, oh, ow, 0]
            ih = oh * stride_h
            iw = ow * stride_w
            for c in range(C):
                ypix[c] = 0
            for i in range(pool_h):
                for j in range(pool_w):
                    xpix = xbase + ((n * H + ih + i) * W + iw + j) * C
                    for c in range(C):
                        ypix[c] += xpix[c]
            for c in range(C):
                ypix[c] = ypix[c] / count


def avg_pool2d_backward(
    const floating[:, :, :, ::1] dy,      # IN (N, Ho, Wo, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C), overwritten
    int pool_h, int pool_w, int stride_h, int stride_w, int n_threads,
):
    """dx = 0, then dy / (pool_h * pool_w) is added to every element of its window."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t Ho = dy.shape[1], Wo = dy.shape[2]
        Py_ssize_t image_size = H * W * C
        Py_ssize_t n, oh, ow, ih, iw, c, i, j
        floating count = pool_h * pool_w
        floating *dxbase
        floating *dximg
        floating *dxpix
        const floating *dypix

    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        dximg = dxbase + n * image_size
        memset(dximg, 0, image_size * sizeof(floating))
        for oh in range(Ho):
            for ow in range(Wo):
                dypix = &dy[n, oh, ow, 0]
                ih = oh * stride_h
                iw = ow * stride_w
                for i in range(pool_h):
                    for j in range(pool_w):
                        dxpix = dximg + ((ih + i) * W + iw + j) * C
                        for c in range(C):
                            dxpix[c] += dypix[c] / count


def global_avg_pool2d_forward(
    const floating[:, :, :, ::1] x,       # IN (N, H, W, C)
    floating[:, ::1] y,                   # OUT (N, C)
    int n_threads,
):
    """y[n, c] = mean of x[n, :, :, c], summed in double precision pixel by pixel."""
    cdef:
        Py_ssize_t n_images = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        Py_ssize_t n_pixels = H * W
        Py_ssize_t n, p, c
        const floating *xpix
        double *acc
        double *all_acc

    if n_images == 0 or C == 0:
        return
    all_acc = <double *> malloc(n_threads * C * sizeof(double))
    try:
        if all_acc == NULL:
            raise MemoryError()
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            acc = all_acc + threadid() * C
            for c in range(C):
                acc[c] = 0
            for p in range(n_pixels):
                xpix = &x[0, 0, 0, 0] + (n * n_pixels + p) * C
                for c in range(C):
                    acc[c] += xpix[c]
            for c in range(C):
                y[n, c] = <floating> (acc[c] / n_pixels)
    finally:
        free(all_acc)


def global_avg_pool2d_backward(
    const floating[:, ::1] dy,            # IN (N, C)
    floating[:, :, :, ::1] dx,            # OUT (N, H, W, C)
    int n_threads,
):
    """dx[n, h, w, c] = dy[n, c] / (H * W)."""
    cdef:
        Py_ssize_t n_images = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
        Py_ssize_t n_rows = n_images * H
        Py_ssize_t row, n, w, c
        floating count = H * W
        floating *dxpix
        const floating *dyimg

    if n_rows == 0 or W == 0 or C == 0:
        return
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        n = row // H
        dyimg = &dy[n, 0]
        dxpix = &dx[n, row % H, 0, 0]
        for w in range(W):
            for c in range(C):
                dxpix[w * C + c] = dyimg[c] / count
