/* Single-input-channel convolution with the 2x2 max pooling after it, for prediction; one
 * instance per (element type, instruction set) through _conv_microkernel.h.
 *
 * A network's first layer on grayscale images is often a convolution with a handful of
 * filters followed by 2x2 max pooling. Vectorised over the output channels, its vectors
 * would be mostly empty; vectorised over the K-fold expanded rows (_conv_c1_microkernel.h),
 * every FMA reads a vector from memory. Here each vector holds output columns of one
 * channel: an input row vector is loaded once per tap and multiplied by each channel's
 * weight, broadcast, into that channel's accumulators for two output rows. The two rows
 * are then pooled in registers (bias and relu first, so the values are those of the
 * unfused layers, bit for bit) and only the pooled pixels are written, in NHWC order.
 *
 * With AVX-512 the vectors are 32 bytes: the same FMA throughput as 64-byte ones here, a
 * strip of 8 (float) columns wastes less of a narrow image, and the 32 registers hold
 * the accumulators of 12 channels.
 */

#define FC_PV_BYTES (FC_VBYTES == 64 ? 32 : FC_VBYTES)
/* (FC_PL is undefined by _conv_microkernel.h, after the c1 table has used it) */
#define FC_PL ((int)((FC_VBYTES == 64 ? 32 : FC_VBYTES) / sizeof(FC_T)))
typedef FC_T FC_NAME(pvec) __attribute__((vector_size(FC_PV_BYTES)));
#if FC_DOUBLE
typedef long long FC_NAME(pmask) __attribute__((vector_size(FC_PV_BYTES)));
#else
typedef int FC_NAME(pmask) __attribute__((vector_size(FC_PV_BYTES)));
#endif

/* Channels per pass, and strips of FC_PL columns per pass: two rows of accumulators for
 * each, next to the input vectors and a broadcast weight (32 registers with AVX-512, 16
 * otherwise). */
enum {
    FC_NAME(C1_POOL_GROUP) = 6,
    FC_NAME(C1_POOL_STRIPS) = FC_VBYTES == 64 ? 2 : 1,
};

/* relu with the activation kernels' rule: below zero becomes +0, NaN and -0 stay. x86's
 * max(0, v) is exactly that (it returns its second operand unless the first is greater). */
static inline FC_NAME(pvec) FC_NAME(prelu)(FC_NAME(pvec) v)
{
#if FC_X86 && FC_PV_BYTES == 32 && FC_DOUBLE
    return (FC_NAME(pvec))_mm256_max_pd(_mm256_setzero_pd(), (__m256d)v);
#elif FC_X86 && FC_PV_BYTES == 32
    return (FC_NAME(pvec))_mm256_max_ps(_mm256_setzero_ps(), (__m256)v);
#elif FC_X86 && FC_DOUBLE
    return (FC_NAME(pvec))_mm_max_pd(_mm_setzero_pd(), (__m128d)v);
#elif FC_X86
    return (FC_NAME(pvec))_mm_max_ps(_mm_setzero_ps(), (__m128)v);
#else
    return (FC_NAME(pvec))((FC_NAME(pmask))v & ~(v < 0));
#endif
}

static inline FC_NAME(pvec) FC_NAME(pload)(const FC_T *p)
{
    FC_NAME(pvec) v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}

/* The max pool's rule (fc_pool_max_values_row): ``u`` replaces ``best`` when greater or
 * NaN, unless ``best`` is NaN already (the first NaN wins, the first of equal values). */
static inline FC_NAME(pvec) FC_NAME(pool_pick)(FC_NAME(pvec) best, FC_NAME(pvec) u)
{
    typedef FC_NAME(pmask) mask;
    const mask take = (best == best) & ~(u <= best);
    return (FC_NAME(pvec))(((mask)u & take) | ((mask)best & ~take));
}

