/* Depthwise convolution micro-kernels on NHWC rows, written once and instantiated by
 * _dw_kernels.h for each (element type, instruction set) through _dispatch_instances.h.
 *
 * The work is memory-bound (R * S multiply-adds per output value), so channels go in the
 * vector and the taps stay in registers: the forward pass (and the data gradient, the
 * same row correlation on the deltas) holds a channel block's R x S weight vectors and
 * computes a tile of up to 8 pixels with them, one input vector loaded per multiply-add,
 * every channel block of a tile before the next tile, so that memory is read and written
 * in order; the weight gradient holds R x S accumulators over a whole row, loading one
 * input vector per multiply-add beside one delta vector per pixel. Tap shapes up to 3 x 3
 * (5 x 5 with AVX-512's 32 registers) have functions of their own; others load each
 * weight as they use it. Channel blocks are whole vectors, the last one moved back to end
 * at C (overlapping the one before, which only computes the same values twice); below one
 * vector of channels the lanes past C are read and written through a zeroed copy.
 *
 * Padding is never materialised: a row correlation is given the input rows its taps
 * reach and the column offset of each tap, computes the columns whose taps all fall
 * inside the input with no checks, and checks each tap only at the borders.
 */
#define FC_L ((Py_ssize_t)(FC_VBYTES / sizeof(FC_T)))
#define FC_DW_INLINE static inline __attribute__((always_inline))
/* the most taps per axis held in registers */
#define FC_DW_MAX_FIXED 5
typedef FC_T FC_NAME(fc_dw_vec) __attribute__((vector_size(FC_VBYTES)));
#define FC_DW_VEC FC_NAME(fc_dw_vec)

/* The first n lanes of a vector (all when n >= FC_L), zeros after. */
FC_DW_INLINE FC_DW_VEC FC_NAME(fc_dw_load)(const FC_T *p, Py_ssize_t n)
{
    FC_DW_VEC v;
    if (n >= FC_L) {
        __builtin_memcpy(&v, p, sizeof v);
        return v;
    }
    FC_T lanes[FC_L];
    for (Py_ssize_t q = 0; q < FC_L; q++)
        lanes[q] = q < n ? p[q] : 0;
    __builtin_memcpy(&v, lanes, sizeof v);
    return v;
}

/* The first n lanes of v to p (all when n >= FC_L). */
FC_DW_INLINE void FC_NAME(fc_dw_store)(FC_T *p, FC_DW_VEC v, Py_ssize_t n)
{
    if (n >= FC_L) {
        __builtin_memcpy(p, &v, sizeof v);
        return;
    }
    FC_T lanes[FC_L];
    __builtin_memcpy(lanes, &v, sizeof v);
    for (Py_ssize_t q = 0; q < n; q++)
        p[q] = lanes[q];
}

/* max(v, 0), NaN kept */
FC_DW_INLINE FC_DW_VEC FC_NAME(fc_dw_relu)(FC_DW_VEC v)
{
    typedef __typeof__(v < v) mask;
    return (FC_DW_VEC)((mask)v & ~(v < 0));
}

#include "_dw_rows_microkernel.h"
#include "_dw_wgrad_microkernel.h"

static const FC_TNAME(fc_dw_table) FC_NAME(fc_dw_table) = {
    (int)FC_L,
    FC_NAME(fc_dw_forward_row),
    FC_NAME(fc_dw_backward_data_row),
    FC_NAME(fc_dw_weight_grad),
};

#undef FC_L
#undef FC_DW_INLINE
#undef FC_DW_MAX_FIXED
#undef FC_DW_VEC
