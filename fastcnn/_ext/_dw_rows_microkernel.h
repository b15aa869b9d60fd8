/* Depthwise forward and data-gradient rows: one template instance per (element type,
 * instruction set), included by _dw_microkernel.h (no include guard), which defines the
 * vector type and helpers used here.
 *
 * Both passes are row correlations (fc_dw_row below): the forward pass of an output row
 * reads the input rows its kernel rows reach; the data gradient of an input row gathers
 * the delta rows that reach it, column phase by column phase for a strided
 * convolution. */

/* One row correlation: output column j (j < n_out, at out + j * out_step) of every
 * channel is init + the sum over row taps i (input row rows[i], kernel row wr[i]) and
 * column taps k (kernel column wc[k]) of
 *     rows[i][(j * in_step + off[k]) * C + c] * w[(wr[i] * S + wc[k]) * C + c],
 * where a column j * in_step + off[k] outside [0, in_width) contributes nothing. Columns
 * [j_lo, j_hi) have every column tap inside. */
typedef struct {
    int nr, nc;
    const FC_T *const *rows;
    const int *wr;
    const int *off;
    const int *wc;
    Py_ssize_t in_width, in_step;
    Py_ssize_t n_out, out_step;
    Py_ssize_t j_lo, j_hi;
} FC_NAME(fc_dw_row);

/* Pixels per interior step: independent accumulators enough to hide the multiply-add
 * latency, beside the taps' weight vectors in the registers (32 vectors with AVX-512, 16
 * otherwise). */
#define FC_DW_PIXELS(ntaps) (FC_VBYTES == 64 && (ntaps) <= 16 ? 8 : 4)

/* A row's taps for one vector of channels at c: NR x NC of them (NR > 0) with their
 * weights in registers, or (NR == 0) any number, their weights loaded as they are used. */
typedef struct {
    const FC_T *xr[FC_DW_MAX_FIXED];  /* row i at the channel block */
    Py_ssize_t co[FC_DW_MAX_FIXED];   /* column tap k's element offset */
    FC_DW_VEC wv[FC_DW_MAX_FIXED][FC_DW_MAX_FIXED];
} FC_NAME(fc_dw_taps);

FC_DW_INLINE void FC_NAME(fc_dw_taps_init)(const int NR, const int NC,
                                           FC_NAME(fc_dw_taps) *k, const FC_NAME(fc_dw_row) *t,
                                           const FC_T *w, int S, Py_ssize_t C, Py_ssize_t c)
{
#pragma GCC unroll 5
    for (int i = 0; i < NR; i++) {
        k->xr[i] = t->rows[i] + c;
#pragma GCC unroll 5
        for (int q = 0; q < NC; q++)
            k->wv[i][q] = FC_NAME(fc_dw_load)(
                w + ((Py_ssize_t)t->wr[i] * S + t->wc[q]) * C + c, FC_L);
    }
#pragma GCC unroll 5
    for (int q = 0; q < NC; q++)
        k->co[q] = t->off[q] * C;
}

