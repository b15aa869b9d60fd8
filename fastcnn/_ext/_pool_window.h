/* Window kernels of one vector width, for _pool_microkernel.h, which includes this file
 * once per width it uses (no include guard) with FC_WBYTES (vector bytes) and FC_WNAME(x)
 * (x with a suffix unique to the width) defined.
 *
 * Each handles one output pixel and nv (1 or 2) vectors of channels at a time: [0, L) and
 * [second, second + L) (L lanes, second <= L, so the two may overlap), over the whole
 * window. offset[k] is window element k's offset from the window's first element,
 * rel[k] its flat in-image offset i * W + j, k in row-major window order. One loop over a
 * table instead of over (i, j) keeps the work per element small for small C. nv is a
 * constant at every call and the functions are always inlined, so the loops over it
 * unroll and the vectors stay in registers.
 *
 * Masks and selects go through 32-bit lanes even for double (the bits are the same):
 * with 64-bit lanes gcc turns the select into per-lane scalar code under plain SSE2,
 * which has no 64-bit compare. GCC's C front end has no vector '?:'.
 */
#define FC_WL ((Py_ssize_t)(FC_WBYTES / sizeof(FC_T)))
typedef FC_T FC_WNAME(fc_pool_vec) __attribute__((vector_size(FC_WBYTES)));
typedef int32_t FC_WNAME(fc_pool_bits) __attribute__((vector_size(FC_WBYTES)));
/* positions, as wide as the values: int32 beside float (an int64 position beside a float
 * compare is not vectorised), int64 beside double */
typedef FC_POOL_REL FC_WNAME(fc_pool_pos) __attribute__((vector_size(FC_WBYTES)));
#define FC_WVEC FC_WNAME(fc_pool_vec)
#define FC_WBITS FC_WNAME(fc_pool_bits)
#define FC_WPOS FC_WNAME(fc_pool_pos)
#define FC_ALWAYS_INLINE static inline __attribute__((always_inline))

FC_ALWAYS_INLINE FC_WVEC FC_WNAME(fc_pool_load)(const FC_T *p)
{
    FC_WVEC v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

FC_ALWAYS_INLINE void FC_WNAME(fc_pool_store)(FC_T *p, FC_WVEC v)
{
    __builtin_memcpy(p, &v, sizeof v);
}

/* a where the mask m is all ones, else b */
FC_ALWAYS_INLINE FC_WBITS FC_WNAME(fc_pool_select)(FC_WBITS m, FC_WBITS a, FC_WBITS b)
{
    return (m & a) | (~m & b);
}

/* The max rule everywhere: strict '>' keeps the first maximum; NaN wins over any number
 * and, once held, stays. */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_max_window)(int nv, const FC_T *restrict x,
        Py_ssize_t second, const Py_ssize_t *restrict offset, const FC_POOL_REL *restrict rel,
        Py_ssize_t n_window, FC_T *restrict y, int64_t *restrict argmax, int64_t base)
{
    FC_WVEC best[2];
    FC_WPOS pos[2];
    for (int v = 0; v < nv; v++) {
        best[v] = FC_WNAME(fc_pool_load)(x + v * second);
        pos[v] = (FC_WPOS){0};
    }
    for (Py_ssize_t k = 1; k < n_window; k++) {
        FC_WPOS rel_k = (FC_WPOS){0} + rel[k]; /* broadcast */
        for (int v = 0; v < nv; v++) {
            FC_WVEC val = FC_WNAME(fc_pool_load)(x + offset[k] + v * second);
            FC_WBITS take = ~(FC_WBITS)(val <= best[v]) & (FC_WBITS)(best[v] == best[v]);
            best[v] = (FC_WVEC)FC_WNAME(fc_pool_select)(take, (FC_WBITS)val, (FC_WBITS)best[v]);
            pos[v] = (FC_WPOS)FC_WNAME(fc_pool_select)(take, (FC_WBITS)rel_k, (FC_WBITS)pos[v]);
        }
    }
    for (int v = 0; v < nv; v++)
        FC_WNAME(fc_pool_store)(y + v * second, best[v]);
    /* one loop per vector, not one for both: the halves may overlap, and each loop alone
     * vectorises */
    for (int v = 0; v < nv; v++)
        for (int l = 0; l < (int)FC_WL; l++)
            argmax[v * second + l] = base + pos[v][l];
}

