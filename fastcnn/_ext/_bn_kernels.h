/* Batch-normalisation kernels for float and double at each instruction set, reached
 * through one table of function pointers per (type, instruction set); see _dispatch.h.
 *
 * Every entry works on n rows of `width` elements, then on one shorter row of `tail`
 * elements right after them (0: none): the rows of an (M, C) array taken `width / C` at
 * a time (see _batchnorm.pyx), so that the per-channel arrays (mean, scale, ...) are
 * `width` long, the channel's value repeated in every C-th place. Sums accumulate in
 * double into `width` elements of acc, which each kernel zeroes first. */
#ifndef FASTCNN_BN_KERNELS_H
#define FASTCNN_BN_KERNELS_H

#include <stdint.h>
#include "_dispatch.h"
#if FC_X86
#include <immintrin.h> /* the float-to-double conversions */
#endif

#define FC_BN_TABLE_TYPE(S, T)                                                           \
    typedef struct {                                                                     \
        int lanes; /* elements per vector */                                             \
        /* acc = sum of x */                                                             \
        void (*sum)(const T *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,         \
                    double *acc);                                                        \
        /* acc = sum of (x - mean)**2 */                                                 \
        void (*sq_dev)(const T *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,      \
                       const double *mean, double *acc);                                 \
        /* acc_dy = sum of g, acc_dyx = sum of g * (x - mean); g = dy, or with y given   \
         * (the output of a fused relu) dy where y > 0, else 0 */                       \
        void (*grad_sums)(const T *x, const T *dy, const T *y, Py_ssize_t n,             \
                          Py_ssize_t width, Py_ssize_t tail, const double *mean,         \
                          double *acc_dy, double *acc_dyx);                              \
        /* y = x * scale + shift, then max(y, 0) if relu */                              \
        void (*apply)(const T *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,       \
                      const T *scale, const T *shift, int relu, T *y);                   \
        /* dx = a * g + (b * (x - mean) + d), g as in grad_sums */                       \
        void (*backward)(const T *x, const T *dy, const T *y, Py_ssize_t n,              \
                         Py_ssize_t width, Py_ssize_t tail, const T *mean, const T *a,   \
                         const T *b, const T *d, T *dx);                                 \
    } fc_bn_table_##S;
FC_BN_TABLE_TYPE(f32, float)
FC_BN_TABLE_TYPE(f64, double)
#undef FC_BN_TABLE_TYPE

#define FC_MICROKERNEL "_bn_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_bn_table)

#endif
