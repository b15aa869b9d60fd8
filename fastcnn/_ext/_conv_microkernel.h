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
 * The caller gives each pixel's origin (an element offset into the input and a grid
 * position) and a table of taps (fc_taps); the kernel makes each tap's pointers itself,
 * a zero row where a pixel's tap falls off the grid, and skips taps that fall off it for
 * the whole tile. So padding, stride, dilation, the phases of the strided data gradient
 * and whole kernel rows read as one tap all run through the same loop. The accumulators
 * start from the bias and go from registers straight to each pixel's output pointer.

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

/* dst[q] = src[q] for q < n < FC_V, in fixed-size pieces: a loop of single elements
 * here was turned into a call to memcpy, which spilled the tile's accumulators. */
static inline __attribute__((always_inline)) void FC_NAME(copy_part)(FC_T *dst,
                                                                     const FC_T *src, int n)
{
    int q = 0;
    if (FC_V > 8 && (n & 8)) {
        __builtin_memcpy(dst + q, src + q, 8 * sizeof(FC_T));
        q += 8;
    }
    if (FC_V > 4 && (n & 4)) {
        __builtin_memcpy(dst + q, src + q, 4 * sizeof(FC_T));
        q += 4;
    }
    if (FC_V > 2 && (n & 2)) {
        __builtin_memcpy(dst + q, src + q, 2 * sizeof(FC_T));
        q += 2;
    }
    if (n & 1)
        dst[q] = src[q];
}

/* One vector of a forward tile to the output: relu if asked (what is not below zero stays,
 * NaN included), then the first n lanes stored (all of them when n >= the vector length). */
static inline __attribute__((always_inline)) void FC_NAME(store_part)(FC_T *o, FC_NAME(vec) v,
                                                                      int relu, int n)
{
    typedef __typeof__(v < v) mask;
    if (relu)
        v = (FC_NAME(vec))((mask)v & ~(v < 0));
    if (n >= FC_V) {
        FC_NAME(store)(o, v);
    } else if (n > 0) {
        FC_T lanes[FC_V];
        FC_NAME(store)(lanes, v);
        FC_NAME(copy_part)(o, lanes, n);
    }
}

/* The first n lanes of a vector from p (all of them when n >= the vector length), zeros
 * after. */
static inline __attribute__((always_inline)) FC_NAME(vec) FC_NAME(load_part)(const FC_T *p,
                                                                             int n)
{
    if (n >= FC_V)
        return FC_NAME(load)(p);
    FC_T lanes[FC_V] = {0};
    if (n > 0)
        FC_NAME(copy_part)(lanes, p, n);
    return FC_NAME(load)(lanes);
}

