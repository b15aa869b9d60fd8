/* Pooling micro-kernels on NHWC rows, written once and instantiated by _pool_kernels.h for
 * each (element type, instruction set) through _dispatch_instances.h.
 *
 * A forward kernel makes one output row; channels go in vectors of the instruction set's
 * width, then (for C below one such vector) in 16-byte vectors, then one at a time. The
 * order of the arithmetic on each channel is the same at every width, so every instance
 * gives the same bits; L2 pooling's squares and gradient products are the exception, fused
 * into their additions by the instances with FMA (within an instance, still the same bits
 * at every width).
 */
#if FC_DOUBLE
#define FC_POOL_REL int64_t
#define FC_POOL_REL_OF(w) ((w)->rel)
#else
#define FC_POOL_REL int32_t
#define FC_POOL_REL_OF(w) ((w)->rel32)
#endif
#if FC_DOUBLE
#define FC_POOL_SQRT __builtin_sqrt
#else
#define FC_POOL_SQRT __builtin_sqrtf
#endif
#define FC_L ((Py_ssize_t)(FC_VBYTES / sizeof(FC_T)))
#define FC_H ((Py_ssize_t)(16 / sizeof(FC_T)))

#define FC_WBYTES FC_VBYTES
#define FC_WNAME(x) FC_NAME(x##_wide)
#include "_pool_window.h"
#undef FC_WBYTES
#undef FC_WNAME
#if FC_VBYTES > 16
#define FC_WBYTES 16
#define FC_WNAME(x) FC_NAME(x##_16)
#include "_pool_window.h"
#undef FC_WBYTES
#undef FC_WNAME
#endif

/* One channel, int64 positions: below 16 bytes of channels, and for float windows whose
 * flat offsets overflow int32. */
static inline void FC_NAME(fc_pool_max_scalar)(const FC_T *x, const fc_pool_window *w,
                                               FC_T *y, int64_t *argmax, int64_t base)
{
    FC_T best = x[0];
    int64_t pos = 0;
    for (Py_ssize_t k = 1; k < w->n; k++) {
        FC_T v = x[w->offset[k]];
        if (!(v <= best) && best == best) {
            best = v;
            pos = w->rel[k];
        }
    }
    *y = best;
    *argmax = base + pos;
}

static inline void FC_NAME(fc_pool_max_pixel)(const FC_T *x, Py_ssize_t C,
                                              const fc_pool_window *w, FC_T *y,
                                              int64_t *argmax, int64_t base)
{
#if !FC_DOUBLE
    if (!w->rel32_fits)
        goto scalar;
#endif
    if (C >= FC_L) {
        FC_NAME(fc_pool_max_channels_wide)(x, C, w, y, argmax, base);
        return;
    }
#if FC_VBYTES > 16
    if (C >= FC_H) {
        FC_NAME(fc_pool_max_channels_16)(x, C, w, y, argmax, base);
        return;
    }
#endif
#if !FC_DOUBLE
scalar:
#endif
    for (Py_ssize_t c = 0; c < C; c++)
        FC_NAME(fc_pool_max_scalar)(x + c, w, y + c, argmax + c, base);
}

/* Row kernel for few channels: one window element against the running maximum of a whole
 * stretch of a row. pos is as wide as the value (int32 for float; double, exact to 2**53,
 * for double) so that the compare-and-select vectorises even with plain SSE2. */
#if FC_DOUBLE
typedef double FC_NAME(fc_pool_rowpos);
#else
typedef int32_t FC_NAME(fc_pool_rowpos);
#endif
static inline void FC_NAME(fc_pool_max_update)(const FC_T *restrict x, FC_T *restrict best,
                                               FC_NAME(fc_pool_rowpos) *restrict pos,
                                               FC_NAME(fc_pool_rowpos) k, Py_ssize_t n)
{
    for (Py_ssize_t t = 0; t < n; t++) {
        FC_T b = best[t], v = x[t];
        int take = (b == b) & ((v > b) | (v != v));
        best[t] = take ? v : b;
        pos[t] = take ? k : pos[t];
    }
}

/* Max and argmax of one output row. x is the first element of the row's windows, base
 * the flat in-image offset of the first window. scratch (NULL: work pixel by pixel) holds
 * 2 * ((Wo - 1) * stride_w + 1) * C elements: with it, the windows at every column
 * (stride 1) are reduced over contiguous memory, then every stride_w-th is kept. */
