/* Register-tiled convolution micro-kernels, written once and instantiated by
 * _conv_kernels.h for each (element type, vector width, instruction set).
 *
 * The including file defines FC_T (float or double), FC_VBYTES (vector size in bytes)
 * and FC_NAME(x) (appends a unique suffix), and sets the instruction set with
 * `#pragma GCC target`. Each vector width needs its own instantiation: a 64-byte vector
 * in a function compiled without AVX-512 is emulated and dozens of times slower.
 *
 * Forward tile: tp output pixels x (nv vectors of output channels), held in registers
 * (tp from tile_pixels()). For each tap and input channel, nv weight vectors are loaded
 * and every pixel's input value is broadcast against them: nv loads + tp broadcasts feed
 * tp*nv FMAs.
 * The caller gives, per tap, one input pointer per pixel (a zero row where the tap falls
 * into padding) and the tap's index into the packed weights, so padding, stride, dilation
 * and the phases of the strided data gradient all run through the same loop, and taps
 * that read only padding for the whole tile are left out.
 *
 * Weight-gradient tile: tc input channels x (nv vectors of output channels), loaded from
 * and added back to `tile`, reduced over a list of pixel rows: per pixel, nv delta vectors
 * are loaded and tc input values broadcast against them.
 */
#define FC_V ((int)(FC_VBYTES / sizeof(FC_T)))

typedef FC_T FC_NAME(vec) __attribute__((vector_size(FC_VBYTES)));

static inline FC_NAME(vec) FC_NAME(load)(const FC_T *p)
{
    FC_NAME(vec) v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}

static inline void FC_NAME(store)(FC_T *p, FC_NAME(vec) v)
{
    __builtin_memcpy(p, &v, sizeof(v));
}

static inline __attribute__((always_inline)) void FC_NAME(forward_tile_impl)(
    const int nv, const int tp, const FC_T *const *xptr, long pstride, int ntaps, int cin,
    const int *tap_ids, const FC_T *w, FC_T *tile)
{
    typedef FC_NAME(vec) vec;
    const int kb = nv * FC_V;
    vec acc[FC_TILE_PIXELS_MAX][2];
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        acc[i][0] = (vec){0};
        acc[i][1] = (vec){0};
    }
    for (int t = 0; t < ntaps; t++) {
        const FC_T *x[FC_TILE_PIXELS_MAX];
        if (pstride) {
            /* a strip of pixels along one input row: one pointer per tap */
#pragma GCC unroll 16
            for (int i = 0; i < tp; i++)
                x[i] = xptr[t] + i * pstride;
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < tp; i++)
                x[i] = xptr[t * tp + i];
        }
        const FC_T *wt = w + (long)tap_ids[t] * cin * kb;
        for (int c = 0; c < cin; c++) {
            const vec w0 = FC_NAME(load)(wt + (long)c * kb);
            const vec w1 = nv > 1 ? FC_NAME(load)(wt + (long)c * kb + FC_V) : w0;
#pragma GCC unroll 16
            for (int i = 0; i < tp; i++) {
                const FC_T b = x[i][c];
                acc[i][0] += w0 * b;
                if (nv > 1)
                    acc[i][1] += w1 * b;
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        FC_NAME(store)(tile + i * kb, acc[i][0]);
        if (nv > 1)
            FC_NAME(store)(tile + i * kb + FC_V, acc[i][1]);
    }
}

/* Pixels per forward tile: as many as the vector registers hold as accumulators next to
 * the nv weight vectors and a broadcast (32 registers with AVX-512, 16 otherwise). */
static int FC_NAME(tile_pixels)(int nv)
{
    if (FC_VBYTES == 64)
        return nv == 1 ? 16 : 12;
    return nv == 1 ? 12 : 6;
}

/* pstride == 0: xptr holds tp pointers per tap (any pixels); pstride > 0: xptr holds one
 * pointer per tap, for the first pixel, the others following pstride elements apart. */