static inline __attribute__((always_inline)) void FC_NAME(forward_tile_impl)(
    const int nv, const int tp, const FC_T *x, const long *pix_off, const int *pix_pos,
    const fc_taps *taps, int cin, const FC_T *zeros, const FC_T *w, long ldw,
    const FC_T *bias, int accumulate, int relu, FC_T *const *out, int kcount)
{
    typedef FC_NAME(vec) vec;
    /* Fetch the output lines for writing now, so that their misses overlap the
     * arithmetic instead of stalling the stores at the end. */
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        if (out[i]) {
            __builtin_prefetch(out[i], 1, 3);
            __builtin_prefetch(out[i] + kcount - 1, 1, 3);
            if (nv > 1)
                __builtin_prefetch(out[i] + FC_V, 1, 3);
        }
    }
    const vec b0 = bias ? FC_NAME(load)(bias) : (vec){0};
    const vec b1 = bias && nv > 1 ? FC_NAME(load)(bias + FC_V) : (vec){0};
    vec acc[FC_TILE_PIXELS_MAX][2];
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        acc[i][0] = b0;
        acc[i][1] = b1;
        if (accumulate && out[i]) {
            acc[i][0] = FC_NAME(load_part)(out[i], kcount);
            if (nv > 1)
                acc[i][1] = FC_NAME(load_part)(out[i] + FC_V, kcount - FC_V);
        }
    }
    for (int t = 0; t < taps->ntaps; t++) {
        const FC_T *xs[FC_TILE_PIXELS_MAX];
        const long off = taps->off[t];
        const int row = taps->row[t], col = taps->col[t];
        int inside_any = 0;
#pragma GCC unroll 16
        for (int i = 0; i < tp; i++) {
            /* & rather than &&: no branch to mispredict on the image's borders */
            const int inside = ((unsigned)(pix_pos[i] + row) < (unsigned)taps->rows)
                               & ((unsigned)(pix_pos[tp + i] + col) < (unsigned)taps->cols);
            xs[i] = inside ? x + pix_off[i] + off : zeros;
            inside_any |= inside;
        }
        if (!inside_any)   /* the whole tile reads padding at this tap */
            continue;
        const FC_T *wt = w + (long)taps->ids[t] * cin * ldw;
        for (int c = 0; c < cin; c++) {
            const vec w0 = FC_NAME(load)(wt + (long)c * ldw);
            const vec w1 = nv > 1 ? FC_NAME(load)(wt + (long)c * ldw + FC_V) : w0;
#pragma GCC unroll 16
            for (int i = 0; i < tp; i++) {
                const FC_T v = xs[i][c];
                acc[i][0] += w0 * v;
                if (nv > 1)
                    acc[i][1] += w1 * v;
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        if (!out[i])
            continue;
        FC_NAME(store_part)(out[i], acc[i][0], relu, kcount);
        if (nv > 1 && kcount > FC_V)
            FC_NAME(store_part)(out[i] + FC_V, acc[i][1], relu, kcount - FC_V);
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

/* One function per tile shape, so that each is optimised on its own (with all of them
 * inlined into one function, GCC kept the accumulators in memory). */
#define FC_TILE_FN(NV, TP)                                                                   \
    static void FC_NAME(forward_tile_##NV##_##TP)(                                           \
        const FC_T *x, const long *pix_off, const int *pix_pos, const fc_taps *taps, int cin, \
        const FC_T *zeros, const FC_T *w, long ldw, const FC_T *bias, int accumulate,       \
        int relu, FC_T *const *out, int kcount)                                              \
    {                                                                                        \
        FC_NAME(forward_tile_impl)(NV, TP, x, pix_off, pix_pos, taps, cin, zeros, w, ldw,   \
                                   bias, accumulate, relu, out, kcount);                     \
    }
#define FC_TILE_FNS_1_TO_6(NV) FC_TILE_FN(NV, 1) FC_TILE_FN(NV, 2) FC_TILE_FN(NV, 3)         \
    FC_TILE_FN(NV, 4) FC_TILE_FN(NV, 5) FC_TILE_FN(NV, 6)
#define FC_TILE_FNS_7_TO_12(NV) FC_TILE_FN(NV, 7) FC_TILE_FN(NV, 8) FC_TILE_FN(NV, 9)        \
    FC_TILE_FN(NV, 10) FC_TILE_FN(NV, 11) FC_TILE_FN(NV, 12)
FC_TILE_FNS_1_TO_6(1)
FC_TILE_FNS_7_TO_12(1)
FC_TILE_FNS_1_TO_6(2)
#if FC_VBYTES == 64
FC_TILE_FN(1, 13)
FC_TILE_FN(1, 14)
FC_TILE_FN(1, 15)
FC_TILE_FN(1, 16)
FC_TILE_FNS_7_TO_12(2)
#endif
#undef FC_TILE_FN
#undef FC_TILE_FNS_1_TO_6
#undef FC_TILE_FNS_7_TO_12

/* tp pixels (1 <= tp <= tile_pixels(nv)): pixel i at (pix_off[i], pix_pos[i],
 * pix_pos[tp + i]), the taps as in fc_taps. Pixel i's kcount channels (plus the bias, or
 * with `accumulate` plus what out[i] holds, or plus zero; then relu if asked) go to out[i],
 * or nowhere where out[i] is NULL. */
static void FC_NAME(forward_tile)(int nv, int tp, const FC_T *x, const long *pix_off,
                                  const int *pix_pos, const fc_taps *taps, int cin,
                                  const FC_T *zeros, const FC_T *w, long ldw, const FC_T *bias,
                                  int accumulate, int relu, FC_T *const *out, int kcount)
{
#define FC_TP(NV, TP)                                                                     \
    case TP:                                                                              \
        FC_NAME(forward_tile_##NV##_##TP)(x, pix_off, pix_pos, taps, cin, zeros, w, ldw,  \
                                          bias, accumulate, relu, out, kcount);           \
        break;
#define FC_TP_1_TO_6(NV) FC_TP(NV, 1) FC_TP(NV, 2) FC_TP(NV, 3) FC_TP(NV, 4) FC_TP(NV, 5) \
    FC_TP(NV, 6)
#define FC_TP_7_TO_12(NV) FC_TP(NV, 7) FC_TP(NV, 8) FC_TP(NV, 9) FC_TP(NV, 10)            \
    FC_TP(NV, 11) FC_TP(NV, 12)
    if (nv == 1) {
        switch (tp) {
            FC_TP_1_TO_6(1)
            FC_TP_7_TO_12(1)
#if FC_VBYTES == 64
            FC_TP(1, 13) FC_TP(1, 14) FC_TP(1, 15) FC_TP(1, 16)
#endif
        }
    } else {
        switch (tp) {
            FC_TP_1_TO_6(2)
#if FC_VBYTES == 64
            FC_TP_7_TO_12(2)
#endif
        }
    }
#undef FC_TP
#undef FC_TP_1_TO_6
#undef FC_TP_7_TO_12
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

/* acc[q] += d[q] for q < n (in double, for the bias gradient); with y, first d[q] = 0 in
 * place wherever !(y[q] > 0) (a relu's backward pass, NaN in y included). */
static void FC_NAME(masked_sum)(FC_T *d, const FC_T *y, double *acc, long n)
{
    typedef FC_NAME(vec) vec;
    long q = 0;
    if (y) {
        for (; q + FC_V <= n; q += FC_V) {
            vec dv = FC_NAME(load)(d + q);
            const vec yv = FC_NAME(load)(y + q);
            typedef __typeof__(dv < dv) mask;
            dv = (vec)((mask)dv & (yv > 0));
            FC_NAME(store)(d + q, dv);
            /* each half of the vector to double and onto acc */
            typedef FC_T half_vec __attribute__((vector_size(FC_VBYTES / 2)));
            typedef double double_vec __attribute__((vector_size(FC_V / 2 * sizeof(double))));
            for (int h = 0; h < 2; h++) {
                half_vec part;
                double_vec sum;
                __builtin_memcpy(&part, (const char *)&dv + h * sizeof(part), sizeof(part));
                __builtin_memcpy(&sum, acc + q + h * (FC_V / 2), sizeof(sum));
                sum += __builtin_convertvector(part, double_vec);
                __builtin_memcpy(acc + q + h * (FC_V / 2), &sum, sizeof(sum));
            }
        }
        for (; q < n; q++) {
            const FC_T v = y[q] > 0 ? d[q] : 0;
            d[q] = v;
            acc[q] += v;
        }
    } else {
        for (; q < n; q++)
            acc[q] += d[q];
    }
}

static inline __attribute__((always_inline)) void FC_NAME(weight_grad_tile_impl)(
    const int nv, const int tc, const FC_T *const *xrows, const FC_T *const *dyrows,
    const int *rowlen, int nrows, long xstride, long dystride, FC_T *tile, long ldt)
{
    typedef FC_NAME(vec) vec;
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
        vec s0 = FC_NAME(load)(tile + i * ldt);
        vec s1 = nv > 1 ? FC_NAME(load)(tile + i * ldt + FC_V) : s0;
#pragma GCC unroll 16
        for (int u = 0; u < lanes; u++) {
            s0 += acc[u][i][0];
            if (nv > 1)
                s1 += acc[u][i][1];
        }
        FC_NAME(store)(tile + i * ldt, s0);
        if (nv > 1)
            FC_NAME(store)(tile + i * ldt + FC_V, s1);
    }
}

#define FC_WGRAD_CASE(NV, TC)                                                            \
    case TC:                                                                             \
        FC_NAME(weight_grad_tile_impl)(NV, TC, xrows, dyrows, rowlen, nrows, xstride,    \
                                       dystride, tile, ldt);                             \
        break;

static void FC_NAME(weight_grad_tile)(int nv, int tc, const FC_T *const *xrows,
                                      const FC_T *const *dyrows, const int *rowlen, int nrows,
                                      long xstride, long dystride, FC_T *tile, long ldt)
{
    if (nv == 1) {
        switch (tc) {
            FC_WGRAD_CASE(1, 1) FC_WGRAD_CASE(1, 2) FC_WGRAD_CASE(1, 3) FC_WGRAD_CASE(1, 4)
            FC_WGRAD_CASE(1, 5) FC_WGRAD_CASE(1, 6) FC_WGRAD_CASE(1, 7)
            default: FC_NAME(weight_grad_tile_impl)(1, FC_TILE_CHANNELS, xrows, dyrows, rowlen,
                                                    nrows, xstride, dystride, tile, ldt);
        }
    } else {
        switch (tc) {
            FC_WGRAD_CASE(2, 1) FC_WGRAD_CASE(2, 2) FC_WGRAD_CASE(2, 3) FC_WGRAD_CASE(2, 4)
            FC_WGRAD_CASE(2, 5) FC_WGRAD_CASE(2, 6) FC_WGRAD_CASE(2, 7)
            default: FC_NAME(weight_grad_tile_impl)(2, FC_TILE_CHANNELS, xrows, dyrows, rowlen,
                                                    nrows, xstride, dystride, tile, ldt);
        }
    }
}

#undef FC_WGRAD_CASE

/* For each of n rows: dst[j * K + k] = src[j] for j < W, k < K (1 <= K <= 16), src rows
 * ld_src apart and dst rows ld_dst apart. Whole vectors are each one permutation of a
 * vector of src (the pattern repeats every K / gcd(V, K) vectors), which may read past
 * a row's end but not past the first `readable` elements from src; the rest goes
 * element by element. */
static void FC_NAME(expand_rows)(const FC_T *src, long ld_src, long W, int K, FC_T *dst,
                                 long ld_dst, long n, long readable)
{
    typedef __typeof__(FC_NAME(load)(src) < FC_NAME(load)(src)) index_vec;
    const long L = W * K;
    int a = FC_V, b = K;
    while (b) {
        const int t = a % b;
        a = b;
        b = t;
    }
    const int period = K / a;   /* K / gcd(V, K) */
    /* vector p of a period starts at source element first[p]; lane l reads idx[p][l] on */
    index_vec idx[16];
    long first[16];
    long q = 0;
    int r = 0;
    for (int p = 0; p < period; p++) {
        first[p] = q;
        for (int l = 0; l < FC_V; l++) {
            idx[p][l] = q - first[p];
            if (++r == K) {
                r = 0;
                q++;
            }
        }
    }
    const long step = q;   /* source elements per period */
    for (long row = 0; row < n; row++) {
        const FC_T *s = src + row * ld_src;
        FC_T *d = dst + row * ld_dst;
        long v = 0, start = 0;
        for (;;) {
            int p = 0;
            for (; p < period; p++) {
                const long base = start + first[p];
                if ((v + 1) * FC_V > L || row * ld_src + base + FC_V > readable)
                    break;
                FC_NAME(store)(d + v * FC_V, __builtin_shuffle(FC_NAME(load)(s + base), idx[p]));
                v++;
            }
            if (p < period)
                break;
            start += step;
        }
        /* the rest element by element, the source index kept without division */
        long j = (v * FC_V) / K;
        int k = (int)(v * FC_V - j * K);
        for (long e = v * FC_V; e < L; e++) {
            d[e] = s[j];
            if (++k == K) {
                k = 0;
                j++;
            }
        }
    }
}

/* Single-input-channel convolutions (a network's first layer on grayscale images), stride
 * 1 along the width, on channel-expanded rows: row element j*K + k holds input pixel j for
 * every output channel k. Then output row (ow, k), flattened to ow*K + k, is a sum over
 * taps (r, s) of an expanded input row read from offset s*dw*K times a weight row whose
 * element ow*K + k is w[r, s, k]: vector loads and FMAs with every lane useful whatever
 * K is, and the result already in NHWC order. Expanded rows are readable up to the last
 * vector of the flattened output row (whole vectors; the tail past L is never stored). */
/* Output rows per forward call and taps per weight-gradient pass: each weight vector
 * (forward) or delta vector (weight gradient) loaded is used that many times, and the
 * accumulators still fit the registers (32 with AVX-512, 16 otherwise) next to it. */
enum {
    FC_NAME(C1_ROWS) = FC_VBYTES == 64 ? 4 : 2,
    FC_NAME(C1_BLOCK) = FC_VBYTES == 64 ? 6 : 5,
    FC_NAME(C1_TAPS) = FC_VBYTES == 64 ? 4 : 2,
    FC_NAME(C1_GRAD_BLOCK) = 5,
};

static inline __attribute__((always_inline)) void FC_NAME(forward_c1_impl)(
    const int nr, const int nb, const FC_T *const *rows, long first, int R, int S,
    long tap_step, const FC_T *wrows, long ldw, const FC_T *bias, int relu, long L,
    FC_T *out, long ldo)
{
    typedef FC_NAME(vec) vec;
    vec acc[FC_NAME(C1_ROWS)][FC_NAME(C1_BLOCK)];
#pragma GCC unroll 16
    for (int v = 0; v < nb; v++) {
        const vec b = FC_NAME(load)(bias + first + v * FC_V);
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            acc[j][v] = b;
    }
    for (int r = 0; r < R; r++) {
        for (int s = 0; s < S; s++) {
            const FC_T *w = wrows + (long)(r * S + s) * ldw + first;
            const long offset = first + s * tap_step;
#pragma GCC unroll 16
            for (int v = 0; v < nb; v++) {
                const vec wv = FC_NAME(load)(w + v * FC_V);
#pragma GCC unroll 4
                for (int j = 0; j < nr; j++)
                    acc[j][v] += FC_NAME(load)(rows[j * R + r] + offset + v * FC_V) * wv;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < nr; j++) {
        FC_T *o = out + j * ldo + first;
#pragma GCC unroll 16
        for (int v = 0; v < nb; v++) {
            vec value = acc[j][v];
            if (relu) {
                /* keep what is not below zero (NaN included) */
                typedef __typeof__(value < value) mask;
                value = (vec)((mask)value & ~(value < 0));
            }
            if (first + (v + 1) * FC_V <= L) {
                FC_NAME(store)(o + v * FC_V, value);
            } else {
                for (int lane = 0; lane < L - first - v * FC_V; lane++)
                    o[v * FC_V + lane] = value[lane];
            }
        }
    }
}

/* One function per (rows, vectors) shape, each optimised on its own: with all of them
 * inlined into one function, GCC kept the accumulators in memory. */
#define FC_C1_FN(NR, NB)                                                                  \
    static void FC_NAME(forward_c1_##NR##_##NB)(const FC_T *const *rows, long first, int R, \
                                                int S, long tap_step, const FC_T *wrows,  \
                                                long ldw, const FC_T *bias, int relu,     \
                                                long L, FC_T *out, long ldo)              \
    {                                                                                     \
        FC_NAME(forward_c1_impl)(NR, NB, rows, first, R, S, tap_step, wrows, ldw, bias,   \
                                 relu, L, out, ldo);                                      \
    }
#define FC_C1_FNS(NR) FC_C1_FN(NR, 1) FC_C1_FN(NR, 2) FC_C1_FN(NR, 3) FC_C1_FN(NR, 4)     \
    FC_C1_FN(NR, 5)
FC_C1_FNS(1)
#if FC_VBYTES == 64
FC_C1_FNS(4)
FC_C1_FN(1, 6)
FC_C1_FN(4, 6)
#else
FC_C1_FNS(2)
#endif
#undef FC_C1_FN
#undef FC_C1_FNS

#define FC_C1_CASE(NR, NB)                                                                \
    case NB:                                                                              \
        FC_NAME(forward_c1_##NR##_##NB)(rows, first, R, S, tap_step, wrows, ldw, bias,    \
                                        relu, L, out, ldo);                               \
        break;
#if FC_VBYTES == 64
#define FC_C1_CASES(NR) FC_C1_CASE(NR, 1) FC_C1_CASE(NR, 2) FC_C1_CASE(NR, 3)             \
    FC_C1_CASE(NR, 4) FC_C1_CASE(NR, 5) default: FC_C1_CASE(NR, 6)
#define FC_C1_ROWS_CASES FC_C1_CASES(4)
#else
#define FC_C1_CASES(NR) FC_C1_CASE(NR, 1) FC_C1_CASE(NR, 2) FC_C1_CASE(NR, 3)             \
    FC_C1_CASE(NR, 4) default: FC_C1_CASE(NR, 5)
#define FC_C1_ROWS_CASES FC_C1_CASES(2)
#endif

/* nr (1 or C1_ROWS) output rows: out[j * ldo + i] = bias[i] + sum over taps (r, s) of
 * rows[j * R + r][s * tap_step + i] * wrows[(r * S + s) * ldw + i] for i < L (then relu).
 * bias and wrows hold ceil(L / FC_V) whole vectors. */
static void FC_NAME(forward_c1)(int nr, const FC_T *const *rows, int R, int S, long tap_step,
                                const FC_T *wrows, long ldw, const FC_T *bias, int relu,
                                long L, FC_T *out, long ldo)
{
    const long nvec = (L + FC_V - 1) / FC_V;
    for (long v0 = 0; v0 < nvec; v0 += FC_NAME(C1_BLOCK)) {
        const long first = v0 * FC_V;
        if (nr == FC_NAME(C1_ROWS)) {
            switch (nvec - v0) {
                FC_C1_ROWS_CASES
            }
        } else {
            switch (nvec - v0) {
                FC_C1_CASES(1)
            }
        }
    }
}
#undef FC_C1_CASE
#undef FC_C1_CASES
#undef FC_C1_ROWS_CASES

static inline __attribute__((always_inline)) void FC_NAME(weight_grad_c1_impl)(
    const int nt, const int nb, const FC_T *const *xrows, const FC_T *const *dyrows,
    int nrows, long first, long tap_step, long L, FC_T *sums, long lds)
{
    typedef FC_NAME(vec) vec;
    vec acc[FC_NAME(C1_TAPS)][FC_NAME(C1_GRAD_BLOCK)];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
#pragma GCC unroll 16
        for (int v = 0; v < nb; v++)
            acc[t][v] = (vec){0};
    }
    for (int row = 0; row < nrows; row++) {
        const FC_T *x = xrows[row] + first;
        const FC_T *d = dyrows[row] + first;
        vec dv[FC_NAME(C1_GRAD_BLOCK)];
#pragma GCC unroll 16
        for (int v = 0; v < nb; v++) {
            if (first + (v + 1) * FC_V <= L) {
                dv[v] = FC_NAME(load)(d + v * FC_V);
            } else {
                /* the delta row ends inside this vector: zeros past its end */
                dv[v] = (vec){0};
                for (int lane = 0; lane < L - first - v * FC_V; lane++)
                    dv[v][lane] = d[v * FC_V + lane];
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
#pragma GCC unroll 16
            for (int v = 0; v < nb; v++)
                acc[t][v] += FC_NAME(load)(x + t * tap_step + v * FC_V) * dv[v];
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
#pragma GCC unroll 16
        for (int v = 0; v < nb; v++)
            FC_NAME(store)(sums + t * lds + first + v * FC_V, acc[t][v]);
    }
}

#define FC_C1_FN(NT, NB)                                                                  \
    static void FC_NAME(weight_grad_c1_##NT##_##NB)(const FC_T *const *xrows,              \
                                                    const FC_T *const *dyrows, int nrows,  \
                                                    long first, long tap_step, long L,     \
                                                    FC_T *sums, long lds)                  \
    {                                                                                     \
        FC_NAME(weight_grad_c1_impl)(NT, NB, xrows, dyrows, nrows, first, tap_step, L,    \
                                     sums, lds);                                          \
    }
#define FC_C1_FNS(NT) FC_C1_FN(NT, 1) FC_C1_FN(NT, 2) FC_C1_FN(NT, 3) FC_C1_FN(NT, 4)     \
    FC_C1_FN(NT, 5)
FC_C1_FNS(1)
FC_C1_FNS(2)
#if FC_VBYTES == 64
FC_C1_FNS(3)
FC_C1_FNS(4)
#endif
#undef FC_C1_FN
#undef FC_C1_FNS

#define FC_C1_CASE(NT, NB)                                                                \
    case NB:                                                                              \
        FC_NAME(weight_grad_c1_##NT##_##NB)(xrows, dyrows, nrows, first, tap_step, L,     \
                                            sums, lds);                                   \
        break;

#define FC_C1_TAPS_CASE(NT)                                                               \
    case NT:                                                                              \
        switch (nvec - v0) {                                                              \
            FC_C1_CASE(NT, 1) FC_C1_CASE(NT, 2) FC_C1_CASE(NT, 3) FC_C1_CASE(NT, 4)       \
            default: FC_C1_CASE(NT, 5)                                                    \
        }                                                                                 \
        break;

/* For nt (<= C1_TAPS) consecutive taps t of one filter row: sums[t * lds + i] = sum over
 * rows of xrows[row][t * tap_step + i] * dyrows[row][i] for i < L, zero for the rest of the
 * last vector. Each delta vector is loaded once for all nt taps. */
static void FC_NAME(weight_grad_c1)(int nt, const FC_T *const *xrows,
                                    const FC_T *const *dyrows, int nrows, long tap_step,
                                    long L, FC_T *sums, long lds)
{
    const long nvec = (L + FC_V - 1) / FC_V;
    for (long v0 = 0; v0 < nvec; v0 += FC_NAME(C1_GRAD_BLOCK)) {
        const long first = v0 * FC_V;
        switch (nt) {
            FC_C1_TAPS_CASE(1)
            FC_C1_TAPS_CASE(2)
#if FC_VBYTES == 64
            FC_C1_TAPS_CASE(3)
            FC_C1_TAPS_CASE(4)
#endif
        }
    }
}
#undef FC_C1_CASE
#undef FC_C1_TAPS_CASE

#undef FC_V
