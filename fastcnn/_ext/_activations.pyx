# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Activations and their gradients, softmax and softmax cross-entropy.

Elementwise kernels work on flat C-contiguous arrays (the caller ravels any shape) split
into fixed blocks; the row kernels give each row to one task. The arithmetic is in the
micro-kernels of ``_act_microkernel.h`` (exp, sigmoid and tanh as branch-free vector code,
Cephes' approximations within 2 ulp), one instance per (type, instruction set), reached
through the table of the instruction set detected at import or asked for with ``isa``.
No result depends on how the work is split: per-row losses go into an array that is
summed serially afterwards, so every output is bitwise the same for any thread count.

The arrays arrive validated by ``fastcnn.ops.activation``; nothing here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport log
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from ._dispatch cimport fc_cpu_isa, resolve_isa
from ._openmp cimport per_thread, threads_for

cdef extern from "_act_kernels.h" nogil:
    ctypedef struct fc_act_table_f32:
        int lanes
        void (*exp_nonpos)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*sigmoid)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*tanh)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*relu)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*relu_backward)(const float *dy, const float *y,
                              float *dx, Py_ssize_t n) noexcept nogil
        void (*sigmoid_backward)(const float *dy, const float *y,
                                 float *dx, Py_ssize_t n) noexcept nogil
        void (*tanh_backward)(const float *dy, const float *y,
                              float *dx, Py_ssize_t n) noexcept nogil
        void (*add)(const float *a, const float *b, float *y, Py_ssize_t n, int relu) noexcept nogil
    ctypedef struct fc_act_table_f64:
        int lanes
        void (*exp_nonpos)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*sigmoid)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*tanh)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*relu)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*relu_backward)(const double *dy, const double *y,
                              double *dx, Py_ssize_t n) noexcept nogil
        void (*sigmoid_backward)(const double *dy, const double *y,
                                 double *dx, Py_ssize_t n) noexcept nogil
        void (*tanh_backward)(const double *dy, const double *y,
                              double *dx, Py_ssize_t n) noexcept nogil
        void (*add)(const double *a, const double *b, double *y, Py_ssize_t n, int relu) noexcept nogil
    const fc_act_table_f32 *fc_act_table_f32_for(int isa)
    const fc_act_table_f64 *fc_act_table_f64_for(int isa)

ctypedef void (*_map_f32)(const float *, float *, Py_ssize_t) noexcept nogil
ctypedef void (*_map_f64)(const double *, double *, Py_ssize_t) noexcept nogil
ctypedef void (*_grad_f32)(const float *, const float *, float *, Py_ssize_t) noexcept nogil
ctypedef void (*_grad_f64)(const double *, const double *, double *,
                           Py_ssize_t) noexcept nogil

# The CPU's instruction set, detected once at import; a driver's isa=-1 means this one.
cdef int _DETECTED_ISA = fc_cpu_isa()


