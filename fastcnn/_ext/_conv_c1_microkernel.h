/* Single-input-channel row kernels, one instance per (element type, instruction set)
 * through _conv_microkernel.h.
 *
 * Single-input-channel convolutions (a network's first layer on grayscale images), stride
 * 1 along the width, on channel-expanded rows: row element j*K + k holds input pixel j for
 * every output channel k. Then output row (ow, k), flattened to ow*K + k, is a sum over
 * taps (r, s) of an expanded input row read from offset s*dw*K times a weight row whose
 * element ow*K + k is w[r, s, k]: vector loads and FMAs with every lane useful whatever
 * K is, and the result already in NHWC order. Expanded rows are readable up to the last
 * vector of the flattened output row (whole vectors; the tail past L is never stored).
 */

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


static const FC_TNAME(fc_conv_c1_table) FC_NAME(fc_conv_c1_table) = {
    .rows = FC_NAME(C1_ROWS),
    .taps = FC_NAME(C1_TAPS),
    .forward = FC_NAME(forward_c1),
    .weight_grad = FC_NAME(weight_grad_c1),
    .pool_lanes = FC_PL,
    .forward_pool = FC_NAME(forward_c1_pool),
};