/* The sum over the window in row-major order starting from 0, then / count: the same
 * operations in the same order as one channel at a time, at any width. */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_avg_window)(int nv, const FC_T *restrict x,
        Py_ssize_t second, const Py_ssize_t *restrict offset, Py_ssize_t n_window, FC_T count,
        FC_T *restrict y)
{
    FC_WVEC sum[2] = {{0}, {0}};
    for (Py_ssize_t k = 0; k < n_window; k++)
        for (int v = 0; v < nv; v++)
            sum[v] += FC_WNAME(fc_pool_load)(x + offset[k] + v * second);
    for (int v = 0; v < nv; v++)
        FC_WNAME(fc_pool_store)(y + v * second, sum[v] / count);
}

/* dx[offset[k] + c] += dy[c] / count over the window. Both vectors are loaded before
 * either is stored, so channels in both get the share added once. */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_avg_scatter)(int nv, FC_T *restrict dx,
        Py_ssize_t second, const Py_ssize_t *restrict offset, Py_ssize_t n_window, FC_T count,
        const FC_T *restrict dy)
{
    FC_WVEC share[2], d[2];
    for (int v = 0; v < nv; v++)
        share[v] = FC_WNAME(fc_pool_load)(dy + v * second) / count;
    for (Py_ssize_t k = 0; k < n_window; k++) {
        FC_T *p = dx + offset[k];
        for (int v = 0; v < nv; v++)
            d[v] = FC_WNAME(fc_pool_load)(p + v * second);
        for (int v = 0; v < nv; v++)
            FC_WNAME(fc_pool_store)(p + v * second, d[v] + share[v]);
    }
}

/* sqrt(sum over the window of x^2), the squares added in row-major order from 0. Instances
 * with FMA fuse each square into its addition (the C code has no fma call), at every width
 * alike. sqrt is taken lane by lane (vector types have no sqrt). */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_l2_window)(int nv, const FC_T *restrict x,
        Py_ssize_t second, const Py_ssize_t *restrict offset, Py_ssize_t n_window,
        FC_T *restrict y)
{
    FC_WVEC sum[2] = {{0}, {0}};
    for (Py_ssize_t k = 0; k < n_window; k++)
        for (int v = 0; v < nv; v++) {
            FC_WVEC val = FC_WNAME(fc_pool_load)(x + offset[k] + v * second);
            sum[v] += val * val;
        }
    for (int v = 0; v < nv; v++) {
        /* an aligned copy: gcc then makes the lane loop one vector sqrt */
        FC_T lanes[FC_WL] __attribute__((aligned(FC_WBYTES)));
        __builtin_memcpy(lanes, &sum[v], sizeof lanes);
        for (int l = 0; l < (int)FC_WL; l++)
            lanes[l] = FC_POOL_SQRT(lanes[l]);
        __builtin_memcpy(&sum[v], lanes, sizeof lanes);
        FC_WNAME(fc_pool_store)(y + v * second, sum[v]);
    }
}

/* dx[offset[k] + c] += (dy[c] / y[c]) * x[offset[k] + c] over the window, the ratio 0
 * where y is 0 (the window is all zeros, and 0 / 0 would make NaN). As in the mean's
 * scatter, both vectors are loaded before either is stored, so the channels of an
 * overlapping pair are added once. */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_l2_scatter)(int nv, FC_T *restrict dx,
        const FC_T *restrict x, Py_ssize_t second, const Py_ssize_t *restrict offset,
        Py_ssize_t n_window, const FC_T *restrict y, const FC_T *restrict dy)
{
    FC_WVEC ratio[2], d[2];
    for (int v = 0; v < nv; v++) {
        FC_WVEC yv = FC_WNAME(fc_pool_load)(y + v * second);
        FC_WVEC q = FC_WNAME(fc_pool_load)(dy + v * second) / yv;
        ratio[v] = (FC_WVEC)(~(FC_WBITS)(yv == 0) & (FC_WBITS)q);
    }
    for (Py_ssize_t k = 0; k < n_window; k++) {
        FC_T *p = dx + offset[k];
        const FC_T *xp = x + offset[k];
        for (int v = 0; v < nv; v++)
            d[v] = FC_WNAME(fc_pool_load)(p + v * second)
                   + ratio[v] * FC_WNAME(fc_pool_load)(xp + v * second);
        for (int v = 0; v < nv; v++)
            FC_WNAME(fc_pool_store)(p + v * second, d[v]);
    }
}

/* The C >= L channels of one pixel for forward kernels, whose outputs are pure functions
 * of x: pairs of vectors, the last pair moved back to end at C (overlapping the one
 * before; the overlap only computes the same outputs twice), C < 2L as one pair whose
 * vectors overlap, C == L as one vector. K(nv, c, second) runs the kernel at channel c. */
