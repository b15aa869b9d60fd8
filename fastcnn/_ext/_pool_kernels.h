/* Pooling kernels for float and double at each instruction set, reached through one table
 * of function pointers per (type, instruction set); see _dispatch.h. */
#ifndef FASTCNN_POOL_KERNELS_H
#define FASTCNN_POOL_KERNELS_H

#include <stdint.h>
#include "_dispatch.h"

/* A pool_h x pool_w window in an image of W x C: element k, in row-major order
 * (k = i * pool_w + j), lies offset[k] = (i * W + j) * C elements after the first, at the
 * flat in-image offset rel[k] = i * W + j; rel32 is rel as int32, valid when rel32_fits. */
typedef struct {
    Py_ssize_t n;
    Py_ssize_t *offset;
    int64_t *rel;
    int32_t *rel32;
    int rel32_fits;
} fc_pool_window;

#define FC_POOL_TABLE_TYPE(S, T)                                                         \
    typedef struct {                                                                     \
        int lanes;        /* elements per vector */                                      \
        int narrow_below; /* max_row wants scratch below this many channels */           \
        void (*max_row)(const T *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,    \
                        const fc_pool_window *w, T *scratch, T *y, int64_t *argmax,      \
                        int64_t base);                                                   \
        void (*avg_row)(const T *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,    \
                        const fc_pool_window *w, T count, T *y);                         \
        void (*avg_backward_row)(T *dx, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w, \
                                 const fc_pool_window *w, T count, const T *dy);         \
        void (*global_avg)(const T *x, Py_ssize_t n_pixels, Py_ssize_t C, T *y);         \
        void (*global_avg_backward_row)(const T *dy, Py_ssize_t W, Py_ssize_t C, T count, \
                                        T *dx);                                          \
        void (*l2_row)(const T *x, Py_ssize_t C, Py_ssize_t Wo, Py_ssize_t stride_w,     \
                       const fc_pool_window *w, T *y);                                   \
        void (*l2_backward_row)(T *dx, const T *x, Py_ssize_t C, Py_ssize_t Wo,          \
                                Py_ssize_t stride_w, const fc_pool_window *w, const T *y, \
                                const T *dy);                                            \
        void (*max_values_row)(const T *x, Py_ssize_t C, Py_ssize_t Wo,                   \
                               Py_ssize_t stride_w, const fc_pool_window *w, T *scratch,  \
                               T *y);                                                    \
        void (*max_backward_tiled_row)(T *dx, const T *dy, const uint8_t *pos,            \
                                       const T *pooled, Py_ssize_t Wo, Py_ssize_t C,      \
                                       int pool_w, int first);                           \
        void (*max_tiled_row)(const T *x, Py_ssize_t C, Py_ssize_t Wo, int pool_w,        \
                              const fc_pool_window *w, T *y, uint8_t *pos);              \
    } fc_pool_table_##S;
FC_POOL_TABLE_TYPE(f32, float)
FC_POOL_TABLE_TYPE(f64, double)
#undef FC_POOL_TABLE_TYPE

#define FC_MICROKERNEL "_pool_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_pool_table)

#endif
