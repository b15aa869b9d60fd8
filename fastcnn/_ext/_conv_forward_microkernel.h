/* Forward tile: register-tiled convolution micro-kernel, one instance per (element type,
 * instruction set) through _conv_microkernel.h. Each vector width needs its own
 * instantiation: a 64-byte vector in a function compiled without AVX-512 is emulated and
 * dozens of times slower.
 *
 * tp output pixels x (nv vectors of output channels), held in registers (tp from
 * TILE_PIXELS_nv). For each tap and input channel, nv weight vectors are loaded and every
 * pixel's input value is broadcast against them: nv loads + tp broadcasts feed tp*nv FMAs.
 * The caller gives each pixel's origin (an element offset into the input and a grid
 * position) and a table of taps (fc_taps); the kernel makes each tap's pointers itself,
 * a zero row where a pixel's tap falls off the grid, and skips taps that fall off it for
 * the whole tile. So padding, stride, dilation, the phases of the strided data gradient
 * and whole kernel rows read as one tap all run through the same loop. The accumulators
 * start from the bias and go from registers straight to each pixel's output pointer.
 */
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
#if FC_X86 && FC_VBYTES == 64
    } else if (n > 0) {   /* a masked store: no round trip through the stack */
#if FC_DOUBLE
        _mm512_mask_storeu_pd(o, (__mmask8)((1u << n) - 1), (__m512d)v);
#else
        _mm512_mask_storeu_ps(o, (__mmask16)((1u << n) - 1), (__m512)v);
#endif
#else
    } else if (n > 0) {
        FC_T lanes[FC_V];
        FC_NAME(store)(lanes, v);
        FC_NAME(copy_part)(o, lanes, n);
#endif
    }
}

/* The first n lanes of a vector from p (all of them when n >= the vector length), zeros
 * after. */
static inline __attribute__((always_inline)) FC_NAME(vec) FC_NAME(load_part)(const FC_T *p,
                                                                             int n)
{
    if (n >= FC_V)
        return FC_NAME(load)(p);
#if FC_X86 && FC_VBYTES == 64
    /* a masked load (the lanes past n read nothing, so cannot fault) */
#if FC_DOUBLE
    return (FC_NAME(vec))_mm512_maskz_loadu_pd((__mmask8)(n > 0 ? (1u << n) - 1 : 0), p);
#else
    return (FC_NAME(vec))_mm512_maskz_loadu_ps((__mmask16)(n > 0 ? (1u << n) - 1 : 0), p);
#endif
#else
    FC_T lanes[FC_V] = {0};
    if (n > 0)
        FC_NAME(copy_part)(lanes, p, n);
    return FC_NAME(load)(lanes);
#endif
}

static inline __attribute__((always_inline)) void FC_NAME(forward_tile_impl)(
    const int nv, const int tp, FC_CONV_TILE_PARAMS(FC_T))
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
        int inside_any;
        FC_TAP_ROWS(xs, inside_any, x, zeros, pix_off, pix_pos, taps, t, tp);
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
enum {
    FC_NAME(TILE_PIXELS_1) = FC_VBYTES == 64 ? 16 : 12, /* nv = 1 */
    FC_NAME(TILE_PIXELS_2) = FC_VBYTES == 64 ? 12 : 6,  /* nv = 2 */
};
_Static_assert(FC_NAME(TILE_PIXELS_1) <= FC_TILE_PIXELS_MAX, "tile too big");

/* One function per tile shape, so that each is optimised on its own (with all of them
 * inlined into one function, GCC kept the accumulators in memory). */