/* P interior pixels from column j, for one whole vector of channels at c. */
FC_DW_INLINE void FC_NAME(fc_dw_tile)(const int NR, const int NC, const int P,
                                      const FC_NAME(fc_dw_taps) *k, const FC_NAME(fc_dw_row) *t,
                                      const FC_T *w, int S, Py_ssize_t C, Py_ssize_t c,
                                      FC_DW_VEC b, int relu, FC_T *out, Py_ssize_t j)
{
    const Py_ssize_t in_step = t->in_step * C;
    FC_DW_VEC acc[8];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        acc[p] = b;
    if (NR > 0) {
        /* pixel by pixel, each tap at its row's pointer plus its column's offset: a few
         * registers of addresses (the other order gave one per tap and pixel) */
        const FC_T *xp[FC_DW_MAX_FIXED];
#pragma GCC unroll 5
        for (int i = 0; i < NR; i++)
            xp[i] = k->xr[i] + j * in_step;
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
#pragma GCC unroll 5
            for (int i = 0; i < NR; i++) {
#pragma GCC unroll 5
                for (int q = 0; q < NC; q++)
                    acc[p] += FC_NAME(fc_dw_load)(xp[i] + k->co[q], FC_L) * k->wv[i][q];
                xp[i] += in_step;
                /* opaque to the optimiser, which would rebuild the per-tap addresses */
                __asm__("" : "+r"(xp[i]));
            }
        }
    } else {
        for (int i = 0; i < t->nr; i++) {
            const FC_T *row = t->rows[i] + c + j * in_step;
            const FC_T *wrow = w + (Py_ssize_t)t->wr[i] * S * C + c;
            for (int q = 0; q < t->nc; q++) {
                const FC_T *x = row + (Py_ssize_t)t->off[q] * C;
                const FC_DW_VEC wq = FC_NAME(fc_dw_load)(wrow + (Py_ssize_t)t->wc[q] * C,
                                                         FC_L);
#pragma GCC unroll 8
                for (int p = 0; p < P; p++)
                    acc[p] += FC_NAME(fc_dw_load)(x + p * in_step, FC_L) * wq;
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        FC_NAME(fc_dw_store)(out + (j + p) * t->out_step + c,
                             relu ? FC_NAME(fc_dw_relu)(acc[p]) : acc[p], FC_L);
}

/* What a tap outside the input reads. */
static const FC_T FC_NAME(fc_dw_zeros)[FC_L] = {0};

/* P border pixels (columns cols[p]) for one whole vector of channels at c, NR x NC taps
 * (NR > 0) with their weights in registers: a tap outside the input reads zeros. */
FC_DW_INLINE void FC_NAME(fc_dw_edge_tile)(const int NR, const int NC, const int P,
                                           const FC_NAME(fc_dw_taps) *k,
                                           const FC_NAME(fc_dw_row) *t, Py_ssize_t C,
                                           Py_ssize_t c, FC_DW_VEC b, int relu, FC_T *out,
                                           const Py_ssize_t *cols)
{
    FC_DW_VEC acc[2];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
        acc[p] = b;
#pragma GCC unroll 5
        for (int q = 0; q < NC; q++) {
            const Py_ssize_t col = cols[p] * t->in_step + t->off[q];
            const int inside = col >= 0 && col < t->in_width;
#pragma GCC unroll 5
            for (int i = 0; i < NR; i++) {
                const FC_T *x = inside ? k->xr[i] + col * C : FC_NAME(fc_dw_zeros);
                acc[p] += FC_NAME(fc_dw_load)(x, FC_L) * k->wv[i][q];
            }
        }
    }
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
        FC_NAME(fc_dw_store)(out + cols[p] * t->out_step + c,
                             relu ? FC_NAME(fc_dw_relu)(acc[p]) : acc[p], FC_L);
}

/* Columns [from, to) of the channels [c, c + n), one at a time, each column tap checked:
 * the borders, and rows of fewer channels than a vector. Four accumulators take the
 * terms in turn, so that the additions do not wait on each other. */
FC_DW_INLINE void FC_NAME(fc_dw_pixels)(const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                        Py_ssize_t C, Py_ssize_t c, Py_ssize_t n, FC_DW_VEC b,
                                        int relu, FC_T *out, Py_ssize_t from, Py_ssize_t to)
{
    for (Py_ssize_t j = from; j < to; j++) {
        FC_DW_VEC a0 = b, a1 = {0}, a2 = {0}, a3 = {0};
        for (int i = 0; i < t->nr; i++) {
            const FC_T *row = t->rows[i] + c;
            const FC_T *wrow = w + (Py_ssize_t)t->wr[i] * S * C + c;
            for (int q = 0; q < t->nc; q++) {
                Py_ssize_t col = j * t->in_step + t->off[q];
                if (col < 0 || col >= t->in_width)
                    continue;
                const FC_DW_VEC xq = FC_NAME(fc_dw_load)(row + col * C, n);
                const FC_DW_VEC wq = FC_NAME(fc_dw_load)(wrow + (Py_ssize_t)t->wc[q] * C, n);
                const FC_DW_VEC next = a0 + xq * wq;
                a0 = a1;   /* (a rotation: renamed registers, not moves) */
                a1 = a2;
                a2 = a3;
                a3 = next;
            }
        }
        FC_DW_VEC sum = (a0 + a1) + (a2 + a3);
        FC_NAME(fc_dw_store)(out + j * t->out_step + c, relu ? FC_NAME(fc_dw_relu)(sum) : sum,
                             n);
    }
}

/* The first channel of vector block blk: whole vectors, the last one moved back to end
 * at C (when C >= FC_L). */
FC_DW_INLINE Py_ssize_t FC_NAME(fc_dw_block)(Py_ssize_t blk, Py_ssize_t C)
{
    return blk * FC_L < C - FC_L ? blk * FC_L : C - FC_L;
}

/* Tiles of P pixels from column j (P = 1, 2, 4 or 8), every channel block of each tile
 * before the next tile: input and output are then read and written in order. */
FC_DW_INLINE void FC_NAME(fc_dw_tiles)(const int NR, const int NC, const int P,
                                       const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                       Py_ssize_t C, const FC_T *init, int relu, FC_T *out,
                                       Py_ssize_t j, Py_ssize_t n_tiles)
{
    const Py_ssize_t n_blocks = (C + FC_L - 1) / FC_L;
    for (Py_ssize_t tile = 0; tile < n_tiles; tile++, j += P) {
        for (Py_ssize_t blk = 0; blk < n_blocks; blk++) {
            const Py_ssize_t c = FC_NAME(fc_dw_block)(blk, C);
            const FC_DW_VEC b = init ? FC_NAME(fc_dw_load)(init + c, FC_L) : (FC_DW_VEC){0};
            FC_NAME(fc_dw_taps) k;
            FC_NAME(fc_dw_taps_init)(NR, NC, &k, t, w, S, C, c);
            FC_NAME(fc_dw_tile)(NR, NC, P, &k, t, w, S, C, c, b, relu, out, j);
        }
    }
}

/* Columns [from, to), each column tap checked, every channel block of a column before
 * the next column. */
static void FC_NAME(fc_dw_border)(const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                  Py_ssize_t C, const FC_T *init, int relu, FC_T *out,
                                  Py_ssize_t from, Py_ssize_t to)
{
    const Py_ssize_t n = C < FC_L ? C : FC_L;
    const Py_ssize_t n_blocks = C < FC_L ? 1 : (C + FC_L - 1) / FC_L;
    for (Py_ssize_t j = from; j < to; j++)
        for (Py_ssize_t blk = 0; blk < n_blocks; blk++) {
            const Py_ssize_t c = C < FC_L ? 0 : FC_NAME(fc_dw_block)(blk, C);
            const FC_DW_VEC b = init ? FC_NAME(fc_dw_load)(init + c, n) : (FC_DW_VEC){0};
            FC_NAME(fc_dw_pixels)(t, w, S, C, c, n, b, relu, out, j, j + 1);
        }
}

/* Border columns ([0, j_lo) and [j_hi, n_out)) two at a time (the left and the right
 * one, usually), every channel block of each pair before the next pair. */
FC_DW_INLINE void FC_NAME(fc_dw_edges)(const int NR, const int NC,
                                       const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                       Py_ssize_t C, const FC_T *init, int relu, FC_T *out)
{
    const Py_ssize_t n_blocks = (C + FC_L - 1) / FC_L;
    Py_ssize_t j = t->j_lo > 0 ? 0 : t->j_hi;
    while (j < t->n_out) {
        Py_ssize_t cols[2] = {0, 0};
        int m = 0;
        for (; m < 2 && j < t->n_out; m++) {
            cols[m] = j;
            j = j + 1 == t->j_lo ? t->j_hi : j + 1;
        }
        for (Py_ssize_t blk = 0; blk < n_blocks; blk++) {
            const Py_ssize_t c = FC_NAME(fc_dw_block)(blk, C);
            const FC_DW_VEC b = init ? FC_NAME(fc_dw_load)(init + c, FC_L) : (FC_DW_VEC){0};
            FC_NAME(fc_dw_taps) k;
            FC_NAME(fc_dw_taps_init)(NR, NC, &k, t, w, S, C, c);
            if (m == 2)
                FC_NAME(fc_dw_edge_tile)(NR, NC, 2, &k, t, C, c, b, relu, out, cols);
            else
                FC_NAME(fc_dw_edge_tile)(NR, NC, 1, &k, t, C, c, b, relu, out, cols);
        }
    }
}

/* A whole row of at least one vector of channels: the borders, then the interior in
 * tiles of P pixels, then of 4, 2 and 1. */
FC_DW_INLINE void FC_NAME(fc_dw_row_impl)(const int NR, const int NC,
                                          const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                          Py_ssize_t C, const FC_T *init, int relu,
                                          FC_T *out)
{
    if (NR > 0) {
        FC_NAME(fc_dw_edges)(NR, NC, t, w, S, C, init, relu, out);
    } else {
        FC_NAME(fc_dw_border)(t, w, S, C, init, relu, out, 0, t->j_lo);
        FC_NAME(fc_dw_border)(t, w, S, C, init, relu, out, t->j_hi, t->n_out);
    }
    const int P = FC_DW_PIXELS(NR * NC);
    Py_ssize_t j = t->j_lo, n_tiles = (t->j_hi - j) / P;
    FC_NAME(fc_dw_tiles)(NR, NC, P, t, w, S, C, init, relu, out, j, n_tiles);
    j += n_tiles * P;
    if (P > 4 && j + 4 <= t->j_hi) {
        FC_NAME(fc_dw_tiles)(NR, NC, 4, t, w, S, C, init, relu, out, j, 1);
        j += 4;
    }
    if (j + 2 <= t->j_hi) {
        FC_NAME(fc_dw_tiles)(NR, NC, 2, t, w, S, C, init, relu, out, j, 1);
        j += 2;
    }
    if (j < t->j_hi)
        FC_NAME(fc_dw_tiles)(NR, NC, 1, t, w, S, C, init, relu, out, j, 1);
}

/* One function per tap shape, each optimised on its own; 0 x 0 takes any taps. */
#define FC_DW_FIXED(NR, NC)                                                              \
    static void FC_NAME(fc_dw_row_##NR##_##NC)(const FC_NAME(fc_dw_row) *t, const FC_T *w, \
                                               int S, Py_ssize_t C, const FC_T *init,    \
                                               int relu, FC_T *out)                      \
    {                                                                                    \
        FC_NAME(fc_dw_row_impl)(NR, NC, t, w, S, C, init, relu, out);                    \
    }
FC_DW_FIXED(0, 0)
FC_DW_FIXED(1, 1)
FC_DW_FIXED(1, 2)
FC_DW_FIXED(1, 3)
FC_DW_FIXED(2, 1)
FC_DW_FIXED(2, 2)
FC_DW_FIXED(2, 3)
FC_DW_FIXED(3, 1)
FC_DW_FIXED(3, 2)
FC_DW_FIXED(3, 3)
#if FC_VBYTES == 64
/* 25 weight vectors need AVX-512's 32 registers */
FC_DW_FIXED(3, 5)
FC_DW_FIXED(4, 5)
FC_DW_FIXED(5, 5)
#endif
#undef FC_DW_FIXED

/* A whole row of at least one vector of channels, by the function for its tap shape. */
static void FC_NAME(fc_dw_whole_row)(const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                     Py_ssize_t C, const FC_T *init, int relu, FC_T *out)
{
#define FC_DW_CASE(NR, NC)                                                               \
    case NR * 8 + NC:                                                                    \
        FC_NAME(fc_dw_row_##NR##_##NC)(t, w, S, C, init, relu, out);                     \
        return;
    if (t->nr <= FC_DW_MAX_FIXED && t->nc <= FC_DW_MAX_FIXED) {
        switch (t->nr * 8 + t->nc) {
            FC_DW_CASE(1, 1)
            FC_DW_CASE(1, 2)
            FC_DW_CASE(1, 3)
            FC_DW_CASE(2, 1)
            FC_DW_CASE(2, 2)
            FC_DW_CASE(2, 3)
            FC_DW_CASE(3, 1)
            FC_DW_CASE(3, 2)
            FC_DW_CASE(3, 3)
#if FC_VBYTES == 64
            FC_DW_CASE(3, 5)
            FC_DW_CASE(4, 5)
            FC_DW_CASE(5, 5)
#endif
        }
    }
    FC_NAME(fc_dw_row_0_0)(t, w, S, C, init, relu, out);
#undef FC_DW_CASE
}

/* The row correlation for every channel. */
static void FC_NAME(fc_dw_correlate)(const FC_NAME(fc_dw_row) *t, const FC_T *w, int S,
                                     Py_ssize_t C, const FC_T *init, int relu, FC_T *out)
{
    if (C < FC_L) {
        FC_NAME(fc_dw_border)(t, w, S, C, init, relu, out, 0, t->n_out);
        return;
    }
    FC_NAME(fc_dw_whole_row)(t, w, S, C, init, relu, out);
}

/* The columns j < n_out whose column taps all lie in [0, in_width): [j_lo, j_hi). */
static void FC_NAME(fc_dw_interior_range)(FC_NAME(fc_dw_row) *t)
{
    if (t->nc == 0) {
        t->j_lo = 0;
        t->j_hi = t->n_out;
        return;
    }
    Py_ssize_t lo = 0, hi = 0;
    for (int k = 0; k < t->nc; k++) {
        lo = k == 0 || t->off[k] < lo ? t->off[k] : lo;
        hi = k == 0 || t->off[k] > hi ? t->off[k] : hi;
    }
    /* j * in_step + lo >= 0 and j * in_step + hi <= in_width - 1 */
    Py_ssize_t j_lo = lo >= 0 ? 0 : (-lo + t->in_step - 1) / t->in_step;
    Py_ssize_t room = t->in_width - 1 - hi;
    Py_ssize_t j_hi = room < 0 ? 0 : room / t->in_step + 1;
    j_lo = j_lo < t->n_out ? j_lo : t->n_out;
    j_hi = j_hi < t->n_out ? j_hi : t->n_out;
    t->j_lo = j_lo;
    t->j_hi = j_hi > j_lo ? j_hi : j_lo;
}

static void FC_NAME(fc_dw_forward_row)(const fc_dw_geometry *g, const FC_T *x, const FC_T *w,
                                       const FC_T *bias, int relu, Py_ssize_t oh, FC_T *y)
{
    const FC_T *rows[g->R];
    int wr[g->R], off[g->S], wc[g->S];
    FC_NAME(fc_dw_row) t = {0, g->S, rows, wr, off, wc, g->W, g->sw, g->Wo, g->C, 0, 0};
    const Py_ssize_t ih0 = oh * g->sh - g->pt;
    for (int r = 0; r < g->R; r++) {
        Py_ssize_t ih = ih0 + (Py_ssize_t)r * g->dh;
        if (ih >= 0 && ih < g->H) {
            rows[t.nr] = x + ih * g->W * g->C;
            wr[t.nr++] = r;
        }
    }
    for (int s = 0; s < g->S; s++) {
        off[s] = s * g->dw - g->pl;
        wc[s] = s;
    }
    FC_NAME(fc_dw_interior_range)(&t);
    FC_NAME(fc_dw_correlate)(&t, w, g->S, g->C, bias, relu, y);
}

/* Input pixel (ih, iw) gets dy(oh, ow) * w(r, s) wherever oh * sh - pt + r * dh = ih and
 * ow * sw - pl + s * dw = iw: a correlation of dy, gathered (every dx value is written
 * once, by one task). Columns go by phase iw % sw, each phase a dense row with the
 * column taps that reach it (no multiplications by the zeros a strided scatter skips). */
static void FC_NAME(fc_dw_backward_data_row)(const fc_dw_geometry *g, const FC_T *dy,
                                             const FC_T *w, Py_ssize_t ih, FC_T *dx)
{
    const FC_T *rows[g->R];
    int wr[g->R], off[g->S], wc[g->S];
    FC_NAME(fc_dw_row) t = {0, 0, rows, wr, off, wc, g->Wo, 1, 0, (Py_ssize_t)g->sw * g->C,
                            0, 0};
    for (int r = 0; r < g->R; r++) {
        Py_ssize_t a = ih + g->pt - (Py_ssize_t)r * g->dh;
        if (a >= 0 && a % g->sh == 0 && a / g->sh < g->Ho) {
            rows[t.nr] = dy + (a / g->sh) * g->Wo * g->C;
            wr[t.nr++] = r;
        }
    }
    const Py_ssize_t n_phases = g->sw < g->W ? g->sw : g->W;
    for (Py_ssize_t phase = 0; phase < n_phases; phase++) {
        t.nc = 0;
        for (int s = 0; s < g->S; s++) {
            Py_ssize_t b = phase + g->pl - (Py_ssize_t)s * g->dw;
            if (b % g->sw == 0) {   /* then b / sw is exact, whatever the sign */
                off[t.nc] = (int)(b / g->sw);
                wc[t.nc++] = s;
            }
        }
        t.n_out = (g->W - phase + g->sw - 1) / g->sw;
        FC_NAME(fc_dw_interior_range)(&t);
        FC_NAME(fc_dw_correlate)(&t, w, g->S, g->C, NULL, 0, dx + phase * g->C);
    }
}

#undef FC_DW_PIXELS