static void FC_NAME(fc_pool_max_row)(const FC_T *x, Py_ssize_t C, Py_ssize_t Wo,
                                     Py_ssize_t stride_w, const fc_pool_window *w,
                                     FC_T *scratch, FC_T *y, int64_t *argmax, int64_t base)
{
    if (scratch == NULL) {
        for (Py_ssize_t ow = 0; ow < Wo; ow++)
            FC_NAME(fc_pool_max_pixel)(x + ow * stride_w * C, C, w, y + ow * C,
                                       argmax + ow * C, base + ow * stride_w);
        return;
    }
    Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C;
    FC_T *best = scratch;
    FC_NAME(fc_pool_rowpos) *pos = (FC_NAME(fc_pool_rowpos) *)(scratch + span);
    __builtin_memcpy(best, x, span * sizeof(FC_T));
    __builtin_memset(pos, 0, span * sizeof(FC_T)); /* int32 0 / double 0.0 */
    for (Py_ssize_t k = 1; k < w->n; k++)
        FC_NAME(fc_pool_max_update)(x + w->offset[k], best, pos,
                                    (FC_NAME(fc_pool_rowpos))w->rel[k], span);
    for (Py_ssize_t ow = 0; ow < Wo; ow++)
        for (Py_ssize_t c = 0; c < C; c++) {
            Py_ssize_t t = ow * stride_w * C + c;
            y[ow * C + c] = best[t];
            argmax[ow * C + c] = base + ow * stride_w + (int64_t)pos[t];
        }
}

/* Max of each window of one output row, without positions (prediction): the windows at
 * every column are reduced over one contiguous stretch of ((Wo - 1) * stride_w + 1) * C
 * elements (in y itself at stride 1, else in scratch, as long), then every stride_w-th is
 * kept. Window elements in the same order and the same rule as max_row (the first of
 * equal values, NaN wins and stays), so the same values. */
static void FC_NAME(fc_pool_max_values_row)(const FC_T *x, Py_ssize_t C, Py_ssize_t Wo,
                                            Py_ssize_t stride_w, const fc_pool_window *w,
                                            FC_T *scratch, FC_T *y)
{
    Py_ssize_t span = ((Wo - 1) * stride_w + 1) * C;
    FC_T *restrict best = stride_w == 1 ? y : scratch;
    __builtin_memcpy(best, x, span * sizeof(FC_T));
    for (Py_ssize_t k = 1; k < w->n; k++) {
        const FC_T *restrict v = x + w->offset[k];
        for (Py_ssize_t t = 0; t < span; t++) {
            FC_T b = best[t], u = v[t];
            best[t] = ((b == b) & ((u > b) | (u != u))) ? u : b;
        }
    }
    if (stride_w != 1)
        for (Py_ssize_t ow = 0; ow < Wo; ow++)
            __builtin_memcpy(y + ow * C, best + ow * stride_w * C, C * sizeof(FC_T));
}

/* Mean of one output row. */
static void FC_NAME(fc_pool_avg_row)(const FC_T *x, Py_ssize_t C, Py_ssize_t Wo,
                                     Py_ssize_t stride_w, const fc_pool_window *w,
                                     FC_T count, FC_T *y)
{
    for (Py_ssize_t ow = 0; ow < Wo; ow++, x += stride_w * C, y += C) {
        if (C >= FC_L) {
            FC_NAME(fc_pool_avg_channels_wide)(x, C, w, count, y);
            continue;
        }
#if FC_VBYTES > 16
        if (C >= FC_H) {
            FC_NAME(fc_pool_avg_channels_16)(x, C, w, count, y);
            continue;
        }
#endif
        for (Py_ssize_t c = 0; c < C; c++) {
            FC_T total = 0;
            for (Py_ssize_t k = 0; k < w->n; k++)
                total = total + x[w->offset[k] + c];
            y[c] = total / count;
        }
    }
}

/* Adds dy / count to every element of each window of one output row; dx is the first
 * element of the row's first window. Output pixels go in order, so where windows overlap
 * the shares add up in a fixed order. */