#define FC_TILE_FN(NV, TP)                                                               \
    static void FC_NAME(forward_tile_##NV##_##TP)(FC_CONV_TILE_PARAMS(FC_T))             \
    {                                                                                    \
        FC_NAME(forward_tile_impl)(NV, TP, FC_CONV_TILE_ARGS);                           \
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

/* tp pixels (1 <= tp <= TILE_PIXELS_nv): pixel i at (pix_off[i], pix_pos[i],
 * pix_pos[tp + i]), the taps as in fc_taps. Pixel i's kcount channels (plus the bias, or
 * with `accumulate` plus what out[i] holds, or plus zero; then relu if asked) go to out[i],
 * or nowhere where out[i] is NULL. */
static void FC_NAME(forward_tile)(int nv, int tp, FC_CONV_TILE_PARAMS(FC_T))
{
#define FC_TP(NV, TP)                                                                     \
    case TP:                                                                              \
        FC_NAME(forward_tile_##NV##_##TP)(FC_CONV_TILE_ARGS);                             \
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

#if FC_VBYTES == 64
/* Sliding tile: tp output pixels of one row, one vector of output channels, a kernel
 * width of S at stride 1 and dilation 1, every tap inside the row (the strips between an
 * image's border columns). With one vector of channels, the forward tile's broadcasts
 * each feed a single FMA, and that broadcast rate, not the FMAs, limits it. Here each
 * input value is broadcast once and feeds the S outputs it reaches: the tp + S - 1 input
 * pixels of the strip against S weight vectors in registers (tp accumulators + S + 1
 * registers).
 *
 * The arguments are the forward tile's, with the taps one per kernel row (as for its
 * whole-row tiles) and cin the input channels C: pixel i's input starts at pix_off[0] +
 * i * C, and the packed weights of kernel row r hold its (s, c) at (r * S + s) * C + c.
 * Each accumulator adds the same products as the forward tile, in the order (kernel row,
 * channel, column) instead of (kernel row, column, channel). */
static inline __attribute__((always_inline)) void FC_NAME(slide_tile_impl)(
    const int S, const int tp, FC_CONV_TILE_PARAMS(FC_T))
{
    typedef FC_NAME(vec) vec;
    (void)zeros;
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++)
        if (out[i])
            __builtin_prefetch(out[i], 1, 3);
    const vec b0 = bias ? FC_NAME(load)(bias) : (vec){0};
    vec acc[FC_TILE_PIXELS_MAX];
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++) {
        acc[i] = b0;
        if (accumulate && out[i])
            acc[i] = FC_NAME(load_part)(out[i], kcount);
    }
    for (int t = 0; t < taps->ntaps; t++) {
        /* the strip is one row: a kernel row is inside for all of its pixels or none */
        if ((unsigned)(pix_pos[0] + taps->row[t]) >= (unsigned)taps->rows)
            continue;
        const FC_T *xr = x + pix_off[0] + taps->off[t];
        const FC_T *wt = w + (long)taps->ids[t] * S * cin * ldw;
        for (int c = 0; c < cin; c++) {
            vec ws[5];
#pragma GCC unroll 5
            for (int s = 0; s < S; s++)
                ws[s] = FC_NAME(load)(wt + ((long)s * cin + c) * ldw);
            const FC_T *q = xr + c;
#pragma GCC unroll 24
            for (int j = 0; j < tp + S - 1; j++) {
                const FC_T v = *q;
                q += cin;
#pragma GCC unroll 5
                for (int s = 0; s < S; s++)
                    if (j - s >= 0 && j - s < tp)
                        acc[j - s] += ws[s] * v;
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < tp; i++)
        if (out[i])
            FC_NAME(store_part)(out[i], acc[i], relu, kcount);
}

#define FC_SLIDE_FN(S, TP)                                                               \
    static void FC_NAME(slide_tile_##S##_##TP)(FC_CONV_TILE_PARAMS(FC_T))                \
    {                                                                                    \
        FC_NAME(slide_tile_impl)(S, TP, FC_CONV_TILE_ARGS);                              \
    }
#define FC_SLIDE_FNS(S) FC_SLIDE_FN(S, 8) FC_SLIDE_FN(S, 9) FC_SLIDE_FN(S, 10)             \
    FC_SLIDE_FN(S, 11) FC_SLIDE_FN(S, 12) FC_SLIDE_FN(S, 13) FC_SLIDE_FN(S, 14)          \
    FC_SLIDE_FN(S, 15) FC_SLIDE_FN(S, 16)
FC_SLIDE_FNS(3)
FC_SLIDE_FNS(5)
#undef FC_SLIDE_FN
#undef FC_SLIDE_FNS

/* The sliding tile for kernel width S (3 or 5) and 8 <= tp <= 16 pixels; 0 when there is
 * none for (S, tp) (the caller then runs the forward tile). */
static int FC_NAME(slide_tile)(int S, int tp, FC_CONV_TILE_PARAMS(FC_T))
{
#define FC_TP(S, TP)                                                                      \
    case TP:                                                                              \
        FC_NAME(slide_tile_##S##_##TP)(FC_CONV_TILE_ARGS);                                \
        return 1;
#define FC_TPS(S) FC_TP(S, 8) FC_TP(S, 9) FC_TP(S, 10) FC_TP(S, 11) FC_TP(S, 12)            \
    FC_TP(S, 13) FC_TP(S, 14) FC_TP(S, 15) FC_TP(S, 16)
    if (S == 3) {
        switch (tp) { FC_TPS(3) }
    } else if (S == 5) {
        switch (tp) { FC_TPS(5) }
    }
    return 0;
#undef FC_TP
#undef FC_TPS
}
#endif

static const FC_TNAME(fc_conv_forward_table) FC_NAME(fc_conv_forward_table) = {
    .lanes = FC_V,
    .tile_pixels = {FC_NAME(TILE_PIXELS_1), FC_NAME(TILE_PIXELS_2)},
    .tile = FC_NAME(forward_tile),
#if FC_VBYTES == 64
    .slide = FC_NAME(slide_tile),
#else
    .slide = NULL,
#endif
};
