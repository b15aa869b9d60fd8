/* Depthwise weight gradient: one template instance per (element type, instruction set),
 * included by _dw_microkernel.h (no include guard), which defines the vector type and
 * helpers used here.
 *
 * Tap (r, s) of a channel block sums x(oh * sh - pt + r * dh, ow * sw - pl + s * dw) *
 * dy(oh, ow) over the output pixels whose input pixel is inside the image: the rows
 * whose input row for r is inside, the columns [ow_lo[s], ow_hi[s]). The accumulators
 * live in scratch (one vector per tap) between rows. A row whose taps all lie inside
 * keeps them in registers for the whole row (3 x 3 and, with AVX-512, 5 x 5 filters);
 * other rows go tap by tap. */

/* acc += x * dy over columns [from, to) of one tap, whose input column for output column
 * ow is ow * sw + shift of xrow; two accumulators take alternate columns. */
FC_DW_INLINE void FC_NAME(fc_dw_tap_sum)(FC_T *acc, const FC_T *xrow, Py_ssize_t shift,
                                         Py_ssize_t sw, const FC_T *dy, Py_ssize_t C,
                                         Py_ssize_t n, Py_ssize_t from, Py_ssize_t to)
{
    if (from >= to)
        return;
    FC_DW_VEC a0 = FC_NAME(fc_dw_load)(acc, FC_L), a1 = {0};
    const FC_T *x = xrow + (from * sw + shift) * C;
    const Py_ssize_t x_step = sw * C;
    dy += from * C;
    Py_ssize_t ow = from;
    for (; ow + 2 <= to; ow += 2, x += 2 * x_step, dy += 2 * C) {
        a0 += FC_NAME(fc_dw_load)(x, n) * FC_NAME(fc_dw_load)(dy, n);
        a1 += FC_NAME(fc_dw_load)(x + x_step, n) * FC_NAME(fc_dw_load)(dy + C, n);
    }
    if (ow < to)
        a0 += FC_NAME(fc_dw_load)(x, n) * FC_NAME(fc_dw_load)(dy, n);
    FC_NAME(fc_dw_store)(acc, a0 + a1, FC_L);
}

/* A whole row whose R_ x S_ taps all lie inside, xrow being the input row of kernel
 * row 0 at the block's channel: columns [j_lo, j_hi) (every column tap inside) without
 * checks, the others checking each column tap against [ow_lo[s], ow_hi[s]). */
FC_DW_INLINE void FC_NAME(fc_dw_wgrad_row_impl)(const int R_, const int S_,
                                                const fc_dw_geometry *g, const FC_T *xrow,
                                                const FC_T *dy, FC_T *acc,
                                                const Py_ssize_t *ow_lo,
                                                const Py_ssize_t *ow_hi, Py_ssize_t j_lo,
                                                Py_ssize_t j_hi)
{
    FC_DW_VEC a[FC_DW_MAX_FIXED][FC_DW_MAX_FIXED];
    const Py_ssize_t C = g->C, row_step = (Py_ssize_t)g->dh * g->W * C;
    const Py_ssize_t col_step = (Py_ssize_t)g->dw * C, x_step = (Py_ssize_t)g->sw * C;
#pragma GCC unroll 5
    for (int r = 0; r < R_; r++)
#pragma GCC unroll 5
        for (int s = 0; s < S_; s++)
            a[r][s] = FC_NAME(fc_dw_load)(acc + (r * S_ + s) * FC_L, FC_L);
    for (Py_ssize_t ow = 0; ow < g->Wo; ow++) {
        if (ow == j_lo && j_lo < j_hi) {
            const FC_T *xr[FC_DW_MAX_FIXED];
#pragma GCC unroll 5
            for (int r = 0; r < R_; r++)
                xr[r] = xrow + r * row_step + (j_lo * g->sw - g->pl) * C;
            const FC_T *d_at = dy + j_lo * C;
            for (; ow < j_hi; ow++, d_at += C) {
                const FC_DW_VEC d = FC_NAME(fc_dw_load)(d_at, FC_L);
#pragma GCC unroll 5
                for (int r = 0; r < R_; r++) {
#pragma GCC unroll 5
                    for (int s = 0; s < S_; s++)
                        a[r][s] += FC_NAME(fc_dw_load)(xr[r] + s * col_step, FC_L) * d;
                    xr[r] += x_step;
                }
            }
            if (ow == g->Wo)
                break;
        }
        const FC_DW_VEC d = FC_NAME(fc_dw_load)(dy + ow * C, FC_L);
        const Py_ssize_t x0 = (ow * g->sw - g->pl) * C;
#pragma GCC unroll 5
        for (int r = 0; r < R_; r++)
#pragma GCC unroll 5
            for (int s = 0; s < S_; s++)
                if (ow >= ow_lo[s] && ow < ow_hi[s])
                    a[r][s] += FC_NAME(fc_dw_load)(xrow + r * row_step + x0 + s * col_step,
                                                   FC_L) * d;
    }
#pragma GCC unroll 5
    for (int r = 0; r < R_; r++)
#pragma GCC unroll 5
        for (int s = 0; s < S_; s++)
            FC_NAME(fc_dw_store)(acc + (r * S_ + s) * FC_L, a[r][s], FC_L);
}

