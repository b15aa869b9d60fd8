# The convolution's micro-kernel tables (_conv_kernels.h), one per (family, type,
# instruction set). Cython has no type that follows `floating`, so each table is declared
# for float and for double; the drivers fetch the one of their dtype once per call,
# outside their loops.
cdef extern from "_conv_kernels.h" nogil:
    int FC_TILE_PIXELS_MAX
    int FC_TILE_CHANNELS
    ctypedef struct fc_taps:
        int ntaps
        long *off
        int *row
        int *col
        int *ids
        int rows, cols

    ctypedef struct fc_conv_forward_table_f32:
        int lanes
        int tile_pixels[2]
        void (*tile)(int nv, int tp, const float *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const float *zeros, const float *w,
                     long ldw, const float *bias, int accumulate, int relu,
                     float *const *out, int kcount) noexcept nogil
        int (*slide)(int kw, int tp, const float *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const float *zeros, const float *w,
                     long ldw, const float *bias, int accumulate, int relu,
                     float *const *out, int kcount) noexcept nogil
    ctypedef struct fc_conv_forward_table_f64:
        int lanes
        int tile_pixels[2]
        void (*tile)(int nv, int tp, const double *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const double *zeros, const double *w,
                     long ldw, const double *bias, int accumulate, int relu,
                     double *const *out, int kcount) noexcept nogil
        int (*slide)(int kw, int tp, const double *x, const long *pix_off, const int *pix_pos,
                     const fc_taps *taps, int cin, const double *zeros, const double *w,
                     long ldw, const double *bias, int accumulate, int relu,
                     double *const *out, int kcount) noexcept nogil

    ctypedef struct fc_conv_wgrad_table_f32:
        int tile_channels[2]
        void (*tile)(int nv, int tc, const float *const *xrows, const float *const *dyrows,
                     const int *rowlen, int nrows, long xstride, long dystride, float *tile,
                     long ldt) noexcept nogil
    ctypedef struct fc_conv_wgrad_table_f64:
        int tile_channels[2]
        void (*tile)(int nv, int tc, const double *const *xrows, const double *const *dyrows,
                     const int *rowlen, int nrows, long xstride, long dystride, double *tile,
                     long ldt) noexcept nogil

    ctypedef struct fc_conv_c1_table_f32:
        int rows
        int taps
        void (*forward)(int nr, const float *const *rows, int R, int S, long tap_step,
                        const float *wrows, long ldw, const float *bias, int relu, long L,
                        float *out, long ldo) noexcept nogil
        void (*weight_grad)(int nt, const float *const *xrows, const float *const *dyrows,
                            int nrows, long tap_step, long L, float *sums,
                            long lds) noexcept nogil
        int pool_lanes
        void (*forward_pool)(const float *x, long row_step, long tap_row, int R, int S, int dw,
                             const float *w, int K, const float *bias, int relu, long Wp,
                             float *out) noexcept nogil
    ctypedef struct fc_conv_c1_table_f64:
        int rows
        int taps
        void (*forward)(int nr, const double *const *rows, int R, int S, long tap_step,
                        const double *wrows, long ldw, const double *bias, int relu, long L,
                        double *out, long ldo) noexcept nogil
        void (*weight_grad)(int nt, const double *const *xrows, const double *const *dyrows,
                            int nrows, long tap_step, long L, double *sums,
                            long lds) noexcept nogil
        int pool_lanes
        void (*forward_pool)(const double *x, long row_step, long tap_row, int R, int S, int dw,
                             const double *w, int K, const double *bias, int relu, long Wp,
                             double *out) noexcept nogil

    ctypedef struct fc_conv_runs_table_f32:
        void (*add_run)(float *dst, const float *src, long n) noexcept nogil
        void (*masked_sum)(float *d, const float *y, double *acc, long n) noexcept nogil
        void (*expand_rows)(const float *src, long ld_src, long W, int K, float *dst,
                            long ld_dst, long n, long readable) noexcept nogil
    ctypedef struct fc_conv_runs_table_f64:
        void (*add_run)(double *dst, const double *src, long n) noexcept nogil
        void (*masked_sum)(double *d, const double *y, double *acc, long n) noexcept nogil
        void (*expand_rows)(const double *src, long ld_src, long W, int K, double *dst,
                            long ld_dst, long n, long readable) noexcept nogil

    const fc_conv_forward_table_f32 *fc_conv_forward_table_f32_for(int isa)
    const fc_conv_forward_table_f64 *fc_conv_forward_table_f64_for(int isa)
    const fc_conv_wgrad_table_f32 *fc_conv_wgrad_table_f32_for(int isa)
    const fc_conv_wgrad_table_f64 *fc_conv_wgrad_table_f64_for(int isa)
    const fc_conv_c1_table_f32 *fc_conv_c1_table_f32_for(int isa)
    const fc_conv_c1_table_f64 *fc_conv_c1_table_f64_for(int isa)
    const fc_conv_runs_table_f32 *fc_conv_runs_table_f32_for(int isa)
    const fc_conv_runs_table_f64 *fc_conv_runs_table_f64_for(int isa)
