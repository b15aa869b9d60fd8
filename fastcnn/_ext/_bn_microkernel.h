/* Batch-normalisation micro-kernels, written once and instantiated by _bn_kernels.h for
 * each (element type, instruction set) through _dispatch_instances.h.
 *
 * Channels go in the vectors, rows are the loop around them. The sums keep a register
 * tile of up to 8 vectors of double accumulators over a stretch of columns while they
 * walk down all n rows (the loop-carried additions of 8 vectors are independent, so the
 * adds do not wait on each other), then move to the next stretch: 8, 4, 2, 1 vectors,
 * then single columns. Every accumulator adds its rows in row order whatever the
 * stretch, so the sums are the same at every instruction set; the squared deviations and
 * the elementwise passes (apply, backward: plain loops over a row, which the compiler
 * vectorises at the instance's width) may differ in the last bit where an instance fuses
 * a multiply-add. The arrays passed to one call never overlap.
 */
#define FC_BN_VD ((int)(FC_VBYTES / sizeof(double))) /* doubles per vector */
#define FC_ALWAYS_INLINE static inline __attribute__((always_inline))

typedef double FC_NAME(fc_bn_vd) __attribute__((vector_size(FC_VBYTES)));
/* FC_BN_VD elements of the input type, and a mask as wide */
typedef FC_T FC_NAME(fc_bn_vt) __attribute__((vector_size(FC_BN_VD * sizeof(FC_T))));
#if FC_DOUBLE
typedef int64_t FC_NAME(fc_bn_vi) __attribute__((vector_size(FC_BN_VD * sizeof(FC_T))));
#else
typedef int32_t FC_NAME(fc_bn_vi) __attribute__((vector_size(FC_BN_VD * sizeof(FC_T))));
#endif
#define FC_VD FC_NAME(fc_bn_vd)
#define FC_VT FC_NAME(fc_bn_vt)
#define FC_VI FC_NAME(fc_bn_vi)

/* float to double, FC_BN_VD lanes: GCC 12 splits __builtin_convertvector into halves
 * and scalar conversions on x86, so the instruction is asked for there. */
FC_ALWAYS_INLINE FC_VD FC_NAME(fc_bn_widen)(FC_VT t)
{
#if FC_DOUBLE
    return t;
#elif FC_X86 && FC_VBYTES == 64
    return (FC_VD)_mm512_cvtps_pd((__m256)t);
#elif FC_X86 && FC_VBYTES == 32
    return (FC_VD)_mm256_cvtps_pd((__m128)t);
#elif FC_X86
    return (FC_VD)_mm_cvtps_pd((__m128)__builtin_shufflevector(t, t, 0, 1, 2, 3));
#else
    return __builtin_convertvector(t, FC_VD);
#endif
}

/* FC_BN_VD elements from p, as doubles */
FC_ALWAYS_INLINE FC_VD FC_NAME(fc_bn_load)(const FC_T *p)
{
    FC_VT t;
    __builtin_memcpy(&t, p, sizeof t);
    return FC_NAME(fc_bn_widen)(t);
}

/* the same, where y > 0 (the output of a fused relu), else 0: NaN and -0 give 0 */
FC_ALWAYS_INLINE FC_VD FC_NAME(fc_bn_load_masked)(const FC_T *p, const FC_T *y)
{
    FC_VT t, u;
    __builtin_memcpy(&t, p, sizeof t);
    __builtin_memcpy(&u, y, sizeof u);
    t = (FC_VT)((FC_VI)t & (FC_VI)(u > (FC_VT){0}));
    return FC_NAME(fc_bn_widen)(t);
}

