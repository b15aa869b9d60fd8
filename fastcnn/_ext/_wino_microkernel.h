/* Winograd F(4x4, 3x3), F(2x2, 5x5) and F(4x4, 5x5) input and output transforms, and
 * F(3x3, 4x4)'s of the output gradients (the weight gradient), instantiated by _wino_kernels.h for each (element type, instruction set) through
 * _dispatch_instances.h.
 *
 * Each is two passes of a one-dimensional transform (columns, then rows) over channel
 * vectors: plain loops over the channels that the compiler vectorises at the instance's
 * width. Every channel goes through the same arithmetic, so a result does not depend on
 * its position or on the thread count; instances with FMA may contract multiply-adds and
 * differ from the baseline's in the last bits.
 *
 *   B^T = [4  0 -5  0  1  0]    A^T = [1  1  1  1  1  0]
 *         [0 -4 -4  1  1  0]          [0  1 -1  2 -2  0]
 *         [0  4 -4 -1  1  0]          [0  1  1  4  4  0]
 *         [0 -2 -1  2  1  0]          [0  1 -1  8 -8  1]
 *         [0  2 -1 -2  1  0]
 *         [0  4  0 -5  0  1]
 *
 * F(2x2, 5x5) uses the same six points, so the same input transform and products, and
 * the first two rows of A^T with the point at infinity in the second:
 *   A^T = [1  1  1  1  1  0]
 *         [0  1 -1  2 -2  1]
 */

#define FC_WV ((int)(FC_VBYTES / sizeof(FC_T)))
typedef FC_T FC_NAME(fc_wino_vec) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(FC_T))));

/* NAME(a, lda, o, ldo, n): the one-dimensional transform TRANSFORM on channels 0..n-1,
 * whole vectors then one element at a time */
#define FC_WINO_1D(NAME, TRANSFORM)                                                     \
    static inline __attribute__((always_inline)) void FC_NAME(NAME)(                    \
        const FC_T *a, long lda, FC_T *o, long ldo, long n)                             \
    {                                                                                   \
        long i = 0;                                                                     \
        for (; i + FC_WV <= n; i += FC_WV)                                              \
            TRANSFORM(FC_NAME(fc_wino_vec), a, lda, o, ldo, i);                         \
        for (; i < n; i++)                                                              \
            TRANSFORM(FC_T, a, lda, o, ldo, i);                                         \
    }

/* NAME(p, o, ldo, n): the same with the transform's inputs at p[j] + i instead of
 * a + j * lda (a patch's rows, some of them zeros, wherever they lie) */
#define FC_WINO_1DP(NAME, TRANSFORM)                                                    \
    static inline __attribute__((always_inline)) void FC_NAME(NAME)(                    \
        const FC_T *const *p, FC_T *o, long ldo, long n)                                \
    {                                                                                   \
        long i = 0;                                                                     \
        for (; i + FC_WV <= n; i += FC_WV)                                              \
            TRANSFORM(FC_NAME(fc_wino_vec), p, o, ldo, i);                              \
        for (; i < n; i++)                                                              \
            TRANSFORM(FC_T, p, o, ldo, i);                                              \
    }

/* The one-dimensional transforms on one vector of channels (or one element: T is the
 * vector type or FC_T). Written on explicit vectors: the auto-vectoriser does not prove
 * the six output streams apart and falls back to scalar code. */
/* a0..a5: the six vectors (or elements) a[j * lda + i], j < 6 */
#define FC_WINO_LOAD6(T, a, lda, i)                                                     \
    const T a0 = *(const T *)((a) + (i)), a1 = *(const T *)((a) + (lda) + (i));         \
    const T a2 = *(const T *)((a) + 2 * (lda) + (i));                                   \
    const T a3 = *(const T *)((a) + 3 * (lda) + (i));                                   \
    const T a4 = *(const T *)((a) + 4 * (lda) + (i));                                   \
    const T a5 = *(const T *)((a) + 5 * (lda) + (i))

/* ... or from p[j] + i (the input transform's: a patch's rows, some of them zeros) */
#define FC_WINO_LOAD6P(T, p, i)                                                         \
    const T a0 = *(const T *)((p)[0] + (i)), a1 = *(const T *)((p)[1] + (i));           \
    const T a2 = *(const T *)((p)[2] + (i)), a3 = *(const T *)((p)[3] + (i));           \
    const T a4 = *(const T *)((p)[4] + (i)), a5 = *(const T *)((p)[5] + (i))

