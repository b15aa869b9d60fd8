# The pooling kernels' tables (_pool_kernels.h), for _pool.pyx and for the pooled
# convolution of _conv.pyx.
from libc.stdint cimport int32_t, int64_t


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
