/* bfloat16 convolution micro-kernels: bf16 operands, float32 accumulation, on CPUs with
 * AVX512_BF16 (vdpbf16ps: in each float32 lane, the two products of a pair of bf16 values
 * added to the accumulator, twice an FMA's work per instruction).
 *
 * The operands come in pairs along the reduction (the input channels of the forward pass,
 * the output channels of the data gradient): an NHWC image of bf16 values with an even
 * channel count already holds each pixel's channels (2c, 2c+1) as one 32-bit word, which
 * is broadcast to every lane; the packed weights hold, for each channel pair, a row of
 * (output channel, 2) values, so that one 64-byte load gives 16 output channels' pairs.
 *
 * The tile is the float32 forward tile's (see _conv_forward_microkernel.h): tp output
 * pixels x nv vectors of 16 output channels in registers, the same fc_taps table of taps
 * (a zero row where a pixel's tap falls off the grid), the same per-pixel output pointers.
 * Only AVX-512 has these instructions, so there is one instance, reached through the table
 * fc_conv_bf16_table_get() returns (NULL on a CPU without them).
 */
#ifndef FASTCNN_CONV_BF16_KERNELS_H
#define FASTCNN_CONV_BF16_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "_conv_kernels.h"

/* The most rows of a bf16 weight-gradient tile: FC_TILE_CHANNELS channels, or a first
 * layer's kernel row of (tap, channel) values (2 x 12 accumulators at nv = 2) */
#define FC_BF16_WGRAD_ROWS 12

/* The most runs of an expanded patch's row (fc_bf16_patch_row): kernel rows, or (row,
 * column) taps of a dilated kernel */
#define FC_BF16_PATCH_RUNS 64
/* ... and the most vectors of 32 values of an expanded patch */
#define FC_BF16_PATCH_VECTORS 8

#define FC_CONV_BF16_TILE_PARAMS                                                         \
    const uint16_t *x, const long *pix_off, const int *pix_pos, const fc_taps *taps,     \
        int cin, const uint16_t *zeros, const uint16_t *w, long ldw, const float *bias,  \
        int accumulate, int relu, float *const *out, int kcount
#define FC_CONV_BF16_TILE_ARGS                                                           \
    x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias, accumulate, relu, out, kcount

typedef struct {
    int lanes;          /* float32 accumulators per vector */
    int tile_pixels[2]; /* pixels per tile at nv = 1 and nv = 2 vectors */
    /* As the float32 tile, with cin an even count of bf16 values and w the pair rows:
     * the weights of values (c, c+1) of a tap start at w + c * ldw. */
    void (*tile)(int nv, int tp, FC_CONV_BF16_TILE_PARAMS);
    /* dst[i] = src[i] rounded to the nearest bf16, ties to even (NaN stays NaN). */
    void (*to_bf16)(const float *src, long n, uint16_t *dst);
    /* dst[2i] = bf16(a[i]), dst[2i+1] = bf16(b[i]) for i < n; a or b NULL reads zeros. */
    void (*interleave)(const float *a, const float *b, long n, uint16_t *dst);
    /* The weight gradient's tile: tile[i * ldt + k] += sum over the rows' pixel pairs of
     * x pair (i) . dy pair (k), for tc <= FC_BF16_WGRAD_ROWS rows i and nv vectors of 16
     * outputs k. A row's pairs are rowlen[row] steps of xstride (x) and dystride (dy)
     * values; x holds each channel's pair as one 32-bit word, dy each output's. */
    void (*wgrad_tile)(int nv, int tc, const uint16_t *const *xrows,
                       const uint16_t *const *dyrows, const int *rowlen, int nrows,
                       long xstride, long dystride, float *tile, long ldt);
    /* An output row of expanded patches: dst[q * ce + r * run + i] = runs[r][q * step +
     * i] for q < n, r < n_runs (<= FC_BF16_PATCH_RUNS; runs[r] NULL: zeros), i < run, and
     * zeros from n_runs * run to ce. */
    void (*patch_row)(const uint16_t *const *runs, int n_runs, int run, long step, long n,
                      int ce, uint16_t *dst);
} fc_conv_bf16_table;

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma")
#include <immintrin.h>

static inline __attribute__((always_inline)) __mmask16 fc_bf16_lanes(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
}