#define FC_WINO_IN_1D(T, p, o, ldo, c)                                                  \
    do {                                                                                \
        FC_WINO_LOAD6P(T, p, c);                                                        \
        *(T *)((o) + (c)) = 4 * a0 - 5 * a2 + a4;                                       \
        *(T *)((o) + (ldo) + (c)) = -4 * (a1 + a2) + (a3 + a4);                         \
        *(T *)((o) + 2 * (ldo) + (c)) = 4 * (a1 - a2) + (a4 - a3);                      \
        *(T *)((o) + 3 * (ldo) + (c)) = 2 * (a3 - a1) + (a4 - a2);                      \
        *(T *)((o) + 4 * (ldo) + (c)) = 2 * (a1 - a3) + (a4 - a2);                      \
        *(T *)((o) + 5 * (ldo) + (c)) = 4 * a1 - 5 * a3 + a5;                           \
    } while (0)

#define FC_WINO_OUT_1D(T, a, lda, o, ldo, k)                                            \
    do {                                                                                \
        FC_WINO_LOAD6(T, a, lda, k);                                                    \
        const T s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;             \
        *(T *)((o) + (k)) = a0 + s12 + s34;                                             \
        *(T *)((o) + (ldo) + (k)) = d12 + 2 * d34;                                      \
        *(T *)((o) + 2 * (ldo) + (k)) = s12 + 4 * s34;                                  \
        *(T *)((o) + 3 * (ldo) + (k)) = d12 + 8 * d34 + a5;                             \
    } while (0)

/* o[i * ldo + c] = (B^T a)[i] for the six vectors p[j] + c */
FC_WINO_1DP(fc_wino_in_1d, FC_WINO_IN_1D)

/* p[i], i < alpha: the pixel in column j of a patch's row i. The patch's row i has its
 * pixels from column q0 to q1 - 1 at rows[i] (NULL: the row is off the image) and zeros
 * elsewhere, which p reads from ``zeros`` (C of them): the transform then computes what
 * it would from a copy of the patch with its zeros, bit for bit. */
static inline void FC_NAME(fc_wino_column)(const FC_T *const *rows, int q0, int q1,
                                           const FC_T *zeros, long C, int alpha, int j,
                                           const FC_T **p)
{
    const int inside = q0 <= j && j < q1;
    for (int i = 0; i < alpha; i++)
        p[i] = inside && rows[i] ? rows[i] + (j - q0) * C : zeros;
}

/* o[i * ldo + k] = (A^T a)[i], i < 4, for the six vectors a[j * lda + k] */
FC_WINO_1D(fc_wino_out_1d, FC_WINO_OUT_1D)

/* The same for F(2x2, 5x5): A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1], two rows out */
#define FC_WINO_OUT2_1D(T, a, lda, o, ldo, k)                                           \
    do {                                                                                \
        FC_WINO_LOAD6(T, a, lda, k);                                                    \
        *(T *)((o) + (k)) = a0 + (a1 + a2) + (a3 + a4);                                 \
        *(T *)((o) + (ldo) + (k)) = (a1 - a2) + 2 * (a3 - a4) + a5;                     \
    } while (0)

FC_WINO_1D(fc_wino_out2_1d, FC_WINO_OUT2_1D)

/* F(4x4, 5x5) computes each 4x4 block from the 8x8 patch under it, on the eight points
 * 0, 1, -1, 2, -2, 1/2, -1/2 and infinity (every constant below is exact in binary):
 *   B^T = [-1   0    21/4  0    -21/4  0     1  0]    A^T = [1 1  1 1  1  1    1    0]
 *         [ 0   1    1    -17/4 -17/4  1     1  0]          [0 1 -1 2 -2  1/2 -1/2  0]
 *         [ 0  -1    1     17/4 -17/4 -1     1  0]          [0 1  1 4  4  1/4  1/4  0]
 *         [ 0   1/2  1/4  -5/2  -5/4   2     1  0]          [0 1 -1 8 -8  1/8 -1/8  1]
 *         [ 0  -1/2  1/4   5/2  -5/4  -2     1  0]
 *         [ 0   2    4    -5/2  -5     1/2   1  0]
 *         [ 0  -2    4     5/2  -5    -1/2   1  0]
 *         [ 0  -1    0     21/4  0    -21/4  0  1]
 * Rows 2i-1 and 2i (a point and its negative) share their even and odd halves. */