FC_ALWAYS_INLINE FC_VD FC_NAME(fc_bn_load_acc)(const double *p)
{
    FC_VD v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

FC_ALWAYS_INLINE void FC_NAME(fc_bn_store_acc)(double *p, FC_VD v)
{
    __builtin_memcpy(p, &v, sizeof v);
}

/* The loop over stretches of columns shared by the sums: KERNEL(x_offset, nv) handles
 * nv vectors of columns from the offset, SCALAR(c) one column. */
#define FC_BN_STRETCHES(width, widest, KERNEL, SCALAR)                                    \
    do {                                                                                 \
        Py_ssize_t j_ = 0;                                                               \
        for (; j_ + (widest) * FC_BN_VD <= (width); j_ += (widest) * FC_BN_VD)           \
            KERNEL(j_, widest);                                                          \
        for (int nv_ = (widest) / 2; nv_ >= 1; nv_ /= 2)                                 \
            if (j_ + nv_ * FC_BN_VD <= (width)) {                                        \
                if (nv_ == 4)                                                            \
                    KERNEL(j_, 4);                                                       \
                else if (nv_ == 2)                                                       \
                    KERNEL(j_, 2);                                                       \
                else                                                                     \
                    KERNEL(j_, 1);                                                       \
                j_ += nv_ * FC_BN_VD;                                                    \
            }                                                                            \
        for (; j_ < (width); j_++)                                                       \
            SCALAR(j_);                                                                  \
    } while (0)

/* acc[0, nv vectors) = the sums over n rows of x's columns from there */
FC_ALWAYS_INLINE void FC_NAME(fc_bn_sum_cols)(const FC_T *restrict x, Py_ssize_t n,
                                              Py_ssize_t width, double *restrict acc,
                                              const int nv)
{
    FC_VD s[8];
    for (int v = 0; v < nv; v++)
        s[v] = (FC_VD){0};
    for (Py_ssize_t i = 0; i < n; i++)
        for (int v = 0; v < nv; v++)
            s[v] += FC_NAME(fc_bn_load)(x + i * width + v * FC_BN_VD);
    for (int v = 0; v < nv; v++)
        FC_NAME(fc_bn_store_acc)(acc + v * FC_BN_VD, s[v]);
}

static void FC_NAME(fc_bn_sum)(const FC_T *restrict x, Py_ssize_t n, Py_ssize_t width,
                               Py_ssize_t tail, double *restrict acc)
{
#define FC_BN_K(j, nv) FC_NAME(fc_bn_sum_cols)(x + (j), n, width, acc + (j), nv)
#define FC_BN_S(j)                                                                       \
    do {                                                                                 \
        double t_ = 0;                                                                   \
        for (Py_ssize_t i = 0; i < n; i++)                                               \
            t_ += (double)x[i * width + (j)];                                            \
        acc[j] = t_;                                                                     \
    } while (0)
    FC_BN_STRETCHES(width, 8, FC_BN_K, FC_BN_S);
#undef FC_BN_K
#undef FC_BN_S
    for (Py_ssize_t j = 0; j < tail; j++)   /* the last, shorter row */
        acc[j] += (double)x[n * width + j];
}

FC_ALWAYS_INLINE void FC_NAME(fc_bn_sq_dev_cols)(const FC_T *restrict x, Py_ssize_t n,
                                                 Py_ssize_t width,
                                                 const double *restrict mean,
                                                 double *restrict acc, const int nv)
{
    FC_VD s[8], m[8];
    for (int v = 0; v < nv; v++) {
        s[v] = (FC_VD){0};
        m[v] = FC_NAME(fc_bn_load_acc)(mean + v * FC_BN_VD);
    }
    for (Py_ssize_t i = 0; i < n; i++)
        for (int v = 0; v < nv; v++) {
            FC_VD d = FC_NAME(fc_bn_load)(x + i * width + v * FC_BN_VD) - m[v];
            s[v] += d * d;
        }
    for (int v = 0; v < nv; v++)
        FC_NAME(fc_bn_store_acc)(acc + v * FC_BN_VD, s[v]);
}

static void FC_NAME(fc_bn_sq_dev)(const FC_T *restrict x, Py_ssize_t n, Py_ssize_t width,
                                  Py_ssize_t tail, const double *restrict mean,
                                  double *restrict acc)
{
#define FC_BN_K(j, nv) \
    FC_NAME(fc_bn_sq_dev_cols)(x + (j), n, width, mean + (j), acc + (j), nv)
#define FC_BN_S(j)                                                                       \
    do {                                                                                 \
        double t_ = 0;                                                                   \
        for (Py_ssize_t i = 0; i < n; i++) {                                             \
            double d_ = (double)x[i * width + (j)] - mean[j];                            \
            t_ += d_ * d_;                                                               \
        }                                                                                \
        acc[j] = t_;                                                                     \
    } while (0)
    FC_BN_STRETCHES(width, 8, FC_BN_K, FC_BN_S);
#undef FC_BN_K
#undef FC_BN_S
    for (Py_ssize_t j = 0; j < tail; j++) {
        double d = (double)x[n * width + j] - mean[j];
        acc[j] += d * d;
    }
}

/* Two sums per column, so stretches of at most 4 vectors. y: NULL, or the relu's
 * output whose mask applies to dy. */
FC_ALWAYS_INLINE void FC_NAME(fc_bn_grad_cols)(const FC_T *restrict x,
                                               const FC_T *restrict dy,
                                               const FC_T *restrict y, Py_ssize_t n,
                                               Py_ssize_t width, const double *restrict mean,
                                               double *restrict acc_dy,
                                               double *restrict acc_dyx, const int nv)
{
    FC_VD s[4], t[4], m[4];
    for (int v = 0; v < nv; v++) {
        s[v] = t[v] = (FC_VD){0};
        m[v] = FC_NAME(fc_bn_load_acc)(mean + v * FC_BN_VD);
    }
    for (Py_ssize_t i = 0; i < n; i++)
        for (int v = 0; v < nv; v++) {
            Py_ssize_t at = i * width + v * FC_BN_VD;
            FC_VD g = y ? FC_NAME(fc_bn_load_masked)(dy + at, y + at)
                        : FC_NAME(fc_bn_load)(dy + at);
            s[v] += g;
            t[v] += g * (FC_NAME(fc_bn_load)(x + at) - m[v]);
        }
    for (int v = 0; v < nv; v++) {
        FC_NAME(fc_bn_store_acc)(acc_dy + v * FC_BN_VD, s[v]);
        FC_NAME(fc_bn_store_acc)(acc_dyx + v * FC_BN_VD, t[v]);
    }
}

static inline double FC_NAME(fc_bn_grad_of)(const FC_T *restrict dy, const FC_T *restrict y,
                                            Py_ssize_t at)
{
    return (y == NULL || y[at] > 0) ? (double)dy[at] : 0.0;
}

static void FC_NAME(fc_bn_grad_sums)(const FC_T *restrict x, const FC_T *restrict dy,
                                     const FC_T *restrict y, Py_ssize_t n, Py_ssize_t width,
                                     Py_ssize_t tail, const double *restrict mean,
                                     double *restrict acc_dy, double *restrict acc_dyx)
{
    /* the mask is a branch outside the loops: one copy of them each way */
#define FC_BN_K(j, nv)                                                                   \
    do {                                                                                 \
        if (y)                                                                           \
            FC_NAME(fc_bn_grad_cols)(x + (j), dy + (j), y + (j), n, width, mean + (j),   \
                                     acc_dy + (j), acc_dyx + (j), nv);                   \
        else                                                                             \
            FC_NAME(fc_bn_grad_cols)(x + (j), dy + (j), NULL, n, width, mean + (j),      \
                                     acc_dy + (j), acc_dyx + (j), nv);                   \
    } while (0)
#define FC_BN_S(j)                                                                       \
    do {                                                                                 \
        double s_ = 0, t_ = 0;                                                           \
        for (Py_ssize_t i = 0; i < n; i++) {                                             \
            double g_ = FC_NAME(fc_bn_grad_of)(dy, y, i * width + (j));                  \
            s_ += g_;                                                                    \
            t_ += g_ * ((double)x[i * width + (j)] - mean[j]);                           \
        }                                                                                \
        acc_dy[j] = s_;                                                                  \
        acc_dyx[j] = t_;                                                                 \
    } while (0)
    FC_BN_STRETCHES(width, 4, FC_BN_K, FC_BN_S);
#undef FC_BN_K
#undef FC_BN_S
    for (Py_ssize_t j = 0; j < tail; j++) {
        double g = FC_NAME(fc_bn_grad_of)(dy, y, n * width + j);
        acc_dy[j] += g;
        acc_dyx[j] += g * ((double)x[n * width + j] - mean[j]);
    }
}

/* relu as max(v, 0) with NaN kept: v < 0 is false for NaN, as in the relu kernels. */
static inline void FC_NAME(fc_bn_apply_row)(const FC_T *restrict x, Py_ssize_t len,
                                            const FC_T *restrict scale,
                                            const FC_T *restrict shift, int relu,
                                            FC_T *restrict y)
{
    if (relu) {
        for (Py_ssize_t j = 0; j < len; j++) {
            FC_T v = x[j] * scale[j] + shift[j];
            y[j] = v < 0 ? 0 : v;
        }
        return;
    }
    for (Py_ssize_t j = 0; j < len; j++)
        y[j] = x[j] * scale[j] + shift[j];
}

static void FC_NAME(fc_bn_apply)(const FC_T *restrict x, Py_ssize_t n, Py_ssize_t width,
                                 Py_ssize_t tail, const FC_T *restrict scale,
                                 const FC_T *restrict shift, int relu, FC_T *restrict y)
{
    for (Py_ssize_t i = 0; i < n; i++)
        FC_NAME(fc_bn_apply_row)(x + i * width, width, scale, shift, relu, y + i * width);
    FC_NAME(fc_bn_apply_row)(x + n * width, tail, scale, shift, relu, y + n * width);
}

static inline void FC_NAME(fc_bn_backward_row)(const FC_T *restrict x,
                                               const FC_T *restrict dy,
                                               const FC_T *restrict y, Py_ssize_t len,
                                               const FC_T *restrict mean,
                                               const FC_T *restrict a,
                                               const FC_T *restrict b,
                                               const FC_T *restrict d, FC_T *restrict dx)
{
    if (y == NULL) {
        for (Py_ssize_t j = 0; j < len; j++)
            dx[j] = a[j] * dy[j] + (b[j] * (x[j] - mean[j]) + d[j]);
        return;
    }
    for (Py_ssize_t j = 0; j < len; j++) {
        FC_T g = y[j] > 0 ? dy[j] : 0;
        dx[j] = a[j] * g + (b[j] * (x[j] - mean[j]) + d[j]);
    }
}

static void FC_NAME(fc_bn_backward)(const FC_T *restrict x, const FC_T *restrict dy,
                                    const FC_T *restrict y, Py_ssize_t n, Py_ssize_t width,
                                    Py_ssize_t tail, const FC_T *restrict mean,
                                    const FC_T *restrict a, const FC_T *restrict b,
                                    const FC_T *restrict d, FC_T *restrict dx)
{
    for (Py_ssize_t i = 0; i < n; i++)
        FC_NAME(fc_bn_backward_row)(x + i * width, dy + i * width, y ? y + i * width : NULL,
                                    width, mean, a, b, d, dx + i * width);
    FC_NAME(fc_bn_backward_row)(x + n * width, dy + n * width, y ? y + n * width : NULL,
                                tail, mean, a, b, d, dx + n * width);
}

static const FC_TNAME(fc_bn_table) FC_NAME(fc_bn_table) = {
    (int)(FC_VBYTES / sizeof(FC_T)),
    FC_NAME(fc_bn_sum),
    FC_NAME(fc_bn_sq_dev),
    FC_NAME(fc_bn_grad_sums),
    FC_NAME(fc_bn_apply),
    FC_NAME(fc_bn_backward),
};

#undef FC_BN_VD
#undef FC_BN_STRETCHES
#undef FC_ALWAYS_INLINE
#undef FC_VD
#undef FC_VT
#undef FC_VI