#define FC_DW_WGRAD_ROW(R_, S_)                                                          \
    static void FC_NAME(fc_dw_wgrad_row_##R_##_##S_)(                                    \
        const fc_dw_geometry *g, const FC_T *xrow, const FC_T *dy, FC_T *acc,            \
        const Py_ssize_t *ow_lo, const Py_ssize_t *ow_hi, Py_ssize_t j_lo, Py_ssize_t j_hi) \
    {                                                                                    \
        FC_NAME(fc_dw_wgrad_row_impl)(R_, S_, g, xrow, dy, acc, ow_lo, ow_hi, j_lo, j_hi); \
    }
FC_DW_WGRAD_ROW(3, 3)
#if FC_VBYTES == 64
FC_DW_WGRAD_ROW(5, 5)
#endif
#undef FC_DW_WGRAD_ROW

static void FC_NAME(fc_dw_weight_grad)(const fc_dw_geometry *g, const FC_T *x, const FC_T *dy,
                                       Py_ssize_t n_images, Py_ssize_t c0, Py_ssize_t c_from,
                                       FC_T *scratch, FC_T *dw)
{
    const Py_ssize_t C = g->C, n = C < FC_L ? C : FC_L;
    const int R = g->R, S = g->S;
    Py_ssize_t ow_lo[S], ow_hi[S];
    Py_ssize_t j_lo = 0, j_hi = g->Wo;
    for (int s = 0; s < S; s++) {
        /* 0 <= ow * sw - pl + s * dw <= W - 1 */
        Py_ssize_t first = g->pl - (Py_ssize_t)s * g->dw;
        Py_ssize_t last = g->W - 1 + g->pl - (Py_ssize_t)s * g->dw;
        Py_ssize_t lo = first <= 0 ? 0 : (first + g->sw - 1) / g->sw;
        Py_ssize_t hi = last < 0 ? 0 : last / g->sw + 1;
        ow_lo[s] = lo < g->Wo ? lo : g->Wo;
        ow_hi[s] = hi < g->Wo ? (hi > ow_lo[s] ? hi : ow_lo[s]) : g->Wo;
        j_lo = ow_lo[s] > j_lo ? ow_lo[s] : j_lo;
        j_hi = ow_hi[s] < j_hi ? ow_hi[s] : j_hi;
    }
    if (j_hi < j_lo)
        j_hi = j_lo;
    int fixed = n == FC_L && R == 3 && S == 3;
#if FC_VBYTES == 64
    fixed |= n == FC_L && R == 5 && S == 5;
#endif
    for (Py_ssize_t q = 0; q < (Py_ssize_t)R * S * FC_L; q++)
        scratch[q] = 0;
    for (Py_ssize_t img = 0; img < n_images; img++) {
        const FC_T *ximg = x + img * g->H * g->W * C + c0;
        const FC_T *dyimg = dy + img * g->Ho * g->Wo * C + c0;
        for (Py_ssize_t oh = 0; oh < g->Ho; oh++) {
            const Py_ssize_t ih0 = oh * g->sh - g->pt;
            const FC_T *dyrow = dyimg + oh * g->Wo * C;
            if (fixed && ih0 >= 0 && ih0 + (Py_ssize_t)(R - 1) * g->dh < g->H) {
                const FC_T *xrow = ximg + ih0 * g->W * C;
                if (R == 3)
                    FC_NAME(fc_dw_wgrad_row_3_3)(g, xrow, dyrow, scratch, ow_lo, ow_hi, j_lo,
                                                 j_hi);
#if FC_VBYTES == 64
                else
                    FC_NAME(fc_dw_wgrad_row_5_5)(g, xrow, dyrow, scratch, ow_lo, ow_hi, j_lo,
                                                 j_hi);
#endif
                continue;
            }
            for (int r = 0; r < R; r++) {
                const Py_ssize_t ih = ih0 + (Py_ssize_t)r * g->dh;
                if (ih < 0 || ih >= g->H)
                    continue;
                const FC_T *xrow = ximg + ih * g->W * C;
                for (int s = 0; s < S; s++)
                    FC_NAME(fc_dw_tap_sum)(scratch + (r * S + s) * FC_L, xrow,
                                           (Py_ssize_t)s * g->dw - g->pl, g->sw, dyrow, C, n,
                                           ow_lo[s], ow_hi[s]);
            }
        }
    }
    for (Py_ssize_t t = 0; t < (Py_ssize_t)R * S; t++)
        for (Py_ssize_t q = c_from - c0; q < n; q++)
            dw[t * C + c0 + q] = scratch[t * FC_L + q];
}