#define FC_WINO_LOAD8(T, a, lda, i)                                                     \
    FC_WINO_LOAD6(T, a, lda, i);                                                        \
    const T a6 = *(const T *)((a) + 6 * (lda) + (i));                                   \
    const T a7 = *(const T *)((a) + 7 * (lda) + (i))

#define FC_WINO_LOAD8P(T, p, i)                                                         \
    FC_WINO_LOAD6P(T, p, i);                                                            \
    const T a6 = *(const T *)((p)[6] + (i)), a7 = *(const T *)((p)[7] + (i))

#define FC_WINO_IN8_1D(T, p, o, ldo, c)                                                 \
    do {                                                                                \
        FC_WINO_LOAD8P(T, p, c);                                                        \
        const T e1 = a2 + a6 - (FC_T)4.25 * a4, o1 = a1 + a5 - (FC_T)4.25 * a3;         \
        const T e2 = (FC_T)0.25 * a2 - (FC_T)1.25 * a4 + a6;                            \
        const T o2 = (FC_T)0.5 * a1 - (FC_T)2.5 * a3 + 2 * a5;                          \
        const T e3 = 4 * a2 - 5 * a4 + a6, o3 = 2 * a1 - (FC_T)2.5 * a3 + (FC_T)0.5 * a5; \
        *(T *)((o) + (c)) = (a6 - a0) + (FC_T)5.25 * (a2 - a4);                         \
        *(T *)((o) + (ldo) + (c)) = e1 + o1;                                            \
        *(T *)((o) + 2 * (ldo) + (c)) = e1 - o1;                                        \
        *(T *)((o) + 3 * (ldo) + (c)) = e2 + o2;                                        \
        *(T *)((o) + 4 * (ldo) + (c)) = e2 - o2;                                        \
        *(T *)((o) + 5 * (ldo) + (c)) = e3 + o3;                                        \
        *(T *)((o) + 6 * (ldo) + (c)) = e3 - o3;                                        \
        *(T *)((o) + 7 * (ldo) + (c)) = (a7 - a1) + (FC_T)5.25 * (a3 - a5);             \
    } while (0)

#define FC_WINO_OUT8_1D(T, a, lda, o, ldo, k)                                           \
    do {                                                                                \
        FC_WINO_LOAD8(T, a, lda, k);                                                    \
        const T s1 = a1 + a2, d1 = a1 - a2, s2 = a3 + a4, d2 = a3 - a4;                 \
        const T s3 = a5 + a6, d3 = a5 - a6;                                             \
        *(T *)((o) + (k)) = a0 + s1 + s2 + s3;                                          \
        *(T *)((o) + (ldo) + (k)) = d1 + 2 * d2 + (FC_T)0.5 * d3;                       \
        *(T *)((o) + 2 * (ldo) + (k)) = s1 + 4 * s2 + (FC_T)0.25 * s3;                  \
        *(T *)((o) + 3 * (ldo) + (k)) = d1 + 8 * d2 + (FC_T)0.125 * d3 + a7;            \
    } while (0)

FC_WINO_1DP(fc_wino_in8_1d, FC_WINO_IN8_1D)

FC_WINO_1D(fc_wino_out8_1d, FC_WINO_OUT8_1D)

/* The input transform of an alpha x alpha patch (alpha 6 or 8; its rows, columns and
 * zeros as fc_wino_column reads them): v[alpha * i + j] */
static void FC_NAME(fc_wino_input_any)(const FC_T *const *rows, int q0, int q1,
                                       const FC_T *zeros, long C, int alpha, FC_T *tmp,
                                       FC_T *v, long ldv)
{
    const FC_T *p[8];
    /* columns: tmp[(alpha * i + j) * C] = (B^T d[:, j])[i] */
    for (int j = 0; j < alpha; j++) {
        FC_NAME(fc_wino_column)(rows, q0, q1, zeros, C, alpha, j, p);
        if (alpha == 6)
            FC_NAME(fc_wino_in_1d)(p, tmp + j * C, 6 * C, C);
        else
            FC_NAME(fc_wino_in8_1d)(p, tmp + j * C, 8 * C, C);
    }
    /* rows: v[alpha * i + j] = (B^T tmp[i, :])[j] */
    for (int i = 0; i < alpha; i++) {
        for (int j = 0; j < alpha; j++)
            p[j] = tmp + (alpha * i + j) * C;
        if (alpha == 6)
            FC_NAME(fc_wino_in_1d)(p, v + 6 * i * ldv, ldv, C);
        else
            FC_NAME(fc_wino_in8_1d)(p, v + 8 * i * ldv, ldv, C);
    }
}