static void FC_NAME(forward_tile)(int nv, const FC_T *const *xptr, long pstride, int ntaps,
                                  int cin, const int *tap_ids, const FC_T *w, FC_T *tile)
{
    if (FC_VBYTES == 64) {
        if (nv == 1)
            FC_NAME(forward_tile_impl)(1, 16, xptr, pstride, ntaps, cin, tap_ids, w, tile);
        else
            FC_NAME(forward_tile_impl)(2, 12, xptr, pstride, ntaps, cin, tap_ids, w, tile);
    } else {
        if (nv == 1)
            FC_NAME(forward_tile_impl)(1, 12, xptr, pstride, ntaps, cin, tap_ids, w, tile);
        else
            FC_NAME(forward_tile_impl)(2, 6, xptr, pstride, ntaps, cin, tap_ids, w, tile);
    }
}

/* Rows [first, first + count) of a forward tile to the output, plus bias, then relu if
 * asked (NaN stays NaN): out row i at out + (i - first) * ldo, kcount channels. */
static void FC_NAME(store_tile)(const FC_T *tile, int block, int first, int count,
                                const FC_T *bias, int kcount, int relu, FC_T *out, long ldo)
{
    for (int i = first; i < first + count; i++) {
        const FC_T *t = tile + (long)i * block;
        FC_T *o = out + (long)(i - first) * ldo;
        if (relu) {
            for (int k = 0; k < kcount; k++) {
                const FC_T v = t[k] + bias[k];
                o[k] = v < 0 ? 0 : v;
            }
        } else {
            for (int k = 0; k < kcount; k++)
                o[k] = t[k] + bias[k];
        }
    }
}

/* dst[q] += src[q] for q < n: full vectors, then 16-byte vectors, then single elements. */
static void FC_NAME(add_run)(FC_T *dst, const FC_T *src, long n)
{
    typedef FC_T small_vec __attribute__((vector_size(16)));
    enum { SMALL = (int)(16 / sizeof(FC_T)) };
    long q = 0;
    for (; q + FC_V <= n; q += FC_V)
        FC_NAME(store)(dst + q, FC_NAME(load)(dst + q) + FC_NAME(load)(src + q));
    for (; q + SMALL <= n; q += SMALL) {
        small_vec a, b;
        __builtin_memcpy(&a, dst + q, sizeof(a));
        __builtin_memcpy(&b, src + q, sizeof(b));
        a += b;
        __builtin_memcpy(dst + q, &a, sizeof(a));
    }
    for (; q < n; q++)
        dst[q] += src[q];
}

