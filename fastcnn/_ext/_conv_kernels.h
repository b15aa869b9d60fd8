/* Instantiates the micro-kernels of _conv_microkernel.h for AVX-512, AVX2+FMA and a
 * portable 16-byte-vector baseline, in float and double, and picks one at run time.
 * One build runs on any x86-64 (no -march flag needed); other CPUs get the baseline. */
#ifndef FASTCNN_CONV_KERNELS_H
#define FASTCNN_CONV_KERNELS_H

#define FC_TILE_PIXELS_MAX 16
#define FC_TILE_CHANNELS 8

#include "_dispatch.h" /* FC_ISA_*, FC_X86, fc_cpu_isa() */

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

/* baseline: 16-byte vectors (SSE2 on x86-64, NEON elsewhere, scalar code otherwise) */
#define FC_T float
#define FC_VBYTES 16
#define FC_NAME(x) x##_f32_base
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME
#define FC_T double
#define FC_VBYTES 16
#define FC_NAME(x) x##_f64_base
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_T float
#define FC_VBYTES 32
#define FC_NAME(x) x##_f32_avx2
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME
#define FC_T double
#define FC_VBYTES 32
#define FC_NAME(x) x##_f64_avx2
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#define FC_T float
#define FC_VBYTES 64
#define FC_NAME(x) x##_f32_avx512
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME
#define FC_T double
#define FC_VBYTES 64
#define FC_NAME(x) x##_f64_avx512
#include "_conv_microkernel.h"
#undef FC_T
#undef FC_VBYTES
#undef FC_NAME
#pragma GCC pop_options
#endif

/* Elements per vector of the given instruction set and element size. */
static int fc_vector_length(int isa, int itemsize)
{
    int bytes = isa == FC_ISA_AVX512 ? 64 : isa == FC_ISA_AVX2 ? 32 : 16;
    return bytes / itemsize;
}

#if FC_X86
#define FC_DISPATCH(T, FN, ARGS)                          \
    switch (isa) {                                        \
        case FC_ISA_AVX512: FN##_##T##_avx512 ARGS; break; \
        case FC_ISA_AVX2: FN##_##T##_avx2 ARGS; break;     \
        default: FN##_##T##_base ARGS;                     \
    }
#else
#define FC_DISPATCH(T, FN, ARGS) FN##_##T##_base ARGS;
#endif

static void fc_forward_tile_f32(int isa, int nv, int tp, const float *x, const long *pix_off,
                                const int *pix_pos, const fc_taps *taps, int cin,
                                const float *zeros, const float *w, long ldw,
                                const float *bias, int accumulate, int relu, float *const *out,
                                int kcount)
{
    FC_DISPATCH(f32, forward_tile, (nv, tp, x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias,
                                    accumulate, relu, out, kcount))
}

static void fc_forward_tile_f64(int isa, int nv, int tp, const double *x, const long *pix_off,
                                const int *pix_pos, const fc_taps *taps, int cin,
                                const double *zeros, const double *w, long ldw,
                                const double *bias, int accumulate, int relu,
                                double *const *out, int kcount)
{
    FC_DISPATCH(f64, forward_tile, (nv, tp, x, pix_off, pix_pos, taps, cin, zeros, w, ldw, bias,
                                    accumulate, relu, out, kcount))
}

static void fc_weight_grad_tile_f32(int isa, int nv, int tc, const float *const *xrows,
                                    const float *const *dyrows, const int *rowlen, int nrows,
                                    long xstride, long dystride, float *tile, long ldt)
{
    FC_DISPATCH(f32, weight_grad_tile,
                (nv, tc, xrows, dyrows, rowlen, nrows, xstride, dystride, tile, ldt))
}

static void fc_weight_grad_tile_f64(int isa, int nv, int tc, const double *const *xrows,
                                    const double *const *dyrows, const int *rowlen, int nrows,
                                    long xstride, long dystride, double *tile, long ldt)
{
    FC_DISPATCH(f64, weight_grad_tile,
                (nv, tc, xrows, dyrows, rowlen, nrows, xstride, dystride, tile, ldt))
}

static void fc_masked_sum_f32(int isa, float *d, const float *y, double *acc, long n)
{
    FC_DISPATCH(f32, masked_sum, (d, y, acc, n))
}

static void fc_masked_sum_f64(int isa, double *d, const double *y, double *acc, long n)
{
    FC_DISPATCH(f64, masked_sum, (d, y, acc, n))
}

static void fc_add_run_f32(int isa, float *dst, const float *src, long n)
{
    FC_DISPATCH(f32, add_run, (dst, src, n))
}

static void fc_add_run_f64(int isa, double *dst, const double *src, long n)
{
    FC_DISPATCH(f64, add_run, (dst, src, n))
}

static void fc_forward_c1_f32(int isa, int nr, const float *const *rows, int R, int S,
                              long tap_step, const float *wrows, long ldw, const float *bias,
                              int relu, long L, float *out, long ldo)
{
    FC_DISPATCH(f32, forward_c1, (nr, rows, R, S, tap_step, wrows, ldw, bias, relu, L, out, ldo))
}

static void fc_forward_c1_f64(int isa, int nr, const double *const *rows, int R, int S,
                              long tap_step, const double *wrows, long ldw, const double *bias,
                              int relu, long L, double *out, long ldo)
{
    FC_DISPATCH(f64, forward_c1, (nr, rows, R, S, tap_step, wrows, ldw, bias, relu, L, out, ldo))
}

static void fc_weight_grad_c1_f32(int isa, int nt, const float *const *xrows,
                                  const float *const *dyrows, int nrows, long tap_step, long L,
                                  float *sums, long lds)
{
    FC_DISPATCH(f32, weight_grad_c1, (nt, xrows, dyrows, nrows, tap_step, L, sums, lds))
}

static void fc_weight_grad_c1_f64(int isa, int nt, const double *const *xrows,
                                  const double *const *dyrows, int nrows, long tap_step, long L,
                                  double *sums, long lds)
{
    FC_DISPATCH(f64, weight_grad_c1, (nt, xrows, dyrows, nrows, tap_step, L, sums, lds))
}

static void fc_expand_rows_f32(int isa, const float *src, long ld_src, long W, int K,
                               float *dst, long ld_dst, long n, long readable)
{
    FC_DISPATCH(f32, expand_rows, (src, ld_src, W, K, dst, ld_dst, n, readable))
}

static void fc_expand_rows_f64(int isa, const double *src, long ld_src, long W, int K,
                               double *dst, long ld_dst, long n, long readable)
{
    FC_DISPATCH(f64, expand_rows, (src, ld_src, W, K, dst, ld_dst, n, readable))
}

/* Output rows per forward_c1 call and taps per weight_grad_c1 call at an instruction set. */
static int fc_c1_rows(int isa)
{
    return isa == FC_ISA_AVX512 ? 4 : 2;
}

static int fc_c1_taps(int isa)
{
    return isa == FC_ISA_AVX512 ? 4 : 2;
}

/* Pixels per forward tile of the micro-kernel for this instruction set and nv. */
static int fc_tile_pixels(int isa, int itemsize, int nv)
{
    (void)itemsize; /* the register budget depends on the vector registers only */
#if FC_X86
    if (isa == FC_ISA_AVX512)
        return tile_pixels_f32_avx512(nv);
    if (isa == FC_ISA_AVX2)
        return tile_pixels_f32_avx2(nv);
#endif
    (void)isa;
    return tile_pixels_f32_base(nv);
}

#undef FC_DISPATCH
#endif