/* Bias, then relu if asked, on the q < cols pixels y[q * K] of one output row. */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_store)(
    const FC_T *y, long K, const FC_T *bias, int relu, FC_T *o, int cols)
{
    typedef FC_NAME(fc_wino_vec) vec;
    typedef __typeof__((vec){0} < (vec){0}) mask;
    for (int q = 0; q < cols; q++, o += K) {
        const FC_T *yq = y + q * K;
        long k = 0;
        for (; k + FC_WV <= K; k += FC_WV) {
            vec z = *(const vec *)(yq + k) + *(const vec *)(bias + k);
            if (relu)     /* what is not below zero stays, NaN included */
                z = (vec)((mask)z & ~(z < 0));
            *(vec *)(o + k) = z;
        }
        for (; k < K; k++) {
            const FC_T z = yq[k] + bias[k];
            o[k] = relu && z < 0 ? 0 : z;
        }
    }
}

/* Output transform of F(4x4, 5x5), from 8x8 products. */
static void FC_NAME(fc_wino_output8)(const FC_T *m, long ldm, long K, const FC_T *bias,
                                     int relu, FC_T *tmp, FC_T *out, long ld_row, int rows,
                                     int cols)
{
    FC_T *y = tmp + 32 * K;
    for (int j = 0; j < 8; j++)
        FC_NAME(fc_wino_out8_1d)(m + j * ldm, 8 * ldm, tmp + j * K, 8 * K, K);
    for (int r = 0; r < rows; r++) {
        FC_NAME(fc_wino_out8_1d)(tmp + 8 * r * K, K, y, K, K);
        FC_NAME(fc_wino_store)(y, K, bias, relu, out + r * ld_row, cols);
    }
}

/* Output transform of F(tile x tile, r x r), tile 4 (r = 3) or 2 (r = 5). */
static void FC_NAME(fc_wino_output)(const FC_T *m, long ldm, long K, const FC_T *bias,
                                    int relu, int tile, FC_T *tmp, FC_T *out, long ld_row,
                                    int rows, int cols)
{
    FC_T *y = tmp + 24 * K;
    /* columns: tmp[(6 * r + j) * K] = (A^T m[:, j])[r] */
    for (int j = 0; j < 6; j++) {
        if (tile == 4)
            FC_NAME(fc_wino_out_1d)(m + j * ldm, 6 * ldm, tmp + j * K, 6 * K, K);
        else
            FC_NAME(fc_wino_out2_1d)(m + j * ldm, 6 * ldm, tmp + j * K, 6 * K, K);
    }
    for (int r = 0; r < rows; r++) {
        /* rows: y[q * K] = (A^T tmp[r, :])[q] */
        if (tile == 4)
            FC_NAME(fc_wino_out_1d)(tmp + 6 * r * K, K, y, K, K);
        else
            FC_NAME(fc_wino_out2_1d)(tmp + 6 * r * K, K, y, K, K);
        FC_NAME(fc_wino_store)(y, K, bias, relu, out + r * ld_row, cols);
    }
}

/* Output transform of any form: alpha 8 is F(4x4, 5x5); alpha 6 is F(4x4, 3x3) (tile 4)
 * or F(2x2, 5x5) (tile 2). */
static void FC_NAME(fc_wino_output_any)(const FC_T *m, long ldm, long K, const FC_T *bias,
                                        int relu, int tile, int alpha, FC_T *tmp, FC_T *out,
                                        long ld_row, int rows, int cols)
{
    if (alpha == 8)
        FC_NAME(fc_wino_output8)(m, ldm, K, bias, relu, tmp, out, ld_row, rows, cols);
    else
        FC_NAME(fc_wino_output)(m, ldm, K, bias, relu, tile, tmp, out, ld_row, rows, cols);
}

/* The products at one transformed position: m (tp, nv vectors) = v (tp, C) @ u (C, nv
 * vectors), tp rows of accumulators held in registers, one broadcast of v against nv
 * vectors of u per multiply-add. 16 vector registers (SSE2, AVX2) hold 6 x 2 or 12 x 1
 * accumulators, 32 (AVX-512) 12 x 2 or 24 x 1. */