static inline __attribute__((always_inline)) void fc_bf16_store(float *o, __m512 v, int relu,
                                                                int n)
{
    if (relu) /* what is not below zero stays, NaN included */
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ),
                               _mm512_setzero_ps());
    _mm512_mask_storeu_ps(o, fc_bf16_lanes(n), v);
}

static inline __attribute__((always_inline)) void fc_bf16_tile_impl(const int nv, const int tp,
                                                                    FC_CONV_BF16_TILE_PARAMS)
{
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        if (out[i]) {
            __builtin_prefetch(out[i], 1, 3);
            if (nv > 1)
                __builtin_prefetch(out[i] + 16, 1, 3);
        }
    }
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias && nv > 1 ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    __m512 acc[FC_TILE_PIXELS_MAX][2];
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        acc[i][0] = b0;
        acc[i][1] = b1;
        if (accumulate && out[i]) {
            acc[i][0] = _mm512_maskz_loadu_ps(fc_bf16_lanes(kcount), out[i]);
            if (nv > 1)
                acc[i][1] = _mm512_maskz_loadu_ps(fc_bf16_lanes(kcount - 16), out[i] + 16);
        }
    }
    for (int t = 0; t < taps->ntaps; t++) {
        const uint16_t *xs[FC_TILE_PIXELS_MAX];
        int inside_any;
        FC_TAP_ROWS(xs, inside_any, x, zeros, pix_off, pix_pos, taps, t, tp);
        if (!inside_any)
            continue;
        const uint16_t *wt = w + (long)taps->ids[t] * cin * ldw;
        for (int c = 0; c < cin; c += 2) {
            const __m512bh w0 = (__m512bh)_mm512_loadu_si512(wt + (long)c * ldw);
            const __m512bh w1 =
                nv > 1 ? (__m512bh)_mm512_loadu_si512(wt + (long)c * ldw + 32) : w0;
#pragma GCC unroll 16
            for (int i = 0; i < tp; i++) {
                int32_t pair;
                memcpy(&pair, xs[i] + c, sizeof(pair));
                const __m512bh v = (__m512bh)_mm512_set1_epi32(pair);
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], v, w0);
                if (nv > 1)
                    acc[i][1] = _mm512_dpbf16_ps(acc[i][1], v, w1);
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        if (!out[i])
            continue;
        fc_bf16_store(out[i], acc[i][0], relu, kcount);
        if (nv > 1)
            fc_bf16_store(out[i] + 16, acc[i][1], relu, kcount - 16);
    }
}

/* one function per tile shape, as for float32 */
#define FC_BF16_TILE_FN(NV, TP)                                                          \
    static void fc_bf16_tile_##NV##_##TP(FC_CONV_BF16_TILE_PARAMS)                       \
    {                                                                                    \
        fc_bf16_tile_impl(NV, TP, FC_CONV_BF16_TILE_ARGS);                               \
    }
#define FC_BF16_TILE_FNS(NV)                                                             \
    FC_BF16_TILE_FN(NV, 1) FC_BF16_TILE_FN(NV, 2) FC_BF16_TILE_FN(NV, 3)                 \
    FC_BF16_TILE_FN(NV, 4) FC_BF16_TILE_FN(NV, 5) FC_BF16_TILE_FN(NV, 6)                 \
    FC_BF16_TILE_FN(NV, 7) FC_BF16_TILE_FN(NV, 8) FC_BF16_TILE_FN(NV, 9)                 \
    FC_BF16_TILE_FN(NV, 10) FC_BF16_TILE_FN(NV, 11) FC_BF16_TILE_FN(NV, 12)
FC_BF16_TILE_FNS(1)
FC_BF16_TILE_FNS(2)
FC_BF16_TILE_FN(1, 13)
FC_BF16_TILE_FN(1, 14)
FC_BF16_TILE_FN(1, 15)
FC_BF16_TILE_FN(1, 16)
FC_BF16_TILE_FN(2, 13)
FC_BF16_TILE_FN(2, 14)