static void FC_NAME(fc_pool_avg_backward_row)(FC_T *dx, Py_ssize_t C, Py_ssize_t Wo,
                                              Py_ssize_t stride_w, const fc_pool_window *w,
                                              FC_T count, const FC_T *dy)
{
    for (Py_ssize_t ow = 0; ow < Wo; ow++, dx += stride_w * C, dy += C) {
        Py_ssize_t c = FC_NAME(fc_pool_avg_scatter_channels_wide)(dx, 0, C, w, count, dy);
#if FC_VBYTES > 16
        c = FC_NAME(fc_pool_avg_scatter_channels_16)(dx, c, C, w, count, dy);
#endif
        for (; c < C; c++) {
            FC_T share = dy[c] / count;
            for (Py_ssize_t k = 0; k < w->n; k++)
                dx[w->offset[k] + c] += share;
        }
    }
}

/* sqrt of the sum of squares over each window of one output row. */
static void FC_NAME(fc_pool_l2_row)(const FC_T *x, Py_ssize_t C, Py_ssize_t Wo,
                                    Py_ssize_t stride_w, const fc_pool_window *w, FC_T *y)
{
    for (Py_ssize_t ow = 0; ow < Wo; ow++, x += stride_w * C, y += C) {
        if (C >= FC_L) {
            FC_NAME(fc_pool_l2_channels_wide)(x, C, w, y);
            continue;
        }
#if FC_VBYTES > 16
        if (C >= FC_H) {
            FC_NAME(fc_pool_l2_channels_16)(x, C, w, y);
            continue;
        }
#endif
        for (Py_ssize_t c = 0; c < C; c++) {
            FC_T total = 0;
            for (Py_ssize_t k = 0; k < w->n; k++) {
                FC_T v = x[w->offset[k] + c];
                total = total + v * v;
            }
            y[c] = FC_POOL_SQRT(total);
        }
    }
}

/* Adds (dy / y) * x to every element of each window of one output row (nothing where
 * y == 0); dx and x are the first element of the row's first window in the gradient and
 * the forward input, y and dy the row's outputs and their gradients. Output pixels go in
 * order, so where windows overlap the terms add up in a fixed order. */
static void FC_NAME(fc_pool_l2_backward_row)(FC_T *dx, const FC_T *x, Py_ssize_t C,
                                             Py_ssize_t Wo, Py_ssize_t stride_w,
                                             const fc_pool_window *w, const FC_T *y,
                                             const FC_T *dy)
{
    for (Py_ssize_t ow = 0; ow < Wo; ow++, dx += stride_w * C, x += stride_w * C, y += C,
                                          dy += C) {
        Py_ssize_t c = FC_NAME(fc_pool_l2_scatter_channels_wide)(dx, x, 0, C, w, y, dy);
#if FC_VBYTES > 16
        c = FC_NAME(fc_pool_l2_scatter_channels_16)(dx, x, c, C, w, y, dy);
#endif
        for (; c < C; c++) {
            FC_T ratio = y[c] == 0 ? 0 : dy[c] / y[c];
            for (Py_ssize_t k = 0; k < w->n; k++)
                dx[w->offset[k] + c] += ratio * x[w->offset[k] + c];
        }
    }
}

/* y[c] = mean over the image's n_pixels pixels of channel c, summed in double pixel by
 * pixel. Channels go in vectors of doubles (up to eight at once, held in registers over the
 * pixel loop), the rest one at a time; every channel sums in the same order at every
 * width, so every instance gives the same bits. */
#define FC_GAP_D ((Py_ssize_t)(FC_VBYTES / sizeof(double)))
typedef double FC_NAME(fc_gap_dvec) __attribute__((vector_size(FC_VBYTES)));
typedef FC_T FC_NAME(fc_gap_tvec) __attribute__((vector_size(FC_GAP_D * sizeof(FC_T))));

static inline FC_NAME(fc_gap_dvec) FC_NAME(fc_gap_load)(const FC_T *p)
{
    FC_NAME(fc_gap_tvec) v;
    __builtin_memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, FC_NAME(fc_gap_dvec));
}

static inline void FC_NAME(fc_gap_store)(FC_T *y, FC_NAME(fc_gap_dvec) acc, double n)
{
    FC_NAME(fc_gap_tvec) v = __builtin_convertvector(acc / n, FC_NAME(fc_gap_tvec));
    __builtin_memcpy(y, &v, sizeof v);
}