#if FC_VBYTES == 64
#define FC_WINO_ROWS2 12
#define FC_WINO_ROWS1 24
#else
#define FC_WINO_ROWS2 6
#define FC_WINO_ROWS1 12
#endif
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_gemm_impl)(
    const int nv, const int tp, const FC_T *restrict v, long C, const FC_T *restrict u,
    long ldu, FC_T *restrict m, long ldm)
{
    typedef FC_NAME(fc_wino_vec) vec;
    vec acc[FC_WINO_ROWS1][2];
#pragma GCC unroll 24
    for (int i = 0; i < tp; i++) {
        acc[i][0] = (vec){0};
        acc[i][1] = (vec){0};
    }
    for (long c = 0; c < C; c++) {
        const vec w0 = *(const vec *)(u + c * ldu);
        const vec w1 = nv > 1 ? *(const vec *)(u + c * ldu + FC_WV) : (vec){0};
#pragma GCC unroll 24
        for (int i = 0; i < tp; i++) {
            const vec xb = (vec){0} + v[i * C + c];
            acc[i][0] += xb * w0;
            if (nv > 1)
                acc[i][1] += xb * w1;
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < tp; i++) {
        *(vec *)(m + i * ldm) = acc[i][0];
        if (nv > 1)
            *(vec *)(m + i * ldm + FC_WV) = acc[i][1];
    }
}

#define FC_WINO_CASE(NV, TP)                                                            \
    case TP:                                                                            \
        FC_NAME(fc_wino_gemm_impl)(NV, TP, v, C, u, ldu, m, ldm);                       \
        return;

static void FC_NAME(fc_wino_gemm)(int nv, int tp, const FC_T *v, long C, const FC_T *u,
                                  long ldu, FC_T *m, long ldm)
{
    if (nv > 1) {
        switch (tp) {
        FC_WINO_CASE(2, 1) FC_WINO_CASE(2, 2) FC_WINO_CASE(2, 3) FC_WINO_CASE(2, 4)
        FC_WINO_CASE(2, 5) FC_WINO_CASE(2, 6)
#if FC_WINO_ROWS2 > 6
        FC_WINO_CASE(2, 7) FC_WINO_CASE(2, 8) FC_WINO_CASE(2, 9) FC_WINO_CASE(2, 10)
        FC_WINO_CASE(2, 11) FC_WINO_CASE(2, 12)
#endif
        }
    } else {
        switch (tp) {
        FC_WINO_CASE(1, 1) FC_WINO_CASE(1, 2) FC_WINO_CASE(1, 3) FC_WINO_CASE(1, 4)
        FC_WINO_CASE(1, 5) FC_WINO_CASE(1, 6) FC_WINO_CASE(1, 7) FC_WINO_CASE(1, 8)
        FC_WINO_CASE(1, 9) FC_WINO_CASE(1, 10) FC_WINO_CASE(1, 11) FC_WINO_CASE(1, 12)
#if FC_WINO_ROWS1 > 12
        FC_WINO_CASE(1, 13) FC_WINO_CASE(1, 14) FC_WINO_CASE(1, 15) FC_WINO_CASE(1, 16)
        FC_WINO_CASE(1, 17) FC_WINO_CASE(1, 18) FC_WINO_CASE(1, 19) FC_WINO_CASE(1, 20)
        FC_WINO_CASE(1, 21) FC_WINO_CASE(1, 22) FC_WINO_CASE(1, 23) FC_WINO_CASE(1, 24)
#endif
        }
    }
}

/* The weight gradient, F(3x3, 4x4) (the forward's F(4x4, 3x3) transposed: dw = G^T
 * [(A g A^T) . (B^T d B)] G summed over the tiles, d a tile's 6x6 input patch, g its 4x4
 * output gradients). A, the transpose of A^T above, takes four values to six:
 *   A g = (g0, g0 + g1 + g2 + g3, g0 - g1 + g2 - g3, g0 + 2 g1 + 4 g2 + 8 g3,
 *          g0 - 2 g1 + 4 g2 - 8 g3, g3) */
#define FC_WINO_GRAD_1D(T, a, lda, o, ldo, k)                                           \
    do {                                                                                \
        const T a0 = *(const T *)((a) + (k)), a1 = *(const T *)((a) + (lda) + (k));     \
        const T a2 = *(const T *)((a) + 2 * (lda) + (k));                               \
        const T a3 = *(const T *)((a) + 3 * (lda) + (k));                               \
        const T s02 = a0 + a2, s13 = a1 + a3, t02 = a0 + 4 * a2, t13 = 2 * a1 + 8 * a3; \
        *(T *)((o) + (k)) = a0;                                                         \
        *(T *)((o) + (ldo) + (k)) = s02 + s13;                                          \
        *(T *)((o) + 2 * (ldo) + (k)) = s02 - s13;                                      \
        *(T *)((o) + 3 * (ldo) + (k)) = t02 + t13;                                      \
        *(T *)((o) + 4 * (ldo) + (k)) = t02 - t13;                                      \
        *(T *)((o) + 5 * (ldo) + (k)) = a3;                                             \
    } while (0)

FC_WINO_1D(fc_wino_grad_1d, FC_WINO_GRAD_1D)

/* v[p * ldv + k], p < 36: A g A^T of the 4x4 block g[r * ld_row + q * K + k]; tmp holds
 * 24 * K values */
static void FC_NAME(fc_wino_grad_output)(const FC_T *g, long ld_row, long K, FC_T *tmp,
                                         FC_T *v, long ldv)
{
    /* columns: tmp[(4 * i + j) * K] = (A g[:, j])[i] */
    for (int j = 0; j < 4; j++)
        FC_NAME(fc_wino_grad_1d)(g + j * K, ld_row, tmp + j * K, 4 * K, K);
    /* rows: v[6 * i + j] = (A tmp[i, :])[j] */
    for (int i = 0; i < 6; i++)
        FC_NAME(fc_wino_grad_1d)(tmp + 4 * i * K, K, v + 6 * i * ldv, ldv, K);
}

/* The weight gradient's products at one position: m (tp, nv vectors) = sum over t < n of
 * v[t * ldv + i] u[t * ldu + j] (the outer products of the tiles' transformed patches
 * and output gradients), plus m's own values when acc is set. A step broadcasts tp
 * consecutive values of v against nv vectors of u. */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_outer_impl)(
    const int nv, const int tp, const FC_T *restrict v, long ldv, const FC_T *restrict u,
    long ldu, long n, int acc, FC_T *restrict m, long ldm)
{
    typedef FC_NAME(fc_wino_vec) vec;
    vec acc0[FC_WINO_ROWS1][2];
#pragma GCC unroll 24
    for (int i = 0; i < tp; i++) {
        acc0[i][0] = acc ? *(const vec *)(m + i * ldm) : (vec){0};
        acc0[i][1] = acc && nv > 1 ? *(const vec *)(m + i * ldm + FC_WV) : (vec){0};
    }
    for (long t = 0; t < n; t++) {
        const vec w0 = *(const vec *)(u + t * ldu);
        const vec w1 = nv > 1 ? *(const vec *)(u + t * ldu + FC_WV) : (vec){0};
#pragma GCC unroll 24
        for (int i = 0; i < tp; i++) {
            const vec xb = (vec){0} + v[t * ldv + i];
            acc0[i][0] += xb * w0;
            if (nv > 1)
                acc0[i][1] += xb * w1;
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < tp; i++) {
        *(vec *)(m + i * ldm) = acc0[i][0];
        if (nv > 1)
            *(vec *)(m + i * ldm + FC_WV) = acc0[i][1];
    }
}

#define FC_WINO_OCASE(NV, TP)                                                           \
    case TP:                                                                            \
        FC_NAME(fc_wino_outer_impl)(NV, TP, v, ldv, u, ldu, n, acc, m, ldm);            \
        return;

static void FC_NAME(fc_wino_outer)(int nv, int tp, const FC_T *v, long ldv, const FC_T *u,
                                   long ldu, long n, int acc, FC_T *m, long ldm)
{
    if (nv > 1) {
        switch (tp) {
        FC_WINO_OCASE(2, 1) FC_WINO_OCASE(2, 2) FC_WINO_OCASE(2, 3) FC_WINO_OCASE(2, 4)
        FC_WINO_OCASE(2, 5) FC_WINO_OCASE(2, 6)
#if FC_WINO_ROWS2 > 6
        FC_WINO_OCASE(2, 7) FC_WINO_OCASE(2, 8) FC_WINO_OCASE(2, 9) FC_WINO_OCASE(2, 10)
        FC_WINO_OCASE(2, 11) FC_WINO_OCASE(2, 12)
#endif
        }
    } else {
        switch (tp) {
        FC_WINO_OCASE(1, 1) FC_WINO_OCASE(1, 2) FC_WINO_OCASE(1, 3) FC_WINO_OCASE(1, 4)
        FC_WINO_OCASE(1, 5) FC_WINO_OCASE(1, 6) FC_WINO_OCASE(1, 7) FC_WINO_OCASE(1, 8)
        FC_WINO_OCASE(1, 9) FC_WINO_OCASE(1, 10) FC_WINO_OCASE(1, 11) FC_WINO_OCASE(1, 12)
#if FC_WINO_ROWS1 > 12
        FC_WINO_OCASE(1, 13) FC_WINO_OCASE(1, 14) FC_WINO_OCASE(1, 15) FC_WINO_OCASE(1, 16)
        FC_WINO_OCASE(1, 17) FC_WINO_OCASE(1, 18) FC_WINO_OCASE(1, 19) FC_WINO_OCASE(1, 20)
        FC_WINO_OCASE(1, 21) FC_WINO_OCASE(1, 22) FC_WINO_OCASE(1, 23) FC_WINO_OCASE(1, 24)
#endif
        }
    }
}

/* The filter transform of one input channel c and block of output channels k0 ..
 * k0 + width - 1: out[(alpha * p + q) * ld_pos + b] = (G w[:, :, c, k0 + b] G^T)[p, q]
 * for b < width, zeros up to block (block <= 64, r <= 5, alpha <= 8), in double (G w
 * first, then its product with G^T) and rounded once. The loops over b are innermost and
 * vectorise; multiply-adds are not contracted, so every instance computes the same bits
 * (those of plain double multiplies and adds in this order). */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void FC_NAME(fc_wino_filter)(const FC_T *restrict w, long CK, long K, int r,
                                    int alpha, const double *restrict g, long c, long k0,
                                    int width, int block, FC_T *restrict out, long ld_pos)
{
    double t[8 * 5 * 64];   /* G w: alpha x r x block */
    double row[64];
    for (int p = 0; p < alpha; p++)
        for (int s = 0; s < r; s++) {
            double *restrict dst = t + (p * r + s) * block;
            for (int b = 0; b < width; b++)
                dst[b] = 0;
            for (int u = 0; u < r; u++) {
                const double coef = g[p * r + u];
                const FC_T *restrict src = w + (u * r + s) * CK + c * K + k0;
                for (int b = 0; b < width; b++)
                    dst[b] = dst[b] + coef * (double)src[b];
            }
        }
    for (int p = 0; p < alpha; p++)
        for (int q = 0; q < alpha; q++) {
            for (int b = 0; b < width; b++)
                row[b] = 0;
            for (int s = 0; s < r; s++) {
                const double coef = g[q * r + s];
                const double *restrict src = t + (p * r + s) * block;
                for (int b = 0; b < width; b++)
                    row[b] = row[b] + coef * src[b];
            }
            FC_T *restrict o = out + (p * alpha + q) * ld_pos;
            for (int b = 0; b < width; b++)
                o[b] = (FC_T)row[b];
            for (int b = width; b < block; b++)
                o[b] = 0;
        }
}
#pragma GCC pop_options

static const FC_TNAME(fc_wino_table) FC_NAME(fc_wino_table) = {
    FC_WV,
    {FC_WINO_ROWS1, FC_WINO_ROWS2},
    FC_NAME(fc_wino_input_any),
    FC_NAME(fc_wino_output_any),
    FC_NAME(fc_wino_gemm),
    FC_NAME(fc_wino_grad_output),
    FC_NAME(fc_wino_outer),
    FC_NAME(fc_wino_filter),
};

#undef FC_WINO_CASE
#undef FC_WINO_OCASE
#undef FC_WINO_GRAD_1D
#undef FC_WINO_ROWS1
#undef FC_WINO_ROWS2
#undef FC_WV
#undef FC_WINO_LOAD6
#undef FC_WINO_IN_1D
#undef FC_WINO_LOAD6P
#undef FC_WINO_1DP
#undef FC_WINO_OUT_1D
#undef FC_WINO_OUT2_1D
#undef FC_WINO_LOAD8
#undef FC_WINO_IN8_1D
#undef FC_WINO_LOAD8P
#undef FC_WINO_OUT8_1D
#undef FC_WINO_1D