static void fc_bf16_tile(int nv, int tp, FC_CONV_BF16_TILE_PARAMS)
{
#define FC_BF16_TP(NV, TP)                                                               \
    case TP:                                                                             \
        fc_bf16_tile_##NV##_##TP(FC_CONV_BF16_TILE_ARGS);                                \
        break;
#define FC_BF16_TPS(NV)                                                                  \
    FC_BF16_TP(NV, 1) FC_BF16_TP(NV, 2) FC_BF16_TP(NV, 3) FC_BF16_TP(NV, 4)              \
    FC_BF16_TP(NV, 5) FC_BF16_TP(NV, 6) FC_BF16_TP(NV, 7) FC_BF16_TP(NV, 8)              \
    FC_BF16_TP(NV, 9) FC_BF16_TP(NV, 10) FC_BF16_TP(NV, 11) FC_BF16_TP(NV, 12)
    if (nv == 1) {
        switch (tp) {
            FC_BF16_TPS(1)
            FC_BF16_TP(1, 13) FC_BF16_TP(1, 14) FC_BF16_TP(1, 15) FC_BF16_TP(1, 16)
        }
    } else {
        switch (tp) {
            FC_BF16_TPS(2)
            FC_BF16_TP(2, 13) FC_BF16_TP(2, 14)
        }
    }
#undef FC_BF16_TP
#undef FC_BF16_TPS
}
#undef FC_BF16_TILE_FN
#undef FC_BF16_TILE_FNS

static void fc_bf16_convert(const float *src, long n, uint16_t *dst)
{
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
    }
    if (i < n) {
        const __mmask16 m = fc_bf16_lanes((int)(n - i));
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)h);
    }
}

static void fc_bf16_interleave(const float *a, const float *b, long n, uint16_t *dst)
{
    /* [a0..a15 | b0..b15] -> a0 b0 a1 b1 ... */
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
                                           25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                           18, 2, 17, 1, 16, 0);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = fc_bf16_lanes((int)(n - i < 16 ? n - i : 16));
        const __m512 va = a ? _mm512_maskz_loadu_ps(m, a + i) : _mm512_setzero_ps();
        const __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + i) : _mm512_setzero_ps();
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(vb, va);
        const __m512i pairs = _mm512_permutexvar_epi16(order, both);
        _mm512_mask_storeu_epi32(dst + 2 * i, m, pairs);
    }
}

static void fc_bf16_patch_row(const uint16_t *const *runs, int n_runs, int run, long step,
                              long n, int ce, uint16_t *dst)
{
    /* a pixel's values in vectors of 32 (lanes 32 v .. 32 v + 31): from each run the
     * lanes it covers, by a load masked to them (masked-off lanes are not read) */
    __mmask32 mask[FC_BF16_PATCH_VECTORS][FC_BF16_PATCH_RUNS];
    long off[FC_BF16_PATCH_VECTORS][FC_BF16_PATCH_RUNS];
    const int nvec = (ce + 31) / 32, last = ce - 32 * (nvec - 1);
    const __mmask32 tail = last == 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << last) - 1);
    for (int v = 0; v < nvec; v++) {
        for (int r = 0; r < n_runs; r++) {
            const int lo = r * run - 32 * v, hi = lo + run;
            const int a = lo < 0 ? 0 : lo, b = hi > 32 ? 32 : hi;
            mask[v][r] = !runs[r] || a >= b
                             ? 0
                             : (__mmask32)(((b == 32 ? 0u : 1u << b) - 1) & ~((1u << a) - 1));
            off[v][r] = -lo;
        }
    }
    for (long q = 0; q < n; q++) {
        uint16_t *o = dst + q * ce;
        for (int v = 0; v < nvec; v++) {
            __m512i x = _mm512_setzero_si512();
            for (int r = 0; r < n_runs; r++)
                if (mask[v][r])
                    x = _mm512_or_si512(x, _mm512_maskz_loadu_epi16(
                                               mask[v][r], runs[r] + q * step + off[v][r]));
            /* lanes past the pixel belong to the pixels after it in the row, whose own
             * stores come later and overwrite them; none past the row's end */
            if (q * ce + 32 * (v + 1) <= n * ce)
                _mm512_storeu_si512(o + 32 * v, x);
            else
                _mm512_mask_storeu_epi16(o + 32 * v, tail, x);
        }
    }
}

