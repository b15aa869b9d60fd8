# The pooling kernels' tables (_pool_kernels.h), for _pool.pyx and for the pooled
# convolution and the inference program of _conv.pyx, with the drivers both use.
from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "_pool_kernels.h" nogil:
    ctypedef struct fc_pool_window:
        Py_ssize_t n
        Py_ssize_t *offset
        int64_t *rel
        int32_t *rel32
        bint rel32_fits
    ctypedef struct fc_pool_table_f32:
        int lanes
        int narrow_below
        void (*max_row)(const float *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                        const fc_pool_window *w, float *scratch, float *y, int64_t *argmax,
                        int64_t base) noexcept nogil
        void (*avg_row)(const float *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                        const fc_pool_window *w, float count, float *y) noexcept nogil
        void (*avg_backward_row)(float *dx, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                                 const fc_pool_window *w, float count,
                                 const float *dy) noexcept nogil
        void (*global_avg)(const float *x, Py_ssize_t n_pixels, Py_ssize_t C,
                           float *y) noexcept nogil
        void (*global_avg_backward_row)(const float *dy, Py_ssize_t W, Py_ssize_t C,
                                        float count, float *dx) noexcept nogil
        void (*l2_row)(const float *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                       const fc_pool_window *w, float *y) noexcept nogil
        void (*l2_backward_row)(float *dx, const float *x, Py_ssize_t C, Py_ssize_t Wo,
                                Py_ssize_t stride_w, const fc_pool_window *w, const float *y,
                                const float *dy) noexcept nogil
        void (*max_values_row)(const float *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                               const fc_pool_window *w, float *scratch, float *y) noexcept nogil
        void (*max_backward_tiled_row)(float *dx, const float *dy, const uint8_t *pos,
                                       const float *pooled, Py_ssize_t Wo, Py_ssize_t C,
                                       int pool_w, int first) noexcept nogil
        void (*max_tiled_row)(const float *x, Py_ssize_t C, Py_ssize_t Wo, int pool_w,
                              const fc_pool_window *w, float *y, uint8_t *pos) noexcept nogil
    ctypedef struct fc_pool_table_f64:
        int lanes
        int narrow_below
        void (*max_row)(const double *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                        const fc_pool_window *w, double *scratch, double *y, int64_t *argmax,
                        int64_t base) noexcept nogil
        void (*avg_row)(const double *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                        const fc_pool_window *w, double count, double *y) noexcept nogil
        void (*avg_backward_row)(double *dx, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                                 const fc_pool_window *w, double count,
                                 const double *dy) noexcept nogil
        void (*global_avg)(const double *x, Py_ssize_t n_pixels, Py_ssize_t C,
                           double *y) noexcept nogil
        void (*global_avg_backward_row)(const double *dy, Py_ssize_t W, Py_ssize_t C,
                                        double count, double *dx) noexcept nogil
        void (*l2_row)(const double *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                       const fc_pool_window *w, double *y) noexcept nogil
        void (*l2_backward_row)(double *dx, const double *x, Py_ssize_t C, Py_ssize_t Wo,
                                Py_ssize_t stride_w, const fc_pool_window *w, const double *y,
                                const double *dy) noexcept nogil
        void (*max_values_row)(const double *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,
                               const fc_pool_window *w, double *scratch, double *y) noexcept nogil
        void (*max_backward_tiled_row)(double *dx, const double *dy, const uint8_t *pos,
                                       const double *pooled, Py_ssize_t Wo, Py_ssize_t C,
                                       int pool_w, int first) noexcept nogil
        void (*max_tiled_row)(const double *x, Py_ssize_t C, Py_ssize_t Wo, int pool_w,
                              const fc_pool_window *w, double *y, uint8_t *pos) noexcept nogil
    const fc_pool_table_f32 *fc_pool_table_f32_for(int isa)
    const fc_pool_table_f64 *fc_pool_table_f64_for(int isa)


