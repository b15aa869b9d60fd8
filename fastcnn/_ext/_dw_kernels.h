/* Depthwise convolution kernels for float and double at each instruction set, reached
 * through one table of function pointers per (type, instruction set); see _dispatch.h.
 *
 * Depthwise: channel c of the output sees only channel c of the input, through its own
 * R x S filter; input and output have the same C channels (a depth multiplier M > 1 is
 * run on the input with each channel repeated M times, see fastcnn.ops._depthwise_plan).
 * Images are NHWC, weights (R, S, C). */
#ifndef FASTCNN_DW_KERNELS_H
#define FASTCNN_DW_KERNELS_H

#include "_dispatch.h"

/* The forward geometry, the same for the three passes: an H x W x C input, an Ho x Wo x C
 * output, output pixel (oh, ow) reading input pixels (oh * sh - pt + r * dh,
 * ow * sw - pl + s * dw) for r < R, s < S; positions outside the input are zero padding
 * (pt, pl may exceed what the output uses: bottom and right padding follow from Ho, Wo). */
typedef struct {
    Py_ssize_t H, W, C;
    Py_ssize_t Ho, Wo;
    int R, S;
    int sh, sw, dh, dw;
    int pt, pl;
} fc_dw_geometry;

#define FC_DW_TABLE_TYPE(S, T)                                                           \
    typedef struct {                                                                     \
        int lanes; /* elements per vector */                                             \
        /* y = output row oh of the image x (Wo x C), + bias (or 0), relu if asked */     \
        void (*forward_row)(const fc_dw_geometry *g, const T *x, const T *w,             \
                            const T *bias, int relu, Py_ssize_t oh, T *y);               \
        /* dx = input row ih (W x C) of the data gradient for the image's delta dy */    \
        void (*backward_data_row)(const fc_dw_geometry *g, const T *dy, const T *w,      \
                                  Py_ssize_t ih, T *dx);                                 \
        /* dw[t, c] = sum over n_images images of x * dy at tap t, for the channels of   \
         * the vector at c0 from c_from on (scratch: R * S * lanes elements) */          \
        void (*weight_grad)(const fc_dw_geometry *g, const T *x, const T *dy,            \
                            Py_ssize_t n_images, Py_ssize_t c0, Py_ssize_t c_from,       \
                            T *scratch, T *dw);                                          \
    } fc_dw_table_##S;
FC_DW_TABLE_TYPE(f32, float)
FC_DW_TABLE_TYPE(f64, double)
#undef FC_DW_TABLE_TYPE

#define FC_MICROKERNEL "_dw_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_dw_table)

#endif