static inline __attribute__((always_inline)) void fc_bf16_wgrad_impl(
    const int nv, const int tc, const uint16_t *const *xrows, const uint16_t *const *dyrows,
    const int *rowlen, int nrows, long xstride, long dystride, float *tile, long ldt)
{
    __m512 acc[FC_BF16_WGRAD_ROWS][2];
#pragma GCC unroll 16
    for (int i = 0; i < tc; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int row = 0; row < nrows; row++) {
        const uint16_t *x = xrows[row];
        const uint16_t *dy = dyrows[row];
        for (int p = rowlen[row]; p > 0; p--) {
            const __m512bh d0 = (__m512bh)_mm512_loadu_si512(dy);
            const __m512bh d1 = nv > 1 ? (__m512bh)_mm512_loadu_si512(dy + 32) : d0;
#pragma GCC unroll 16
            for (int i = 0; i < tc; i++) {
                int32_t pair;
                memcpy(&pair, x + 2 * i, sizeof(pair));
                const __m512bh v = (__m512bh)_mm512_set1_epi32(pair);
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], v, d0);
                if (nv > 1)
                    acc[i][1] = _mm512_dpbf16_ps(acc[i][1], v, d1);
            }
            x += xstride;
            dy += dystride;
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tc; i++) {
        _mm512_storeu_ps(tile + i * ldt, _mm512_add_ps(_mm512_loadu_ps(tile + i * ldt),
                                                       acc[i][0]));
        if (nv > 1)
            _mm512_storeu_ps(tile + i * ldt + 16,
                             _mm512_add_ps(_mm512_loadu_ps(tile + i * ldt + 16), acc[i][1]));
    }
}

#define FC_BF16_WGRAD_CASE(NV, TC)                                                       \
    case TC:                                                                             \
        fc_bf16_wgrad_impl(NV, TC, xrows, dyrows, rowlen, nrows, xstride, dystride, tile, \
                           ldt);                                                         \
        break;
#define FC_BF16_WGRAD_CASES(NV)                                                          \
    FC_BF16_WGRAD_CASE(NV, 1) FC_BF16_WGRAD_CASE(NV, 2) FC_BF16_WGRAD_CASE(NV, 3)        \
    FC_BF16_WGRAD_CASE(NV, 4) FC_BF16_WGRAD_CASE(NV, 5) FC_BF16_WGRAD_CASE(NV, 6)        \
    FC_BF16_WGRAD_CASE(NV, 7) FC_BF16_WGRAD_CASE(NV, 9) FC_BF16_WGRAD_CASE(NV, 10)       \
    FC_BF16_WGRAD_CASE(NV, 11) FC_BF16_WGRAD_CASE(NV, 12)                                \
    default:                                                                             \
        fc_bf16_wgrad_impl(NV, FC_TILE_CHANNELS, xrows, dyrows, rowlen, nrows, xstride,  \
                           dystride, tile, ldt);

static void fc_bf16_wgrad_tile(int nv, int tc, const uint16_t *const *xrows,
                               const uint16_t *const *dyrows, const int *rowlen, int nrows,
                               long xstride, long dystride, float *tile, long ldt)
{
    if (nv == 1) {
        switch (tc) { FC_BF16_WGRAD_CASES(1) }
    } else {
        switch (tc) { FC_BF16_WGRAD_CASES(2) }
    }
}
#undef FC_BF16_WGRAD_CASE
#undef FC_BF16_WGRAD_CASES

static const fc_conv_bf16_table fc_conv_bf16_table_avx512bf16 = {
    .lanes = 16,
    .tile_pixels = {16, 14},
    .tile = fc_bf16_tile,
    .to_bf16 = fc_bf16_convert,
    .interleave = fc_bf16_interleave,
    .wgrad_tile = fc_bf16_wgrad_tile,
    .patch_row = fc_bf16_patch_row,
};
#pragma GCC pop_options
#endif

/* Whether this CPU has what the bf16 kernels need (AVX-512 F/VL/DQ/BW and AVX512_BF16). */
static int fc_cpu_has_bf16(void)
{
#if FC_X86
    __builtin_cpu_init();
    return fc_cpu_isa() == FC_ISA_AVX512 && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

/* The bf16 kernels, or NULL where this CPU lacks the instructions. */
static const fc_conv_bf16_table *fc_conv_bf16_table_get(void)
{
#if FC_X86
    if (fc_cpu_has_bf16())
        return &fc_conv_bf16_table_avx512bf16;
#endif
    return NULL;
}

#endif