static void FC_NAME(fc_pool_global_avg)(const FC_T *restrict x, Py_ssize_t n_pixels,
                                        Py_ssize_t C, FC_T *restrict y)
{
    const double n = (double)n_pixels;
    Py_ssize_t c = 0;
    for (; c + 8 * FC_GAP_D <= C; c += 8 * FC_GAP_D) {
        FC_NAME(fc_gap_dvec) a[8] = {{0}};
        const FC_T *p = x + c;
        for (Py_ssize_t i = 0; i < n_pixels; i++, p += C)
            for (int j = 0; j < 8; j++)
                a[j] += FC_NAME(fc_gap_load)(p + j * FC_GAP_D);
        for (int j = 0; j < 8; j++)
            FC_NAME(fc_gap_store)(y + c + j * FC_GAP_D, a[j], n);
    }
    for (; c + FC_GAP_D <= C; c += FC_GAP_D) {
        FC_NAME(fc_gap_dvec) a0 = {0};
        const FC_T *p = x + c;
        for (Py_ssize_t i = 0; i < n_pixels; i++, p += C)
            a0 += FC_NAME(fc_gap_load)(p);
        FC_NAME(fc_gap_store)(y + c, a0, n);
    }
    for (; c < C; c++) {
        double a = 0;
        const FC_T *p = x + c;
        for (Py_ssize_t i = 0; i < n_pixels; i++, p += C)
            a += *p;
        y[c] = (FC_T)(a / n);
    }
}
#undef FC_GAP_D

/* dx[w, c] = dy[c] / count for the W pixels of one row: one pixel divided, then copied. */
static void FC_NAME(fc_pool_global_avg_backward_row)(const FC_T *restrict dy, Py_ssize_t W,
                                                     Py_ssize_t C, FC_T count,
                                                     FC_T *restrict dx)
{
    for (Py_ssize_t c = 0; c < C; c++)
        dx[c] = dy[c] / count;
    for (Py_ssize_t w = 1; w < W; w++)
        __builtin_memcpy(dx + w * C, dx, C * sizeof(FC_T));
}

/* Vectors for the tiled max pooling's window positions: a byte per lane beside the
 * values, and masks as wide as the values (GCC's C front end has no vector '?:', so
 * selects go through the masks' bits). */
typedef FC_T FC_NAME(fc_pool_tvec) __attribute__((vector_size(FC_VBYTES)));
typedef __typeof__((FC_NAME(fc_pool_tvec)){0} < (FC_NAME(fc_pool_tvec)){0})
    FC_NAME(fc_pool_tmask);
typedef int8_t FC_NAME(fc_pool_tpos) __attribute__((vector_size(FC_L)));

/* Max of each window of one output row of windows that tile the image (stride == pool
 * size, pool_h * pool_w <= 256), and its window position k = i * pool_w + j (element (i,
 * j) of the window, as one byte): the same values as max_row, by the same rule in the
 * same order (the first of equal values; NaN wins and stays). x is the row's first
 * window, w the window's element offsets (pool_w wide, at most 256 elements). Positions
 * take an eighth of max_row's flat int64 indices; the one-pass backward
 * (max_backward_tiled_row) reads them. */
