/* Activation kernels for float and double at each instruction set, reached through one
 * table of function pointers per (type, instruction set); see _dispatch.h. */
#ifndef FASTCNN_ACT_KERNELS_H
#define FASTCNN_ACT_KERNELS_H

#include <stdint.h>
#include "_dispatch.h"

/* y may be x, and dx may be dy, in every entry; add's y may be a or b. */
#define FC_ACT_TABLE_TYPE(S, T)                                                          \
    typedef struct {                                                                     \
        int lanes; /* elements per vector */                                             \
        void (*exp_nonpos)(const T *x, T *y, Py_ssize_t n); /* exp, for x <= 0 or NaN */ \
        void (*sigmoid)(const T *x, T *y, Py_ssize_t n);                                 \
        void (*tanh)(const T *x, T *y, Py_ssize_t n);                                    \
        void (*relu)(const T *x, T *y, Py_ssize_t n);                                    \
        void (*relu_backward)(const T *dy, const T *y, T *dx, Py_ssize_t n);             \
        void (*sigmoid_backward)(const T *dy, const T *y, T *dx, Py_ssize_t n);          \
        void (*tanh_backward)(const T *dy, const T *y, T *dx, Py_ssize_t n);             \
        void (*add)(const T *a, const T *b, T *y, Py_ssize_t n, int relu);                \
    } fc_act_table_##S;
FC_ACT_TABLE_TYPE(f32, float)
FC_ACT_TABLE_TYPE(f64, double)
#undef FC_ACT_TABLE_TYPE

#define FC_MICROKERNEL "_act_microkernel.h"
#include "_dispatch_instances.h"
FC_TABLE_LOOKUP(fc_act_table)

#endif
