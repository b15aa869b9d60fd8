/* Elementwise activation micro-kernels, written once and instantiated by _act_kernels.h
 * for each (element type, instruction set) through _dispatch_instances.h.
 *
 * exp, sigmoid and tanh are branch-free vector code with GCC vector extensions: the
 * auto-vectoriser cannot be relied on for them (selects that feed arithmetic are not
 * if-converted under the default -ftrapping-math, and double selects need AVX2), and
 * scalar libm calls are about 5x slower at 16 bytes, more at 64. Every element goes
 * through the same vector code, tails included (see FC_ACT_MAP), and no lane's result
 * depends on another's, so a result does not depend on an element's position or on how
 * the array is split between threads.
 * Instances with FMA fuse the polynomials' multiply-adds, so their exp, sigmoid and tanh
 * can differ from the baseline's in the last bit (both stay within 2 ulp).
 *
 * relu and the gradients are plain loops the compiler vectorises at the instance's width.
 * Each keeps the operations, and for float the double-precision intermediates, of the
 * Cython loops it replaced, so they give the same bits at every instruction set.
 */
#define FC_V ((Py_ssize_t)(FC_VBYTES / sizeof(FC_T)))

typedef FC_T FC_NAME(fc_act_vec) __attribute__((vector_size(FC_VBYTES)));
#if FC_DOUBLE
typedef int64_t FC_NAME(fc_act_ivec) __attribute__((vector_size(FC_VBYTES)));
#else
typedef int32_t FC_NAME(fc_act_ivec) __attribute__((vector_size(FC_VBYTES)));
#endif
#define FC_VEC FC_NAME(fc_act_vec)
#define FC_IVEC FC_NAME(fc_act_ivec)

/* mask ? a : b, mask lanes all ones or all zeros */
static inline FC_VEC FC_NAME(fc_act_select)(FC_IVEC mask, FC_VEC a, FC_VEC b)
{
    return (FC_VEC)(((FC_IVEC)a & mask) | ((FC_IVEC)b & ~mask));
}

#if FC_DOUBLE
/* 2**n for integral n in [-1022, 1023]: n + bias lands in the low mantissa bits of
 * 2**52 + n + bias, and a shift moves it into the exponent field. */
static inline FC_VEC FC_NAME(fc_act_pow2)(FC_VEC n)
{
    return (FC_VEC)((FC_IVEC)(n + (1023.0 + 4503599627370496.0)) << 52);
}

/* exp(t) for t <= 0 and NaN. Cephes exp: t = n ln2 + r, a rational approximation in r;
 * within 2 ulp, subnormal results included (2**n applied as two factors, so one
 * rounding). Rounding to an integer adds and subtracts 1.5 * 2**52. */