static void FC_NAME(fc_pool_max_tiled_row)(const FC_T *x, Py_ssize_t C, Py_ssize_t Wo,
                                           int pool_w, const fc_pool_window *w,
                                           FC_T *restrict y, uint8_t *restrict pos)
{
    typedef FC_NAME(fc_pool_tvec) vec;
    typedef FC_NAME(fc_pool_tmask) mask;
    typedef FC_NAME(fc_pool_tpos) bytes;
    const int n = (int)w->n;
    const Py_ssize_t *restrict offset = w->offset;
    for (Py_ssize_t ow = 0; ow < Wo; ow++) {
        const FC_T *win = x + ow * pool_w * C;
        FC_T *restrict best = y + ow * C;
        uint8_t *restrict at = pos + ow * C;
        Py_ssize_t c = 0;
        for (; c + FC_L <= C; c += FC_L) {
            vec b;
            bytes a = (bytes){0};
            __builtin_memcpy(&b, win + c, sizeof b);
            for (int k = 1; k < n; k++) {
                vec u;
                __builtin_memcpy(&u, win + offset[k] + c, sizeof u);
                const mask take = (b == b) & ((u > b) | (u != u));
                b = (vec)(((mask)u & take) | ((mask)b & ~take));
                const bytes t8 = __builtin_convertvector(take, bytes);
                a = (a & ~t8) | (((bytes){0} + (int8_t)k) & t8);
            }
            __builtin_memcpy(best + c, &b, sizeof b);
            __builtin_memcpy(at + c, &a, sizeof a);
        }
        for (; c < C; c++) {
            FC_T b = win[c];
            uint8_t a = 0;
            for (int k = 1; k < n; k++) {
                const FC_T u = win[offset[k] + c];
                if ((b == b) & ((u > b) | (u != u))) {
                    b = u;
                    a = (uint8_t)k;
                }
            }
            best[c] = b;
            at[c] = a;
        }
    }
}

/* One dx row of windows that tile the image: element (i, ds) of each window, i = the
 * row's place in its windows (first = i * pool_w), gets dy where the window's maximum is
 * there (pos, max_tiled_row's) and 0 elsewhere; with pooled (the pooling's output), also
 * 0 where that maximum is not above zero (a relu's gradient; NaN is not). Every element
 * is written once (the Wo * pool_w columns under windows; the driver zeroes the rest). dy
 * is added to zero (-0 becomes +0), as the scattering kernel adds it to its zeroed dx:
 * the same bits. */
static void FC_NAME(fc_pool_max_backward_tiled_row)(FC_T *restrict dx,
                                                    const FC_T *restrict dy,
                                                    const uint8_t *restrict pos,
                                                    const FC_T *restrict pooled,
                                                    Py_ssize_t Wo, Py_ssize_t C, int pool_w,
                                                    int first)
{
    typedef FC_NAME(fc_pool_tvec) vec;
    typedef FC_NAME(fc_pool_tmask) mask;
    typedef FC_NAME(fc_pool_tpos) bytes;
    for (Py_ssize_t ow = 0; ow < Wo; ow++) {
        const FC_T *restrict g = dy + ow * C;
        const uint8_t *restrict a = pos + ow * C;
        const FC_T *restrict p = pooled ? pooled + ow * C : NULL;
        for (int ds = 0; ds < pool_w; ds++) {
            const uint8_t here = (uint8_t)(first + ds);
            FC_T *restrict o = dx + (ow * pool_w + ds) * C;
            Py_ssize_t c = 0;
            for (; c + FC_L <= C; c += FC_L) {
                bytes av;
                vec gv;
                __builtin_memcpy(&av, a + c, sizeof av);
                __builtin_memcpy(&gv, g + c, sizeof gv);
                mask keep = __builtin_convertvector(av == (bytes){0} + (int8_t)here, mask);
                if (p) {
                    vec pv;
                    __builtin_memcpy(&pv, p + c, sizeof pv);
                    keep &= pv > 0;
                }
                const vec out = (vec)((mask)((vec){0} + gv) & keep);
                __builtin_memcpy(o + c, &out, sizeof out);
            }
            for (; c < C; c++)
                o[c] = (a[c] == here && (!p || p[c] > 0)) ? (FC_T)0 + g[c] : (FC_T)0;
        }
    }
}

static const FC_TNAME(fc_pool_table) FC_NAME(fc_pool_table) = {
    (int)FC_L,
    (int)FC_H,
    FC_NAME(fc_pool_max_row),
    FC_NAME(fc_pool_avg_row),
    FC_NAME(fc_pool_avg_backward_row),
    FC_NAME(fc_pool_global_avg),
    FC_NAME(fc_pool_global_avg_backward_row),
    FC_NAME(fc_pool_l2_row),
    FC_NAME(fc_pool_l2_backward_row),
    FC_NAME(fc_pool_max_values_row),
    FC_NAME(fc_pool_max_backward_tiled_row),
    FC_NAME(fc_pool_max_tiled_row),
};

#undef FC_POOL_REL
#undef FC_POOL_SQRT
#undef FC_POOL_REL_OF
#undef FC_L
#undef FC_H
