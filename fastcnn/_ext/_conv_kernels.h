/* Convolution micro-kernels for float and double at each instruction set, reached through
 * one table of function pointers per (family, type, instruction set); see _dispatch.h.
 *
 * Four families, one header each: the forward tile (_conv_forward_microkernel.h), the
 * weight-gradient tile (_conv_wgrad_microkernel.h), the single-input-channel kernels
 * (_conv_c1_microkernel.h, with the pooled one of _conv_c1_pool_microkernel.h) and kernels
 * on contiguous runs (_conv_runs_microkernel.h). They share the vector helpers of
 * _conv_vec.h, and a (type, instruction set) may define those only once per translation
 * unit, so _conv_microkernel.h gathers the families and is instantiated in one pass. */
#ifndef FASTCNN_CONV_KERNELS_H
#define FASTCNN_CONV_KERNELS_H

#include "_dispatch.h"
#if FC_X86
#include <immintrin.h> /* the fused single-channel pooling's max */
#endif

/* The accumulator arrays are sized for the widest instance (AVX-512, one vector of
 * channels); each instance's own tile sizes are in its tables. */
#define FC_TILE_PIXELS_MAX 16
#define FC_TILE_CHANNELS 8

/* The taps of a forward tile. A tile pixel's receptive field starts at an element offset
 * into the input and at a position (row, col) of a grid of rows x cols positions. Tap t
 * reads cin values from that offset plus off[t], at position (row + row[t], col + col[t]),
 * against the packed weights of tap ids[t]; positions off the grid read zeros. */
typedef struct {
    int ntaps;
    long *off;
    int *row;
    int *col;
    int *ids;
    int rows, cols;
} fc_taps;

/* A tile's input rows at tap t, for the forward tiles of every element type: xs[i] =
 * x + pix_off[i] + the tap's offset, or `zeros` where pixel i's tap falls off the grid;
 * `any` becomes nonzero when some pixel's tap falls on it. (& rather than &&: no branch
 * to mispredict on the image's borders.) */
#define FC_TAP_ROWS(xs, any, x, zeros, pix_off, pix_pos, taps, t, tp)                    \
    do {                                                                                 \
        const long off_ = (taps)->off[t];                                                \
        const int row_ = (taps)->row[t], col_ = (taps)->col[t];                          \
        (any) = 0;                                                                       \
        _Pragma("GCC unroll 16") for (int i_ = 0; i_ < (tp); i_++)                       \
        {                                                                                \
            const int in_ = ((unsigned)((pix_pos)[i_] + row_) < (unsigned)(taps)->rows) \
                & ((unsigned)((pix_pos)[(tp) + i_] + col_) < (unsigned)(taps)->cols);    \
            (xs)[i_] = in_ ? (x) + (pix_off)[i_] + off_ : (zeros);                       \
            (any) |= in_;                                                                \
        }                                                                                \
    } while (0)

/* A forward tile's arguments after (nv, tp), written once for the kernel, its per-shape
 * instances and the table; see forward_tile in _conv_forward_microkernel.h. */
#define FC_CONV_TILE_PARAMS(T)                                                           \
    const T *x, const long *pix_off, const int *pix_pos, const fc_taps *taps, int cin,   \
        const T *zeros, const T *w, long ldw, const T *bias, int accumulate, int relu,   \
        T *const *out, int kcount
#define FC_CONV_TILE_ARGS                                                                \
    x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias, accumulate, relu, out, kcount

#define FC_CONV_TABLE_TYPES(S, T)                                                        \
    typedef struct {                                                                     \
        int lanes;          /* elements per vector */                                    \
        int tile_pixels[2]; /* pixels per tile at nv = 1 and nv = 2 vectors */          \
        void (*tile)(int nv, int tp, FC_CONV_TILE_PARAMS(T));                            \
        /* one vector of channels, kernel width kw at stride 1: 0 where it has none */    \
        int (*slide)(int kw, int tp, FC_CONV_TILE_PARAMS(T));                            \
    } fc_conv_forward_table_##S;                                                         \
    typedef struct {                                                                     \
        int tile_channels[2]; /* input channels per tile at nv = 1 and nv = 2 vectors */ \
        void (*tile)(int nv, int tc, const T *const *xrows, const T *const *dyrows,      \
                     const int *rowlen, int nrows, long xstride, long dystride, T *tile, \
                     long ldt);                                                          \
    } fc_conv_wgrad_table_##S;                                                           \
    typedef struct {                                                                     \
        int rows; /* output rows per forward call (or 1) */                              \
        int taps; /* most taps per weight_grad call */                                   \
        void (*forward)(int nr, const T *const *rows, int R, int S, long tap_step,       \
                        const T *wrows, long ldw, const T *bias, int relu, long L,       \
                        T *out, long ldo);                                               \
        void (*weight_grad)(int nt, const T *const *xrows, const T *const *dyrows,       \
                            int nrows, long tap_step, long L, T *sums, long lds);        \
        int pool_lanes; /* output columns per vector of forward_pool */                  \
        void (*forward_pool)(const T *x, long row_step, long tap_row, int R, int S,      \
                             int dw, const T *w, int K, const T *bias, int relu, long Wp, \
                             T *out);                                                    \
    } fc_conv_c1_table_##S;                                                              \
    typedef struct {                                                                     \
        void (*add_run)(T *dst, const T *src, long n);                                   \
        void (*masked_sum)(T *d, const T *y, double *acc, long n);                       \
        void (*expand_rows)(const T *src, long ld_src, long W, int K, T *dst,            \
                            long ld_dst, long n, long readable);                         \
    } fc_conv_runs_table_##S;
FC_CONV_TABLE_TYPES(f32, float)
FC_CONV_TABLE_TYPES(f64, double)
#undef FC_CONV_TABLE_TYPES

#define FC_MICROKERNEL "_conv_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_conv_forward_table)
FC_TABLE_LOOKUP(fc_conv_wgrad_table)
FC_TABLE_LOOKUP(fc_conv_c1_table)
FC_TABLE_LOOKUP(fc_conv_runs_table)

#endif
