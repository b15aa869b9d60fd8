/* Winograd F(4x4, 3x3), F(2x2, 5x5) and F(4x4, 5x5) transforms for float and double at
 * each instruction set, reached through one table of function pointers per (type,
 * instruction set); see _dispatch.h.
 *
 * A 3x3, stride-1 convolution computes each 4x4 block of output pixels from the 6x6 input
 * patch under it as A^T [(G g G^T) . (B^T d B)] A (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015): the 36 products of the transformed patch with
 * the transformed filter replace 144 multiply-adds per channel pair by 36. A 5x5 one
 * computes 2x2 blocks from the same 6x6 patches, F(2x2, 5x5): 36 instead of 100, or 4x4
 * blocks from 8x8 patches, F(4x4, 5x5): 64 instead of 400. These
 * transforms run on whole channel vectors (NHWC keeps a pixel's channels contiguous);
 * the alpha^2 products are matrix products done by the forward tile kernel (see
 * _conv_winograd.pxi). The filter transform is done once, in NumPy, when weights are
 * prepared.
 *
 * The weight gradient of a 3x3 convolution, F(3x3, 4x4), is the same algorithm
 * transposed: dw = G^T [sum over tiles of (A g A^T) . (B^T d B)] G, g a tile's 4x4 output
 * gradients; the table's grad_output and outer (the sum of the tiles' outer products at
 * each position) serve it (_conv_winograd_wgrad.pxi). */
#ifndef FASTCNN_WINO_KERNELS_H
#define FASTCNN_WINO_KERNELS_H

#include "_dispatch.h"

#define FC_WINO_TABLE_TYPE(S, T)                                                         \
    typedef struct {                                                                     \
        int lanes;    /* elements per vector */                                          \
        int rows[2];  /* most rows per gemm call at nv = 1 and nv = 2 vectors */         \
        /* v[p * ldv + c], p < alpha^2 (alpha 6 or 8): B^T d B of the patch d whose     \
         * row i has its pixels q0 <= j < q1 at rows[i][(j - q0) * C + c] (rows[i] NULL: \
         * none) and zeros elsewhere (read from zeros, C of them); tmp holds alpha^2 * C \
         * values */                                                                     \
        void (*input)(const T *const *rows, int q0, int q1, const T *zeros, long C,      \
                      int alpha, T *tmp, T *v, long ldv);                                \
        /* out[r * ld_row + q * K + k] for r < rows, q < cols (<= tile, 4 or 2): A^T m A  \
         * of m[p * ldm + k] plus bias[k], then relu if asked; tmp holds 36 * K values */ \
        void (*output)(const T *m, long ldm, long K, const T *bias, int relu, int tile,  \
                       int alpha, T *tmp, T *out, long ld_row, int rows, int cols);      \
        /* m[i * ldm + j] = sum_c v[i * C + c] u[c * ldu + j], i < tp, j < nv vectors */   \
        void (*gemm)(int nv, int tp, const T *v, long C, const T *u, long ldu, T *m,       \
                     long ldm);                                                          \
        /* v[p * ldv + k], p < 36: A g A^T of the 4x4 output gradients                   \
         * g[r * ld_row + q * K + k], F(3x3, 4x4); tmp holds 24 * K values */           \
        void (*grad_output)(const T *g, long ld_row, long K, T *tmp, T *v, long ldv);    \
        /* m[i * ldm + j] (+ m's values if acc) = sum_t v[t * ldv + i] u[t * ldu + j],   \
         * i < tp, j < nv vectors, t < n */                                              \
        void (*outer)(int nv, int tp, const T *v, long ldv, const T *u, long ldu, long n, \
                      int acc, T *m, long ldm);                                          \
        /* out[(alpha * p + q) * ld_pos + b] = (G w[:, :, c, k0 + b] G^T)[p, q], b <     \
         * width, zeros to block, in double and rounded once (the same bits at every   \
         * instruction set): w (r, r, C, K), CK = C * K, G (alpha, r) */                \
        void (*filter)(const T *w, long CK, long K, int r, int alpha, const double *g,   \
                       long c, long k0, int width, int block, T *out, long ld_pos);      \
    } fc_wino_table_##S;
FC_WINO_TABLE_TYPE(f32, float)
FC_WINO_TABLE_TYPE(f64, double)
#undef FC_WINO_TABLE_TYPE

#define FC_MICROKERNEL "_wino_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_wino_table)

#endif