#define FC_WFORWARD_CHANNELS(C, K)                                                       \
    do {                                                                                 \
        if ((C) == FC_WL) {                                                              \
            K(1, 0, 0);                                                                  \
        } else if ((C) < 2 * FC_WL) {                                                    \
            K(2, 0, (C) - FC_WL);                                                        \
        } else {                                                                         \
            for (Py_ssize_t p_ = 0; p_ < ((C) + 2 * FC_WL - 1) / (2 * FC_WL); p_++) {    \
                Py_ssize_t c_ = 2 * FC_WL * p_ < (C) - 2 * FC_WL ? 2 * FC_WL * p_        \
                                                                 : (C) - 2 * FC_WL;      \
                K(2, c_, FC_WL);                                                         \
            }                                                                            \
        }                                                                                \
    } while (0)

#define FC_WMAX_AT(nv, c, second)                                                        \
    FC_WNAME(fc_pool_max_window)(nv, x + (c), second, w->offset, FC_POOL_REL_OF(w), w->n, \
                                 y + (c), argmax + (c), base)
#define FC_WAVG_AT(nv, c, second)                                                        \
    FC_WNAME(fc_pool_avg_window)(nv, x + (c), second, w->offset, w->n, count, y + (c))
#define FC_WL2_AT(nv, c, second)                                                         \
    FC_WNAME(fc_pool_l2_window)(nv, x + (c), second, w->offset, w->n, y + (c))

/* max / mean of the C >= L channels of the window whose first element is x[0] */
FC_ALWAYS_INLINE void FC_WNAME(fc_pool_max_channels)(const FC_T *x, Py_ssize_t C,
        const fc_pool_window *w, FC_T *y, int64_t *argmax, int64_t base)
{
    FC_WFORWARD_CHANNELS(C, FC_WMAX_AT);
}

FC_ALWAYS_INLINE void FC_WNAME(fc_pool_avg_channels)(const FC_T *x, Py_ssize_t C,
        const fc_pool_window *w, FC_T count, FC_T *y)
{
    FC_WFORWARD_CHANNELS(C, FC_WAVG_AT);
}

FC_ALWAYS_INLINE void FC_WNAME(fc_pool_l2_channels)(const FC_T *x, Py_ssize_t C,
        const fc_pool_window *w, FC_T *y)
{
    FC_WFORWARD_CHANNELS(C, FC_WL2_AT);
}

/* Adds the shares of channels [c, C) at this width and returns where it stopped. Calls
 * must not overlap here (a channel would get its share twice): whole pairs, then one
 * pair whose vectors overlap, or one vector. */
FC_ALWAYS_INLINE Py_ssize_t FC_WNAME(fc_pool_avg_scatter_channels)(FC_T *dx, Py_ssize_t c,
        Py_ssize_t C, const fc_pool_window *w, FC_T count, const FC_T *dy)
{
    for (; C - c >= 2 * FC_WL; c += 2 * FC_WL)
        FC_WNAME(fc_pool_avg_scatter)(2, dx + c, FC_WL, w->offset, w->n, count, dy + c);
    if (C - c == FC_WL) {
        FC_WNAME(fc_pool_avg_scatter)(1, dx + c, 0, w->offset, w->n, count, dy + c);
        c = C;
    } else if (C - c > FC_WL) {
        FC_WNAME(fc_pool_avg_scatter)(2, dx + c, C - c - FC_WL, w->offset, w->n, count,
                                      dy + c);
        c = C;
    }
    return c;
}

/* The L2 gradient of channels [c, C) at this width, split as the mean's scatter is. */
FC_ALWAYS_INLINE Py_ssize_t FC_WNAME(fc_pool_l2_scatter_channels)(FC_T *dx, const FC_T *x,
        Py_ssize_t c, Py_ssize_t C, const fc_pool_window *w, const FC_T *y, const FC_T *dy)
{
    for (; C - c >= 2 * FC_WL; c += 2 * FC_WL)
        FC_WNAME(fc_pool_l2_scatter)(2, dx + c, x + c, FC_WL, w->offset, w->n, y + c, dy + c);
    if (C - c == FC_WL) {
        FC_WNAME(fc_pool_l2_scatter)(1, dx + c, x + c, 0, w->offset, w->n, y + c, dy + c);
        c = C;
    } else if (C - c > FC_WL) {
        FC_WNAME(fc_pool_l2_scatter)(2, dx + c, x + c, C - c - FC_WL, w->offset, w->n, y + c,
                                     dy + c);
        c = C;
    }
    return c;
}

#undef FC_WFORWARD_CHANNELS
#undef FC_WL2_AT
#undef FC_WMAX_AT
#undef FC_WAVG_AT
#undef FC_ALWAYS_INLINE
#undef FC_WVEC
#undef FC_WBITS
#undef FC_WPOS
#undef FC_WL