static inline __attribute__((always_inline)) void FC_NAME(weight_grad_tile_impl)(
    const int nv, const int tc, const FC_T *const *xrows, const FC_T *const *dyrows,
    const int *rowlen, int nrows, long xstride, long dystride, FC_T *tile)
{
    typedef FC_NAME(vec) vec;
    const int kb = nv * FC_V;
    /* A small tile has too few accumulators to hide the FMA latency: give it `lanes`
     * independent copies fed by consecutive pixels, summed at the end (a fixed order). */
    enum { MAX_LANES = 8 };
    const int lanes = tc * nv >= 8 ? 1 : tc * nv >= 4 ? 2 : tc * nv >= 2 ? 4 : 8;
    vec acc[MAX_LANES][FC_TILE_CHANNELS][2];
#pragma GCC unroll 16
    for (int u = 0; u < lanes; u++) {
#pragma GCC unroll 16
        for (int i = 0; i < tc; i++) {
            acc[u][i][0] = (vec){0};
            acc[u][i][1] = (vec){0};
        }
    }
    for (int row = 0; row < nrows; row++) {
        const FC_T *x = xrows[row];
        const FC_T *dy = dyrows[row];
        int p = rowlen[row];
        for (; p >= lanes; p -= lanes) {
#pragma GCC unroll 16
            for (int u = 0; u < lanes; u++) {
                const vec d0 = FC_NAME(load)(dy + u * dystride);
                const vec d1 = nv > 1 ? FC_NAME(load)(dy + u * dystride + FC_V) : d0;
#pragma GCC unroll 16
                for (int i = 0; i < tc; i++) {
                    const FC_T b = x[u * xstride + i];
                    acc[u][i][0] += d0 * b;
                    if (nv > 1)
                        acc[u][i][1] += d1 * b;
                }
            }
            x += lanes * xstride;
            dy += lanes * dystride;
        }
        for (; p > 0; p--) {
            const vec d0 = FC_NAME(load)(dy);
            const vec d1 = nv > 1 ? FC_NAME(load)(dy + FC_V) : d0;
#pragma GCC unroll 16
            for (int i = 0; i < tc; i++) {
                const FC_T b = x[i];
                acc[0][i][0] += d0 * b;
                if (nv > 1)
                    acc[0][i][1] += d1 * b;
            }
            x += xstride;
            dy += dystride;
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tc; i++) {
        vec s0 = FC_NAME(load)(tile + i * kb);
        vec s1 = nv > 1 ? FC_NAME(load)(tile + i * kb + FC_V) : s0;
#pragma GCC unroll 16
        for (int u = 0; u < lanes; u++) {
            s0 += acc[u][i][0];
            if (nv > 1)
                s1 += acc[u][i][1];
        }
        FC_NAME(store)(tile + i * kb, s0);
        if (nv > 1)
            FC_NAME(store)(tile + i * kb + FC_V, s1);
    }
}

#define FC_WGRAD_CASE(NV, TC)                                                            \
    case TC:                                                                             \
        FC_NAME(weight_grad_tile_impl)(NV, TC, xrows, dyrows, rowlen, nrows, xstride,    \
                                       dystride, tile);                                  \
        break;

static void FC_NAME(weight_grad_tile)(int nv, int tc, const FC_T *const *xrows,
                                      const FC_T *const *dyrows, const int *rowlen, int nrows,
                                      long xstride, long dystride, FC_T *tile)
{
    if (nv == 1) {
        switch (tc) {
            FC_WGRAD_CASE(1, 1) FC_WGRAD_CASE(1, 2) FC_WGRAD_CASE(1, 3) FC_WGRAD_CASE(1, 4)
            FC_WGRAD_CASE(1, 5) FC_WGRAD_CASE(1, 6) FC_WGRAD_CASE(1, 7)
            default: FC_NAME(weight_grad_tile_impl)(1, FC_TILE_CHANNELS, xrows, dyrows, rowlen,
                                                    nrows, xstride, dystride, tile);
        }
    } else {
        switch (tc) {
            FC_WGRAD_CASE(2, 1) FC_WGRAD_CASE(2, 2) FC_WGRAD_CASE(2, 3) FC_WGRAD_CASE(2, 4)
            FC_WGRAD_CASE(2, 5) FC_WGRAD_CASE(2, 6) FC_WGRAD_CASE(2, 7)
            default: FC_NAME(weight_grad_tile_impl)(2, FC_TILE_CHANNELS, xrows, dyrows, rowlen,
                                                    nrows, xstride, dystride, tile);
        }
    }
}

#undef FC_WGRAD_CASE

/* Single-input-channel convolutions (a network's first layer on grayscale images), stride
 * 1 along the width. Vectorised along the output row instead of the output channels:
 * with C = 1 the inputs of FC_V neighbouring output pixels are FC_V neighbouring values of
 * one input row, so a tap is one vector load and one FMA per output channel, with every
 * lane useful whatever K is. Rows are zero-padded copies readable FC_V past their end. */
static inline __attribute__((always_inline)) void FC_NAME(forward_c1_impl)(
    const int kt, const FC_T *const *rows, int R, int S, int dw, const FC_T *w, int K,
    int Wo, FC_T *out, long ldo)
{
    typedef FC_NAME(vec) vec;
    for (int ow = 0; ow < Wo; ow += FC_V) {
        vec acc[FC_TILE_CHANNELS];
#pragma GCC unroll 16
        for (int j = 0; j < kt; j++)
            acc[j] = (vec){0};
        for (int r = 0; r < R; r++) {
            const FC_T *row = rows[r] + ow;
            const FC_T *wr = w + (long)r * S * K;
            for (int s = 0; s < S; s++) {
                const vec xv = FC_NAME(load)(row + (long)s * dw);
#pragma GCC unroll 16
                for (int j = 0; j < kt; j++)
                    acc[j] += xv * wr[s * K + j];
            }
        }
#pragma GCC unroll 16
        for (int j = 0; j < kt; j++)
            FC_NAME(store)(out + j * ldo + ow, acc[j]);
    }
}

#define FC_C1_CASE(KT)                                                                    \
    case KT:                                                                              \
        FC_NAME(forward_c1_impl)(KT, rows, R, S, dw, w + k0, K, Wo, out + k0 * ldo, ldo); \
        break;

/* out[k * ldo + ow] for k < K, ow < Wo rounded up to FC_V (planar; the caller transposes).
 * w is (R, S, K). */
static void FC_NAME(forward_c1)(const FC_T *const *rows, int R, int S, int dw, const FC_T *w,
                                int K, int Wo, FC_T *out, long ldo)
{
    for (int k0 = 0; k0 < K; k0 += FC_TILE_CHANNELS) {
        switch (K - k0) {
            FC_C1_CASE(1) FC_C1_CASE(2) FC_C1_CASE(3) FC_C1_CASE(4)
            FC_C1_CASE(5) FC_C1_CASE(6) FC_C1_CASE(7)
            default:
                FC_NAME(forward_c1_impl)(FC_TILE_CHANNELS, rows, R, S, dw, w + k0, K, Wo,
                                         out + k0 * ldo, ldo);
        }
    }
}
#undef FC_C1_CASE

static inline __attribute__((always_inline)) void FC_NAME(weight_grad_c1_impl)(
    const int kt, const FC_T *const *xrows, const FC_T *const *dyrows, long lddy, int nrows,
    int width, FC_T *dw)
{
    typedef FC_NAME(vec) vec;
    vec acc[FC_TILE_CHANNELS];
#pragma GCC unroll 16
    for (int j = 0; j < kt; j++)
        acc[j] = (vec){0};
    for (int row = 0; row < nrows; row++) {
        const FC_T *x = xrows[row];
        const FC_T *d = dyrows[row];
        for (int ow = 0; ow < width; ow += FC_V) {
            const vec xv = FC_NAME(load)(x + ow);
#pragma GCC unroll 16
            for (int j = 0; j < kt; j++)
                acc[j] += xv * FC_NAME(load)(d + j * lddy + ow);
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < kt; j++) {
        FC_T total = 0;
        for (int lane = 0; lane < FC_V; lane++)
            total += acc[j][lane];
        dw[j] = total;
    }
}

#define FC_C1_CASE(KT)                                                                    \
    case KT:                                                                              \
        FC_NAME(weight_grad_c1_impl)(KT, xrows, dyrows_k, lddy, nrows, width, dw + k0);  \
        break;

/* dw[k] = sum over rows and columns of x * dy[k] for one tap. dyrows[i] + k * lddy is row
 * i's delta for output channel k (planar, zero past the row's end); width is a multiple of
 * FC_V. dyrows_k is a scratch array of nrows pointers. */
static void FC_NAME(weight_grad_c1)(const FC_T *const *xrows, const FC_T *const *dyrows,
                                    const FC_T **dyrows_k, long lddy, int nrows, int width,
                                    int K, FC_T *dw)
{
    for (int k0 = 0; k0 < K; k0 += FC_TILE_CHANNELS) {
        for (int i = 0; i < nrows; i++)
            dyrows_k[i] = dyrows[i] + k0 * lddy;
        switch (K - k0) {
            FC_C1_CASE(1) FC_C1_CASE(2) FC_C1_CASE(3) FC_C1_CASE(4)
            FC_C1_CASE(5) FC_C1_CASE(6) FC_C1_CASE(7)
            default:
                FC_NAME(weight_grad_c1_impl)(FC_TILE_CHANNELS, xrows, dyrows_k, lddy, nrows,
                                             width, dw + k0);
        }
    }
}
#undef FC_C1_CASE

#undef FC_V