static inline FC_VEC FC_NAME(fc_act_exp_nonpos_vec)(FC_VEC t)
{
    const FC_VEC lowest = (FC_VEC){0} - 746.0; /* exp rounds to 0 below */
    t = FC_NAME(fc_act_select)(t < lowest, lowest, t);
    FC_VEC n = (t * 1.4426950408889634074 + 6755399441055744.0) - 6755399441055744.0;
    FC_VEC r = t - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    FC_VEC rr = r * r;
    FC_VEC px = ((rr * 1.26177193074810590878e-4 + 3.02994407707441961300e-2) * rr
                 + 9.99999999999999999910e-1) * r;
    FC_VEC q = ((rr * 3.00198505138664455042e-6 + 2.52448340349684104192e-3) * rr
                + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    FC_VEC p = 1.0 + 2.0 * (px / (q - px));
    FC_VEC n1 = (n * 0.5 + 6755399441055744.0) - 6755399441055744.0;
    return p * FC_NAME(fc_act_pow2)(n1) * FC_NAME(fc_act_pow2)(n - n1);
}

/* sigmoid from e = exp(-|x|) only: 1 / (1 + e) for x >= 0, e / (1 + e) below. */
static inline FC_VEC FC_NAME(fc_act_sigmoid_vec)(FC_VEC x)
{
    const FC_VEC zero = {0}, one = zero + 1.0;
    FC_VEC a = (FC_VEC)((FC_IVEC)x & 0x7fffffffffffffffLL);
    FC_VEC e = FC_NAME(fc_act_exp_nonpos_vec)(-a);
    return FC_NAME(fc_act_select)(x >= zero, one, e) / (1.0 + e);
}

/* tanh: Cephes' odd rational approximation below |x| = 0.625, else (1 - e) / (1 + e)
 * with e = exp(-2|x|) <= 0.29 (no cancellation, no overflow); the sign put back on bits. */
static inline FC_VEC FC_NAME(fc_act_tanh_vec)(FC_VEC x)
{
    const FC_VEC split = (FC_VEC){0} + 0.625;
    FC_IVEC sign = (FC_IVEC)x & (int64_t)0x8000000000000000ull;
    FC_VEC a = (FC_VEC)((FC_IVEC)x & 0x7fffffffffffffffLL);
    FC_VEC z = a * a;
    FC_VEC p = (z * -9.64399179425052238628e-1 - 9.92877231001918586564e1) * z
               - 1.61468768441708447952e3;
    FC_VEC q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
               + 4.84406305325125486048e3;
    FC_VEC small = a + a * z * (p / q);
    FC_VEC e = FC_NAME(fc_act_exp_nonpos_vec)(-2.0 * a);
    FC_VEC large = (1.0 - e) / (1.0 + e);
    return (FC_VEC)((FC_IVEC)FC_NAME(fc_act_select)(a < split, small, large) | sign);
}
#else
/* 2**n for integral n in [-126, 127], as for double with 2**23. */
static inline FC_VEC FC_NAME(fc_act_pow2)(FC_VEC n)
{
    return (FC_VEC)((FC_IVEC)(n + (127.0f + 8388608.0f)) << 23);
}

/* exp(t) for t <= 0 and NaN. Cephes expf: t = n ln2 + r with |r| <= ln2/2, a degree-7
 * polynomial in r; within 1 ulp, subnormal results included. Rounding to an integer adds
 * and subtracts 1.5 * 2**23. */
static inline FC_VEC FC_NAME(fc_act_exp_nonpos_vec)(FC_VEC t)
{
    const FC_VEC lowest = (FC_VEC){0} - 104.0f; /* exp rounds to 0 below */
    t = FC_NAME(fc_act_select)(t < lowest, lowest, t);
    FC_VEC n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    FC_VEC r = t - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    FC_VEC p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    FC_VEC n1 = (n * 0.5f + 12582912.0f) - 12582912.0f;
    return p * FC_NAME(fc_act_pow2)(n1) * FC_NAME(fc_act_pow2)(n - n1);
}

static inline FC_VEC FC_NAME(fc_act_sigmoid_vec)(FC_VEC x)
{
    const FC_VEC zero = {0}, one = zero + 1.0f;
    FC_VEC a = (FC_VEC)((FC_IVEC)x & 0x7fffffff);
    FC_VEC e = FC_NAME(fc_act_exp_nonpos_vec)(-a);
    return FC_NAME(fc_act_select)(x >= zero, one, e) / (1.0f + e);
}

static inline FC_VEC FC_NAME(fc_act_tanh_vec)(FC_VEC x)
{
    const FC_VEC split = (FC_VEC){0} + 0.625f;
    FC_IVEC sign = (FC_IVEC)x & (int32_t)0x80000000u;
    FC_VEC a = (FC_VEC)((FC_IVEC)x & 0x7fffffff);
    FC_VEC z = a * a;
    FC_VEC small = ((((z * -5.70498872745e-3f + 2.06390887954e-2f) * z - 5.37397155531e-2f)
                     * z + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;
    FC_VEC e = FC_NAME(fc_act_exp_nonpos_vec)(-2.0f * a);
    FC_VEC large = (1.0f - e) / (1.0f + e);
    return (FC_VEC)((FC_IVEC)FC_NAME(fc_act_select)(a < split, small, large) | sign);
}
#endif

/* y[i] = f(x[i]) over n elements; x and y may be the same array. A ragged end is one
 * more whole vector ending at n, read before anything is stored (in place, its first
 * lanes would be outputs by then): recomputing the lanes it shares with the vector before
 * stores the same values again. Arrays shorter than a vector are padded with zeros; the
 * memcpy calls that takes cost more than the arithmetic on a softmax row of 10 doubles. */
#define FC_ACT_MAP(name, f)                                                              \
    static void FC_NAME(name)(const FC_T *x, FC_T *y, Py_ssize_t n)                      \
    {                                                                                    \
        FC_VEC v, last;                                                                  \
        if (n < FC_V) {                                                                  \
            if (n > 0) {                                                                 \
                __builtin_memset(&v, 0, sizeof v);                                       \
                __builtin_memcpy(&v, x, n * sizeof(FC_T));                               \
                v = f(v);                                                                \
                __builtin_memcpy(y, &v, n * sizeof(FC_T));                               \
            }                                                                            \
            return;                                                                      \
        }                                                                                \
        __builtin_memcpy(&last, x + n - FC_V, sizeof last);                              \
        Py_ssize_t i = 0;                                                                \
        for (; i + FC_V <= n; i += FC_V) {                                               \
            __builtin_memcpy(&v, x + i, sizeof v);                                       \
            v = f(v);                                                                    \
            __builtin_memcpy(y + i, &v, sizeof v);                                       \
        }                                                                                \
        if (i < n) {                                                                     \
            last = f(last);                                                              \
            __builtin_memcpy(y + n - FC_V, &last, sizeof last);                          \
        }                                                                                \
    }
FC_ACT_MAP(fc_act_exp_nonpos, FC_NAME(fc_act_exp_nonpos_vec))
FC_ACT_MAP(fc_act_sigmoid, FC_NAME(fc_act_sigmoid_vec))
FC_ACT_MAP(fc_act_tanh, FC_NAME(fc_act_tanh_vec))
#undef FC_ACT_MAP

/* max(x, 0) with NaN kept: x < 0 is false for NaN. y may be x. */
static void FC_NAME(fc_act_relu)(const FC_T *x, FC_T *y, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        y[i] = x[i] < 0 ? 0 : x[i];
}

/* Both loads unconditional, so the choice compiles to a vector select, not a branch
 * that half of the elements mispredict. dx may be dy. */
static void FC_NAME(fc_act_relu_backward)(const FC_T *dy, const FC_T *y, FC_T *dx, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        FC_T d = dy[i];
        dx[i] = y[i] > 0 ? d : 0;
    }
}

/* y = a + b, then max(., 0) with NaN kept when relu: a residual block's sum. y may be a or
 * b. */
static void FC_NAME(fc_act_add)(const FC_T *a, const FC_T *b, FC_T *y, Py_ssize_t n, int relu)
{
    if (relu) {
        for (Py_ssize_t i = 0; i < n; i++) {
            FC_T v = a[i] + b[i];
            y[i] = v < 0 ? 0 : v;
        }
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* dy * y * (1 - y); the second product in double, as the Cython loop it replaced did. */
static void FC_NAME(fc_act_sigmoid_backward)(const FC_T *dy, const FC_T *y, FC_T *dx,
                                             Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        dx[i] = (FC_T)((FC_T)(dy[i] * y[i]) * (1.0 - (double)y[i]));
}

/* dy * (1 - y)(1 + y) in double: no cancellation when |y| is near 1. */
static void FC_NAME(fc_act_tanh_backward)(const FC_T *dy, const FC_T *y, FC_T *dx,
                                          Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        dx[i] = (FC_T)(dy[i] * ((1.0 - (double)y[i]) * (1.0 + (double)y[i])));
}

static const FC_TNAME(fc_act_table) FC_NAME(fc_act_table) = {
    (int)FC_V,
    FC_NAME(fc_act_exp_nonpos),
    FC_NAME(fc_act_sigmoid),
    FC_NAME(fc_act_tanh),
    FC_NAME(fc_act_relu),
    FC_NAME(fc_act_relu_backward),
    FC_NAME(fc_act_sigmoid_backward),
    FC_NAME(fc_act_tanh_backward),
    FC_NAME(fc_act_add),
};

#undef FC_V
#undef FC_VEC
#undef FC_IVEC