def cpu_isa():
    """The best SIMD level of this CPU: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return _DETECTED_ISA


def vector_length(int isa, int itemsize):
    """Elements per SIMD vector of the activation kernels at ``isa`` (``itemsize`` 4 or
    8)."""
    isa = resolve_isa(isa, _DETECTED_ISA)
    if itemsize == 4:
        return fc_act_table_f32_for(isa).lanes
    return fc_act_table_f64_for(isa).lanes


# Elements per parallel task of the elementwise kernels: big enough that a task is worth
# a thread, small enough that mid-sized arrays still use several.
cdef enum:
    BLOCK = 16384


cdef inline const void *_table(int isa, Py_ssize_t itemsize) except NULL:
    """The kernel table of ``isa`` (-1: the detected one) for the element size."""
    isa = resolve_isa(isa, _DETECTED_ISA)
    if itemsize == 4:
        return fc_act_table_f32_for(isa)
    return fc_act_table_f64_for(isa)


# The two block drivers take a kernel from a table as an untyped pointer, cast back to its
# type in a branch fused-type specialisation removes: one driver serves every kernel of
# each shape instead of one prange loop per function and type.

cdef void _map_blocks(const void *kernel, const floating *x, floating *y, Py_ssize_t size,
                      int n_threads) noexcept nogil:
    cdef Py_ssize_t block, n_blocks = (size + BLOCK - 1) // BLOCK
    for block in prange(n_blocks, schedule="static",
                        num_threads=threads_for(n_blocks, n_threads)):
        if floating is float:
            (<_map_f32> kernel)(x + block * BLOCK, y + block * BLOCK,
                                min(size - block * BLOCK, BLOCK))
        else:
            (<_map_f64> kernel)(x + block * BLOCK, y + block * BLOCK,
                                min(size - block * BLOCK, BLOCK))


cdef void _grad_blocks(const void *kernel, const floating *dy, const floating *y,
                       floating *dx, Py_ssize_t size, int n_threads) noexcept nogil:
    cdef Py_ssize_t block, n_blocks = (size + BLOCK - 1) // BLOCK
    for block in prange(n_blocks, schedule="static",
                        num_threads=threads_for(n_blocks, n_threads)):
        if floating is float:
            (<_grad_f32> kernel)(dy + block * BLOCK, y + block * BLOCK, dx + block * BLOCK,
                                 min(size - block * BLOCK, BLOCK))
        else:
            (<_grad_f64> kernel)(dy + block * BLOCK, y + block * BLOCK, dx + block * BLOCK,
                                 min(size - block * BLOCK, BLOCK))


def relu_forward(const floating[::1] x, floating[::1] y, int n_threads, int isa=-1):
    """y = max(x, 0); NaN stays NaN. y may be x. ``isa``: the SIMD level (-1: the best)."""
    cdef const void *table = _table(isa, sizeof(floating))
    if x.shape[0] == 0:
        return
    if floating is float:
        _map_blocks(<const void *> (<const fc_act_table_f32 *> table).relu, &x[0], &y[0],
                    x.shape[0], n_threads)
    else:
        _map_blocks(<const void *> (<const fc_act_table_f64 *> table).relu, &x[0], &y[0],
                    x.shape[0], n_threads)


def relu_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                  int n_threads, int isa=-1):
    """dx = dy where the forward output y > 0, else 0. dx may be dy."""
    cdef const void *table = _table(isa, sizeof(floating))
    if dy.shape[0] == 0:
        return
    if floating is float:
        _grad_blocks(<const void *> (<const fc_act_table_f32 *> table).relu_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)
    else:
        _grad_blocks(<const void *> (<const fc_act_table_f64 *> table).relu_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)


def add_forward(const floating[::1] a, const floating[::1] b, floating[::1] y, bint relu,
                int n_threads, int isa=-1):
    """y = a + b, then max(., 0) (NaN kept) when ``relu``. y may be a or b."""
    cdef const void *table = _table(isa, sizeof(floating))
    cdef Py_ssize_t block, size = a.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
    cdef const floating *pa
    cdef const floating *pb
    cdef floating *py
    if size == 0:
        return
    pa, pb, py = &a[0], &b[0], &y[0]
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        if floating is float:
            (<const fc_act_table_f32 *> table).add(
                <const float *> pa + block * BLOCK, <const float *> pb + block * BLOCK,
                <float *> py + block * BLOCK, min(size - block * BLOCK, BLOCK), relu)
        else:
            (<const fc_act_table_f64 *> table).add(
                <const double *> pa + block * BLOCK, <const double *> pb + block * BLOCK,
                <double *> py + block * BLOCK, min(size - block * BLOCK, BLOCK), relu)


def sigmoid_forward(const floating[::1] x, floating[::1] y, int n_threads, int isa=-1):
    """y = 1 / (1 + exp(-x)), from exp(-|x|): no overflow for large |x|."""
    cdef const void *table = _table(isa, sizeof(floating))
    if x.shape[0] == 0:
        return
    if floating is float:
        _map_blocks(<const void *> (<const fc_act_table_f32 *> table).sigmoid, &x[0], &y[0],
                    x.shape[0], n_threads)
    else:
        _map_blocks(<const void *> (<const fc_act_table_f64 *> table).sigmoid, &x[0], &y[0],
                    x.shape[0], n_threads)


def sigmoid_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                     int n_threads, int isa=-1):
    """dx = dy * y * (1 - y), y the forward output."""
    cdef const void *table = _table(isa, sizeof(floating))
    if dy.shape[0] == 0:
        return
    if floating is float:
        _grad_blocks(<const void *> (<const fc_act_table_f32 *> table).sigmoid_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)
    else:
        _grad_blocks(<const void *> (<const fc_act_table_f64 *> table).sigmoid_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)


def tanh_forward(const floating[::1] x, floating[::1] y, int n_threads, int isa=-1):
    """y = tanh(x)."""
    cdef const void *table = _table(isa, sizeof(floating))
    if x.shape[0] == 0:
        return
    if floating is float:
        _map_blocks(<const void *> (<const fc_act_table_f32 *> table).tanh, &x[0], &y[0],
                    x.shape[0], n_threads)
    else:
        _map_blocks(<const void *> (<const fc_act_table_f64 *> table).tanh, &x[0], &y[0],
                    x.shape[0], n_threads)


def tanh_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                  int n_threads, int isa=-1):
    """dx = dy * (1 - y)(1 + y), y the forward output, in double."""
    cdef const void *table = _table(isa, sizeof(floating))
    if dy.shape[0] == 0:
        return
    if floating is float:
        _grad_blocks(<const void *> (<const fc_act_table_f32 *> table).tanh_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)
    else:
        _grad_blocks(<const void *> (<const fc_act_table_f64 *> table).tanh_backward,
                     &dy[0], &y[0], &dx[0], dy.shape[0], n_threads)


cdef inline floating _row_max(const floating *row, Py_ssize_t k) noexcept nogil:
    # A NaN in the first column is kept; a later one reaches the output through exp.
    cdef floating m = row[0]
    cdef Py_ssize_t j
    for j in range(1, k):
        if row[j] > m:
            m = row[j]
    return m


def softmax_forward(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads,
                    int isa=-1):
    """out[i] = exp(logits[i] - max) / sum(exp(logits[i] - max)), the sum in double."""
    cdef:
        Py_ssize_t n_rows = logits.shape[0], k = logits.shape[1]
        Py_ssize_t i, j
        const floating *row
        floating *orow
        floating m
        double total
        const void *table = _table(isa, sizeof(floating))
    if n_rows == 0 or k == 0:
        return
    for i in prange(n_rows, schedule="static", nogil=True,
                    num_threads=threads_for(n_rows, n_threads)):
        row = &logits[i, 0]
        orow = &out[i, 0]
        m = _row_max(row, k)
        for j in range(k):
            orow[j] = row[j] - m
        if floating is float:
            (<const fc_act_table_f32 *> table).exp_nonpos(orow, orow, k)
        else:
            (<const fc_act_table_f64 *> table).exp_nonpos(orow, orow, k)
        total = 0
        for j in range(k):
            total = total + orow[j]
        for j in range(k):
            orow[j] = <floating> (orow[j] / total)


def softmax_cross_entropy_forward_backward(
    const floating[:, ::1] logits,        # IN (n, k)
    const int64_t[::1] labels,            # IN (n,), each in [0, k)
    floating[:, ::1] dlogits,             # OUT (n, k)
    double[::1] row_loss,                 # SCRATCH (n,)
    const double[::1] row_weight,         # IN (n,) or None: each row's share, summing to 1
    int n_threads,
    int isa=-1,
):
    """Weighted mean cross-entropy of softmax(logits) against labels, and its gradient.

    Row i counts with weight ``row_weight[i]`` (1 / n for every row when None):
    loss = sum_i row_weight[i] * loss_i and dlogits[i] = row_weight[i] * (p_i - onehot_i).
    Per row, in double: loss_i = log(sum(exp(z - max))) - (z[label] - max). The row losses
    are summed serially in row order after the parallel loop.
    """
    cdef:
        Py_ssize_t n_rows = logits.shape[0], k = logits.shape[1]
        Py_ssize_t i, j
        int threads = threads_for(n_rows, n_threads)
        const floating *row
        floating *drow
        double *shifted
        double *all_shifted
        const double *weight = NULL
        double m, total, p, scale
        double uniform = 1.0 / n_rows if n_rows else 0.0
        double loss = 0
        # the rows are exponentiated in double whatever the logits' type
        const fc_act_table_f64 *table = <const fc_act_table_f64 *> _table(isa, 8)
    if n_rows == 0:
        return 0.0
    if row_weight is not None:
        weight = &row_weight[0]
    # per thread: one row of exp(z - max) in double
    all_shifted = <double *> malloc(threads * per_thread(k, sizeof(double)) * sizeof(double))
    try:
        if all_shifted == NULL:
            raise MemoryError()
        for i in prange(n_rows, schedule="static", nogil=True, num_threads=threads):
            shifted = all_shifted + threadid() * per_thread(k, sizeof(double))
            scale = uniform if weight == NULL else weight[i]
            row = &logits[i, 0]
            drow = &dlogits[i, 0]
            m = _row_max(row, k)
            for j in range(k):
                shifted[j] = row[j] - m
            table.exp_nonpos(shifted, shifted, k)
            total = 0
            for j in range(k):
                total = total + shifted[j]
            for j in range(k):
                p = shifted[j] / total
                if j == labels[i]:
                    p = p - 1
                drow[j] = <floating> (p * scale)
            row_loss[i] = log(total) - (row[labels[i]] - m)
    finally:
        free(all_shifted)
    if weight == NULL:
        for i in range(n_rows):
            loss += row_loss[i]
        return loss / n_rows
    for i in range(n_rows):
        loss += row_loss[i] * weight[i]
    return loss