cdef inline void _global_avg_images(const floating *x, floating *y, Py_ssize_t n_images,
                                    Py_ssize_t n_pixels, Py_ssize_t C, int isa,
                                    int n_threads) noexcept nogil:
    """y (n_images, C) = the mean of each image's n_pixels pixels of x, an image per task."""
    cdef Py_ssize_t n
    cdef const fc_pool_table_f32 *k32 = NULL
    cdef const fc_pool_table_f64 *k64 = NULL
    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    for n in prange(n_images, schedule="static", nogil=True, num_threads=n_threads):
        if floating is float:
            k32.global_avg(x + n * n_pixels * C, n_pixels, C, y + n * C)
        else:
            k64.global_avg(x + n * n_pixels * C, n_pixels, C, y + n * C)


cdef int _window_make(fc_pool_window *window, int pool_h, int pool_w, Py_ssize_t W,
                      Py_ssize_t C) noexcept nogil:
    """The window's offsets in images of width W and C channels: 0, or -1 (and nothing to
    free) where memory ran out."""
    cdef Py_ssize_t i, j, k = 0
    window.n = <Py_ssize_t> pool_h * pool_w
    window.offset = <Py_ssize_t *> malloc(window.n * sizeof(Py_ssize_t))
    window.rel = <int64_t *> malloc(window.n * sizeof(int64_t))
    window.rel32 = <int32_t *> malloc(window.n * sizeof(int32_t))
    if window.offset == NULL or window.rel == NULL or window.rel32 == NULL:
        _window_free(window)
        return -1
    window.rel32_fits = (pool_h - 1) * W + pool_w - 1 <= INT32_MAX
    for i in range(pool_h):
        for j in range(pool_w):
            window.offset[k] = (i * W + j) * C
            window.rel[k] = i * W + j
            window.rel32[k] = <int32_t> window.rel[k]
            k += 1
    return 0


cdef void _window_free(fc_pool_window *window) noexcept nogil:
    free(window.offset)
    free(window.rel)
    free(window.rel32)
    window.offset = NULL
    window.rel = NULL
    window.rel32 = NULL


cdef int _pool_values_images(const floating *x, floating *y, Py_ssize_t n_images,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t Ho,
                             Py_ssize_t Wo, int pool_h, int pool_w, int stride_h,
                             int stride_w, bint average, int isa,
                             int n_threads) noexcept nogil:
    """y (n_images, Ho, Wo, C) = the max (``average``: the mean) of each window of x
    (n_images, H, W, C), without the positions of the maxima (prediction), an output row
    per task: 0, or -1 where memory ran out."""
    cdef:
        Py_ssize_t n_rows = n_images * Ho
        Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C
        Py_ssize_t row, n, oh
        floating count = pool_h * pool_w
        floating *scratch
        floating *all_scratch = NULL
        fc_pool_window window
        const fc_pool_table_f32 *k32 = NULL
        const fc_pool_table_f64 *k64 = NULL

    if floating is float:
        k32 = fc_pool_table_f32_for(isa)
    else:
        k64 = fc_pool_table_f64_for(isa)
    if n_rows == 0 or Wo == 0 or C == 0:
        return 0
    if _window_make(&window, pool_h, pool_w, W, C):
        return -1
    if not average:     # per thread: the running maximum along one row
        all_scratch = <floating *> malloc(
            n_threads * per_thread(span, sizeof(floating)) * sizeof(floating))
        if all_scratch == NULL:
            _window_free(&window)
            return -1
    for row in prange(n_rows, schedule="static", nogil=True, num_threads=n_threads):
        n = row // Ho
        oh = row % Ho
        if average:
            if floating is float:
                k32.avg_row(x + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                            count, y + row * Wo * C)
            else:
                k64.avg_row(x + (n * H + oh * stride_h) * W * C, C, Wo, stride_w, &window,
                            count, y + row * Wo * C)
            continue
        scratch = all_scratch + threadid() * per_thread(span, sizeof(floating))
        if floating is float:
            k32.max_values_row(x + (n * H + oh * stride_h) * W * C, C, Wo, stride_w,
                               &window, scratch, y + row * Wo * C)
        else:
            k64.max_values_row(x + (n * H + oh * stride_h) * W * C, C, Wo, stride_w,
                               &window, scratch, y + row * Wo * C)
    free(all_scratch)
    _window_free(&window)
    return 0
