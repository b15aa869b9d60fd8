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
from libc.stdint cimport INT32_MAX, int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._openmp cimport per_thread

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* 16-byte vectors: SSE2 on any x86-64, NEON on arm64. */
    typedef float fc_f32x4 __attribute__((vector_size(16)));
    typedef int32_t fc_i32x4 __attribute__((vector_size(16)));
    typedef double fc_f64x2 __attribute__((vector_size(16)));
    typedef int64_t fc_i64x2 __attribute__((vector_size(16)));

    /* a where the mask m is all ones, else b. Masks and selects go through 32-bit lanes
       even for double (the bits are the same): with 64-bit lanes gcc turns the select into
       per-lane scalar code, plain SSE2 having no 64-bit compare, and double gets slower
       than the old per-element loop. */
    static inline fc_i32x4 fc_select(fc_i32x4 m, fc_i32x4 a, fc_i32x4 b) {
        return (m & a) | (~m & b);
    }

    /* The max rule everywhere: strict '>' keeps the first maximum; NaN wins over any
       number and, once held, stays. */

    /* Window kernels: one output pixel, its whole window held in registers, two 16-byte
       vectors of channels at a time: [0, L) and [second, second + L) (L lanes, second <= L,
       so the two may overlap). offset[k] is window element k's offset from the window's
       first element, rel[k] its flat in-image offset i * W + j, k in row-major window
       order. One loop over a table instead of over (i, j) and channels keeps the work per
       element small for small C (LeNet's 6 and 16 channels).

       S: name suffix; T: element; V: vector of T; M: vector of T-wide integers, the
       positions; R: the rel[] element type (int32 for float: an int64 position beside a
       float compare is not vectorised). Selects are written with masks (fc_select): GCC's
       C front end has no vector '?:'. */
    #define FC_POOL_KERNELS(S, T, V, M, R)                                                    \
    static inline V fc_load_##S(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }      \
    static inline void fc_store_##S(T *p, V v) { memcpy(p, &v, sizeof v); }                  \
                                                                                              \
    static inline void fc_max_window_##S(const T *restrict x, Py_ssize_t second,             \
            const Py_ssize_t *restrict offset, const R *restrict rel, Py_ssize_t n_window,   \
            T *restrict y, int64_t *restrict argmax, int64_t base) {                         \
        V best0 = fc_load_##S(x), best1 = fc_load_##S(x + second);                           \
        M pos0 = {0}, pos1 = {0};                                                             \
        for (Py_ssize_t k = 1; k < n_window; k++) {                                           \
            V v0 = fc_load_##S(x + offset[k]), v1 = fc_load_##S(x + offset[k] + second);     \
            fc_i32x4 take0 = ~(fc_i32x4) (v0 <= best0) & (fc_i32x4) (best0 == best0);         \
            fc_i32x4 take1 = ~(fc_i32x4) (v1 <= best1) & (fc_i32x4) (best1 == best1);         \
            M rel_k = (M) {0} + rel[k];  /* broadcast */                                      \
            best0 = (V) fc_select(take0, (fc_i32x4) v0, (fc_i32x4) best0);                   \
            best1 = (V) fc_select(take1, (fc_i32x4) v1, (fc_i32x4) best1);                   \
            pos0 = (M) fc_select(take0, (fc_i32x4) rel_k, (fc_i32x4) pos0);                  \
            pos1 = (M) fc_select(take1, (fc_i32x4) rel_k, (fc_i32x4) pos1);                  \
        }                                                                                     \
        fc_store_##S(y, best0);                                                               \
        fc_store_##S(y + second, best1);                                                      \
        /* two loops, not one: the halves may overlap, and each loop alone vectorises */      \
        for (int l = 0; l < (int) (sizeof(V) / sizeof(T)); l++)                               \
            argmax[l] = base + pos0[l];                                                       \
        for (int l = 0; l < (int) (sizeof(V) / sizeof(T)); l++)                               \
            argmax[second + l] = base + pos1[l];                                              \
    }                                                                                         \
                                                                                              \
    /* The sum over the window in row-major order starting from 0, then / count: the same   \
       operations in the same order as one channel at a time. */                             \
    static inline void fc_avg_window_##S(const T *restrict x, Py_ssize_t second,             \
            const Py_ssize_t *restrict offset, Py_ssize_t n_window, T count,                  \
            T *restrict y) {                                                                  \
        V sum0 = {0}, sum1 = {0};                                                             \
        for (Py_ssize_t k = 0; k < n_window; k++) {                                           \
            sum0 += fc_load_##S(x + offset[k]);                                               \
            sum1 += fc_load_##S(x + offset[k] + second);                                      \
        }                                                                                     \
        fc_store_##S(y, sum0 / count);                                                        \
        fc_store_##S(y + second, sum1 / count);                                               \
    }                                                                                         \
                                                                                              \
    /* dx[offset[k] + c] += dy[c] / count over the window. Both halves are loaded before     \
       either is stored, so channels in both get the share added once. */                   \
    static inline void fc_avg_scatter_##S(T *restrict dx, Py_ssize_t second,                 \
            const Py_ssize_t *restrict offset, Py_ssize_t n_window, T count,                  \
            const T *restrict dy) {                                                           \
        V share0 = fc_load_##S(dy) / count, share1 = fc_load_##S(dy + second) / count;       \
        for (Py_ssize_t k = 0; k < n_window; k++) {                                           \
            T *p = dx + offset[k];                                                            \
            V d0 = fc_load_##S(p), d1 = fc_load_##S(p + second);                              \
            fc_store_##S(p, d0 + share0);                                                     \
            fc_store_##S(p + second, d1 + share1);                                            \
        }                                                                                     \
    }

    FC_POOL_KERNELS(f32, float, fc_f32x4, fc_i32x4, int32_t)
    FC_POOL_KERNELS(f64, double, fc_f64x2, fc_i64x2, int64_t)

    /* One channel, int64 positions: for float windows whose flat offsets overflow int32. */
    static inline void fc_max_window_scalar_f32(const float *restrict x,
            const Py_ssize_t *restrict offset, const int64_t *restrict rel,
            Py_ssize_t n_window, float *restrict y, int64_t *restrict argmax, int64_t base) {
        float best = x[0];
        int64_t pos = 0;
        for (Py_ssize_t k = 1; k < n_window; k++) {
            float v = x[offset[k]];
            if (!(v <= best) && best == best) {
                best = v;
                pos = rel[k];
            }
        }
        *y = best;
        *argmax = base + pos;
    }

    /* Row kernels for C below one vector: one window element against the running maximum
       of a whole stretch of a row. pos is as wide as the value (int32 for float; double,
       exact to 2**53, for double) so that gcc vectorises the compare-and-select with plain
       SSE2 (a 64-bit position beside a float compare, or any int64 select, stays scalar). */
    static inline void fc_max_update_f32(const float *restrict x, float *restrict best,
                                         int32_t *restrict pos, int32_t k, Py_ssize_t n) {
        for (Py_ssize_t t = 0; t < n; t++) {
            float b = best[t], v = x[t];
            int take = (b == b) & ((v > b) | (v != v));
            best[t] = take ? v : b;
            pos[t] = take ? k : pos[t];
        }
    }
    static inline void fc_max_update_f64(const double *restrict x, double *restrict best,
                                         double *restrict pos, double k, Py_ssize_t n) {
        for (Py_ssize_t t = 0; t < n; t++) {
            double b = best[t], v = x[t];
            int take = (b == b) & ((v > b) | (v != v));
            best[t] = take ? v : b;
            pos[t] = take ? k : pos[t];
        }
    }
    """
    void fc_max_window_f32(const float *x, Py_ssize_t second, const Py_ssize_t *offset,
                           const int32_t *rel, Py_ssize_t n_window, float *y,
                           int64_t *argmax, int64_t base) noexcept nogil
    void fc_max_window_f64(const double *x, Py_ssize_t second, const Py_ssize_t *offset,
                           const int64_t *rel, Py_ssize_t n_window, double *y,
                           int64_t *argmax, int64_t base) noexcept nogil
    void fc_max_window_scalar_f32(const float *x, const Py_ssize_t *offset,
                                  const int64_t *rel, Py_ssize_t n_window, float *y,
                                  int64_t *argmax, int64_t base) noexcept nogil
    void fc_avg_window_f32(const float *x, Py_ssize_t second, const Py_ssize_t *offset,
                           Py_ssize_t n_window, float count, float *y) noexcept nogil
    void fc_avg_window_f64(const double *x, Py_ssize_t second, const Py_ssize_t *offset,
                           Py_ssize_t n_window, double count, double *y) noexcept nogil
    void fc_avg_scatter_f32(float *dx, Py_ssize_t second, const Py_ssize_t *offset,
                            Py_ssize_t n_window, float count, const float *dy) noexcept nogil
    void fc_avg_scatter_f64(double *dx, Py_ssize_t second, const Py_ssize_t *offset,
                            Py_ssize_t n_window, double count, const double *dy) noexcept nogil
    void fc_max_update_f32(const float *x, float *best, int32_t *pos, int32_t k,
                           Py_ssize_t n) noexcept nogil
    void fc_max_update_f64(const double *x, double *best, double *pos, double k,
                           Py_ssize_t n) noexcept nogil


cdef struct _Window:
    # Window element k, in row-major order (k = i * pool_w + j): its offset in x from the
    # window's first element, (i * W + j) * C, and its flat in-image offset i * W + j.
    Py_ssize_t n
    Py_ssize_t *offset
    int64_t *rel
    int32_t *rel32      # rel as int32, valid when rel32_fits
    bint rel32_fits


cdef int _window_init(_Window *window, int pool_h, int pool_w, Py_ssize_t W,
                      Py_ssize_t C) except -1:
    cdef Py_ssize_t i, j, k = 0
    window.n = <Py_ssize_t> pool_h * pool_w
    window.offset = <Py_ssize_t *> malloc(window.n * sizeof(Py_ssize_t))
    window.rel = <int64_t *> malloc(window.n * sizeof(int64_t))
    window.rel32 = <int32_t *> malloc(window.n * sizeof(int32_t))
    if window.offset == NULL or window.rel == NULL or window.rel32 == NULL:
        _window_free(window)
        raise MemoryError()
    window.rel32_fits = (pool_h - 1) * W + pool_w - 1 <= INT32_MAX
    for i in range(pool_h):
        for j in range(pool_w):
            window.offset[k] = (i * W + j) * C
            window.rel[k] = i * W + j
            window.rel32[k] = <int32_t> window.rel[k]
            k += 1
    return 0


cdef void _window_free(_Window *window) noexcept:
    free(window.offset)
    free(window.rel)
    free(window.rel32)
    window.offset = NULL
    window.rel = NULL
    window.rel32 = NULL


# Window kernels take channels two vectors (2 * lanes) at a time. Where the result is a
# pure function of x (forward), the last pair is moved back to end at C, overlapping the
# one before, and lanes <= C < 2 * lanes gets one pair whose halves overlap: the overlap
# only computes the same outputs twice.


cdef inline void _max_pixel(const floating *x, Py_ssize_t C, const _Window *window,
                            floating *y, int64_t *argmax, int64_t base) noexcept nogil:
    """Max and argmax of the C channels of the window whose first element is x[0]."""
    cdef:
        Py_ssize_t lanes = 16 // sizeof(floating)
        Py_ssize_t p, c
    if floating is float:
        # (C below one vector goes to _max_row_narrow unless rel32 overflows)
        if C < lanes or not window.rel32_fits:
            for c in range(C):
                fc_max_window_scalar_f32(x + c, window.offset, window.rel, window.n, y + c,
                                         argmax + c, base)
            return
    if C < 2 * lanes:
        if floating is float:
            fc_max_window_f32(x, C - lanes, window.offset, window.rel32, window.n, y, argmax,
                              base)
        else:
            fc_max_window_f64(x, C - lanes, window.offset, window.rel, window.n, y, argmax,
                              base)
        return
    for p in range((C + 2 * lanes - 1) // (2 * lanes)):
        c = min(2 * lanes * p, C - 2 * lanes)
        if floating is float:
            fc_max_window_f32(x + c, lanes, window.offset, window.rel32, window.n, y + c,
                              argmax + c, base)
        else:
            fc_max_window_f64(x + c, lanes, window.offset, window.rel, window.n, y + c,
                              argmax + c, base)


cdef inline void _max_row_narrow(const floating *x, Py_ssize_t C, Py_ssize_t Wo,
                                 Py_ssize_t stride_w, const _Window *window, floating *best,
                                 void *pos, floating *y, int64_t *argmax,
                                 int64_t base) noexcept nogil:
    """One output row when C is below one vector: the windows at every column (stride 1)
    over contiguous memory, then every stride_w-th. x is the first element of the row's
    windows; best and pos hold ((Wo - 1) * stride_w + 1) * C values."""
    cdef:
        Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C
        Py_ssize_t k, ow, c, t
        int32_t *pos32 = <int32_t *> pos
        double *pos64 = <double *> pos
    memcpy(best, x, span * sizeof(floating))
    memset(pos, 0, span * sizeof(floating))     # int32 0 / double 0.0
    for k in range(1, window.n):
        if floating is float:
            fc_max_update_f32(x + window.offset[k], best, pos32, window.rel32[k], span)
        else:
            fc_max_update_f64(x + window.offset[k], best, pos64, <double> window.rel[k], span)
    for ow in range(Wo):
        for c in range(C):
            t = ow * stride_w * C + c
            y[ow * C + c] = best[t]
            if floating is float:
                argmax[ow * C + c] = base + ow * stride_w + pos32[t]
            else:
                argmax[ow * C + c] = base + ow * stride_w + <int64_t> pos64[t]


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
        Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C
        Py_ssize_t lanes = 16 // sizeof(floating)
        Py_ssize_t row, n, oh, ow
        const floating *xbase
        floating *ybase
        int64_t *abase
        floating *best
        floating *all_rows = NULL
        bint narrow
        _Window window

    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0, 0]
    abase = &argmax[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    narrow = C < lanes and (floating is double or window.rel32_fits)
    try:
        if narrow:
            # per thread: the running maximum and its position along one row
            all_rows = <floating *> malloc(n_threads * per_thread(2 * span, sizeof(floating))
                                          * sizeof(floating))
            if all_rows == NULL:
                raise MemoryError()
        for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            if narrow:
                best = all_rows + threadid() * per_thread(2 * span, sizeof(floating))
                _max_row_narrow(xbase + (n * H + oh * stride_h) * W * C, C, Wo, stride_w,
                                &window, best, best + span, ybase + row * Wo * C,
                                abase + row * Wo * C, oh * stride_h * W)
                continue
            for ow in range(Wo):
                _max_pixel(xbase + ((n * H + oh * stride_h) * W + ow * stride_w) * C, C,
                           &window, ybase + (row * Wo + ow) * C,
                           abase + (row * Wo + ow) * C, oh * stride_h * W + ow * stride_w)
    finally:
        free(all_rows)
        _window_free(&window)


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


cdef inline void _avg_pixel(const floating *x, Py_ssize_t C, const _Window *window,
                            floating count, floating *y) noexcept nogil:
    """Mean of the C channels of the window whose first element is x[0]."""
    cdef:
        Py_ssize_t lanes = 16 // sizeof(floating)
        Py_ssize_t p, c, k
        floating total
    if C < lanes:
        for c in range(C):
            total = 0
            for k in range(window.n):
                total = total + x[window.offset[k] + c]
            y[c] = total / count
    elif C < 2 * lanes:
        if floating is float:
            fc_avg_window_f32(x, C - lanes, window.offset, window.n, count, y)
        else:
            fc_avg_window_f64(x, C - lanes, window.offset, window.n, count, y)
    else:
        for p in range((C + 2 * lanes - 1) // (2 * lanes)):
            c = min(2 * lanes * p, C - 2 * lanes)
            if floating is float:
                fc_avg_window_f32(x + c, lanes, window.offset, window.n, count, y + c)
            else:
                fc_avg_window_f64(x + c, lanes, window.offset, window.n, count, y + c)


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
        Py_ssize_t row, n, oh, ow
        floating count = pool_h * pool_w
        const floating *xbase
        floating *ybase
        _Window window

    if n_rows == 0 or Wo == 0 or C == 0:
        return
    xbase = &x[0, 0, 0, 0]
    ybase = &y[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
            n = row // Ho
            oh = row % Ho
            for ow in range(Wo):
                _avg_pixel(xbase + ((n * H + oh * stride_h) * W + ow * stride_w) * C, C,
                           &window, count, ybase + (row * Wo + ow) * C)
    finally:
        _window_free(&window)


cdef inline void _avg_scatter_pixel(floating *dx, Py_ssize_t C, const _Window *window,
                                    floating count, const floating *dy) noexcept nogil:
    """Adds dy / count to the C channels of every element of the window whose first
    element is dx[0]. Pairs must not overlap here (a channel would get its share twice):
    whole pairs, then one pair whose halves overlap, then single channels."""
    cdef:
        Py_ssize_t lanes = 16 // sizeof(floating)
        Py_ssize_t c = 0, k
        floating share
    while C - c >= 2 * lanes:
        if floating is float:
            fc_avg_scatter_f32(dx + c, lanes, window.offset, window.n, count, dy + c)
        else:
            fc_avg_scatter_f64(dx + c, lanes, window.offset, window.n, count, dy + c)
        c = c + 2 * lanes
    if C - c >= lanes:
        if floating is float:
            fc_avg_scatter_f32(dx + c, C - c - lanes, window.offset, window.n, count, dy + c)
        else:
            fc_avg_scatter_f64(dx + c, C - c - lanes, window.offset, window.n, count, dy + c)
        c = C
    while c < C:
        share = dy[c] / count
        for k in range(window.n):
            dx[window.offset[k] + c] += share
        c = c + 1


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
        Py_ssize_t n, oh, ow
        floating count = pool_h * pool_w
        floating *dxbase
        floating *dximg
        _Window window

    if n_images == 0 or image_size == 0:
        return
    dxbase = &dx[0, 0, 0, 0]
    _window_init(&window, pool_h, pool_w, W, C)
    try:
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            dximg = dxbase + n * image_size
            memset(dximg, 0, image_size * sizeof(floating))
            # output pixels in order: overlapping windows add up in a fixed order
            for oh in range(Ho):
                for ow in range(Wo):
                    _avg_scatter_pixel(dximg + (oh * stride_h * W + ow * stride_w) * C, C,
                                       &window, count, &dy[n, oh, ow, 0])
    finally:
        _window_free(&window)


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
    all_acc = <double *> malloc(n_threads * per_thread(C, sizeof(double)) * sizeof(double))
    try:
        if all_acc == NULL:
            raise MemoryError()
        for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
            acc = all_acc + threadid() * per_thread(C, sizeof(double))
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