/* ns strips of FC_PL columns from column c0, g channels. */
static inline __attribute__((always_inline)) void FC_NAME(forward_c1_pool_impl)(
    const int g, const int ns, const FC_T *x, long row_step, long tap_row, int R, int S,
    int dw, const FC_T *w, int K, const FC_T *bias, int relu, long Wp, long c0, FC_T *out)
{
    typedef FC_NAME(pvec) vec;
    typedef FC_NAME(pmask) mask;
    enum { G = FC_NAME(C1_POOL_GROUP), NS = FC_NAME(C1_POOL_STRIPS) };
    vec acc[NS][2][G];
#pragma GCC unroll 6
    for (int k = 0; k < g; k++) {
        vec b; /* (not {} + bias[k], which turns -0 into +0) */
        for (int lane = 0; lane < FC_PL; lane++)
            b[lane] = bias[k];
#pragma GCC unroll 2
        for (int t = 0; t < ns; t++)
            acc[t][0][k] = acc[t][1][k] = b;
    }
    const FC_T *xr = x + c0;
    const FC_T *wr = w;
    for (int r = 0; r < R; r++, xr += tap_row) {
        const FC_T *xs = xr;
        for (int s = 0; s < S; s++, xs += dw, wr += K) {
            vec x0[NS], x1[NS];
#pragma GCC unroll 2
            for (int t = 0; t < ns; t++) {
                x0[t] = FC_NAME(pload)(xs + t * FC_PL);
                x1[t] = FC_NAME(pload)(xs + t * FC_PL + row_step);
            }
#pragma GCC unroll 6
            for (int k = 0; k < g; k++) {
                const FC_T wk = wr[k];
#pragma GCC unroll 2
                for (int t = 0; t < ns; t++) {
                    acc[t][0][k] += x0[t] * wk;
                    acc[t][1][k] += x1[t] * wk;
                }
            }
        }
    }
    mask next; /* lane i takes lane i ^ 1: each even lane meets its right neighbour */
    for (int lane = 0; lane < FC_PL; lane++)
        next[lane] = lane ^ 1;
#pragma GCC unroll 2
    for (int t = 0; t < ns; t++) {
        /* relu, then each row's pairs of columns (left first), then the two rows (top
         * first): the window's elements in the pool kernel's order */
        FC_T pooled[G][FC_PL];
#pragma GCC unroll 6
        for (int k = 0; k < g; k++) {
            vec row[2];
            for (int j = 0; j < 2; j++) {
                vec value = acc[t][j][k];
                if (relu)
                    value = FC_NAME(prelu)(value);
                row[j] = FC_NAME(pool_pick)(value, __builtin_shuffle(value, next));
            }
            const vec best = FC_NAME(pool_pick)(row[0], row[1]);
            __builtin_memcpy(pooled[k], &best, sizeof(best));
        }
        const long first = (c0 + t * FC_PL) / 2;
        const long n_px = Wp - first < FC_PL / 2 ? Wp - first : FC_PL / 2;
        FC_T *o = out + first * K;
        for (long p = 0; p < n_px; p++)
#pragma GCC unroll 6
            for (int k = 0; k < g; k++)
                o[p * K + k] = pooled[k][2 * p];
    }
}

/* One function per (channels, strips), each optimised on its own (as forward_c1's). */
#define FC_C1P_FN(G, NS)                                                                  \
    static void FC_NAME(forward_c1_pool_##G##_##NS)(                                      \
        const FC_T *x, long row_step, long tap_row, int R, int S, int dw, const FC_T *w,  \
        int K, const FC_T *bias, int relu, long Wp, long c0, FC_T *out)                   \
    {                                                                                     \
        FC_NAME(forward_c1_pool_impl)(G, NS, x, row_step, tap_row, R, S, dw, w, K, bias,  \
                                      relu, Wp, c0, out);                                 \
    }
#define FC_C1P_FNS(NS) FC_C1P_FN(1, NS) FC_C1P_FN(2, NS) FC_C1P_FN(3, NS) FC_C1P_FN(4, NS) \
    FC_C1P_FN(5, NS) FC_C1P_FN(6, NS)
FC_C1P_FNS(1)
#if FC_VBYTES == 64
FC_C1P_FNS(2)
#endif
#undef FC_C1P_FN
#undef FC_C1P_FNS

#define FC_C1P_CASE(G, NS)                                                                \
    case G:                                                                               \
        FC_NAME(forward_c1_pool_##G##_##NS)(x, row_step, tap_row, R, S, dw, w + k0, K,    \
                                            bias + k0, relu, Wp, c0, out + k0);           \
        break;
#define FC_C1P_CASES(NS) FC_C1P_CASE(1, NS) FC_C1P_CASE(2, NS) FC_C1P_CASE(3, NS)         \
    FC_C1P_CASE(4, NS) FC_C1P_CASE(5, NS) default: FC_C1P_CASE(6, NS)

/* One pooled output row of Wp pixels, K channels: out[p * K + k] is the maximum over the
 * 2x2 window at output rows (0, 1) and columns (2p, 2p + 1) of the convolution
 *   bias[k] + sum over taps (r, s) of x[j * row_step + r * tap_row + col + s * dw]
 *                                     * w[(r * S + s) * K + k]   (then relu),
 * at output row j and column col. x is readable at every column up to
 * 2 * Wp rounded up to FC_PL, plus (S - 1) * dw, of every row a tap reaches. */
static void FC_NAME(forward_c1_pool)(const FC_T *x, long row_step, long tap_row, int R,
                                     int S, int dw, const FC_T *w, int K, const FC_T *bias,
                                     int relu, long Wp, FC_T *out)
{
    const long strips = (2 * Wp + FC_PL - 1) / FC_PL;
    for (int k0 = 0; k0 < K; k0 += FC_NAME(C1_POOL_GROUP)) {
        const int g = K - k0 < FC_NAME(C1_POOL_GROUP) ? K - k0 : FC_NAME(C1_POOL_GROUP);
        for (long strip = 0; strip < strips;) {
            const long c0 = strip * FC_PL;
#if FC_VBYTES == 64
            if (strip + 2 <= strips) {
                switch (g) {
                    FC_C1P_CASES(2)
                }
                strip += 2;
                continue;
            }
#endif
            switch (g) {
                FC_C1P_CASES(1)
            }
            strip += 1;
        }
    }
}
#undef FC_C1P_CASE
#undef FC_C1P_CASES
#undef FC_PV_BYTES
