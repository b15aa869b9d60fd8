/* Weight-gradient tile, one instance per (element type, instruction set) through
 * _conv_microkernel.h: tc input channels x (nv vectors of output channels), loaded from
 * and added back to `tile`, reduced over a list of pixel rows: per pixel, nv delta vectors
 * are loaded and tc input values broadcast against them.
 */
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

/* With 16 vector registers (x86's SSE and AVX2) an 8-channel tile of two vectors needs 16
 * accumulators and the two dy vectors and the broadcast beside them: GCC keeps three
 * accumulators on the stack, a load and a store per pixel each on the FMA's chain. Six
 * channels (12 accumulators) fit; one vector of channels and AVX-512's 32 registers keep 8. */
static const FC_TNAME(fc_conv_wgrad_table) FC_NAME(fc_conv_wgrad_table) = {
    .tile_channels = {FC_TILE_CHANNELS, FC_X86 && FC_VBYTES < 64 ? 6 : FC_TILE_CHANNELS},
    .tile = FC_NAME(weight_grad_tile),
};
