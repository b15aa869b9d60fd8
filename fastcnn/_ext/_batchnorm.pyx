# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Batch normalisation over the rows of an (M, C) array: statistics, forward, backward.

An NHWC map is (N * H * W, C) rows, a dense batch (N, C). The rows are taken ``G`` at a
time as one long row of ``width = G * C`` elements (G > 1 when C is small, so that the
vectorised loops over a row are long; width a multiple of 16 below 64 channels), and the
long rows are split into a fixed number of chunks that depends only on M and C. Each
chunk's sums go, in double, into its own ``width`` accumulators; those are then added up
serially, chunk after chunk and within a chunk group after group. The order of every
addition is therefore fixed by the shape, and every result is bitwise the same for any
thread count.

The arithmetic is in the micro-kernels of ``_bn_microkernel.h``, one instance per (type,
instruction set), reached through the table of the instruction set detected at import or
asked for with ``isa``. The arrays arrive validated by ``fastcnn.ops.batchnorm``; nothing
here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from ._dispatch cimport fc_cpu_isa, resolve_isa
from ._openmp cimport per_thread, threads_for

cdef extern from "_bn_kernels.h" nogil:
    ctypedef struct fc_bn_table_f32:
        int lanes
        void (*sum)(const float *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                    double *acc) noexcept nogil
        void (*sq_dev)(const float *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                       const double *mean, double *acc) noexcept nogil
        void (*grad_sums)(const float *x, const float *dy, const float *y, Py_ssize_t n,
                          Py_ssize_t width, Py_ssize_t tail, const double *mean,
                          double *acc_dy, double *acc_dyx) noexcept nogil
        void (*apply)(const float *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                      const float *scale, const float *shift, int relu,
                      float *y) noexcept nogil
        void (*backward)(const float *x, const float *dy, const float *y, Py_ssize_t n,
                         Py_ssize_t width, Py_ssize_t tail, const float *mean,
                         const float *a, const float *b, const float *d,
                         float *dx) noexcept nogil
    ctypedef struct fc_bn_table_f64:
        int lanes
        void (*sum)(const double *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                    double *acc) noexcept nogil
        void (*sq_dev)(const double *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                       const double *mean, double *acc) noexcept nogil
        void (*grad_sums)(const double *x, const double *dy, const double *y, Py_ssize_t n,
                          Py_ssize_t width, Py_ssize_t tail, const double *mean,
                          double *acc_dy, double *acc_dyx) noexcept nogil
        void (*apply)(const double *x, Py_ssize_t n, Py_ssize_t width, Py_ssize_t tail,
                      const double *scale, const double *shift, int relu,
                      double *y) noexcept nogil
        void (*backward)(const double *x, const double *dy, const double *y, Py_ssize_t n,
                         Py_ssize_t width, Py_ssize_t tail, const double *mean,
                         const double *a, const double *b, const double *d,
                         double *dx) noexcept nogil
    const fc_bn_table_f32 *fc_bn_table_f32_for(int isa)
    const fc_bn_table_f64 *fc_bn_table_f64_for(int isa)

# The CPU's instruction set, detected once at import; a driver's isa=-1 means this one.
cdef int _DETECTED_ISA = fc_cpu_isa()

cdef enum:
    # Chunks of rows summed separately, at most: enough for every core of a big machine,
    # few enough that adding them up is nothing...
    MAX_CHUNKS = 64
    # ... each of at least this many elements (but one): below that, adding up a chunk's
    # accumulators costs about as much as filling them, and a thread is not worth it.
    MIN_CHUNK = 8192
    # Long rows are at least this many elements...
    MIN_WIDTH = 64
    # ... and, below MIN_WIDTH channels, a multiple of this many (an AVX-512 vector of
    # floats), so that the vectorised loops over a row have no scalar remainder.
    WIDTH_MULTIPLE = 16


cdef struct Layout:
    Py_ssize_t rows        # M
    Py_ssize_t C
    Py_ssize_t G           # rows per long row
    Py_ssize_t width       # G * C
    Py_ssize_t n_long      # M // G long rows ...
    Py_ssize_t tail        # ... then (M % G) * C elements, given to the last chunk
    Py_ssize_t n_chunks
    Py_ssize_t stride      # doubles between two chunks' accumulators


cdef Py_ssize_t _gcd(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    while b:
        a, b = b, a % b
    return a


cdef Layout _layout(Py_ssize_t rows, Py_ssize_t C) noexcept nogil:
    """How (rows, C) is split; C >= 1. Depends on the shape only."""
    cdef Layout L
    cdef Py_ssize_t step
    L.rows = rows
    L.C = C
    L.G = 1
    if C < MIN_WIDTH:
        step = WIDTH_MULTIPLE // _gcd(C, WIDTH_MULTIPLE)      # G * C multiple of 16
        L.G = ((MIN_WIDTH + C - 1) // C + step - 1) // step * step
    L.width = L.G * C
    L.n_long = rows // L.G
    L.tail = (rows % L.G) * C
    L.n_chunks = max(min(<Py_ssize_t> MAX_CHUNKS, L.n_long * L.width // MIN_CHUNK), 1)
    L.stride = per_thread(L.width, sizeof(double))
    return L


def layout(Py_ssize_t rows, Py_ssize_t channels):
    """(rows per long row, long-row width, number of chunks) for an (rows, channels)
    array: the split every kernel here uses, fixed by the shape."""
    cdef Layout L = _layout(rows, channels)
    return L.G, L.width, L.n_chunks


cdef inline Py_ssize_t _first(const Layout *L, Py_ssize_t k) noexcept nogil:
    """The first long row of chunk k (k == n_chunks: the end)."""
    return k * L.n_long // L.n_chunks


cdef inline Py_ssize_t _tail(const Layout *L, Py_ssize_t k) noexcept nogil:
    return L.tail if k == L.n_chunks - 1 else 0


cdef inline const floating *_maybe(const floating *p, Py_ssize_t offset) noexcept nogil:
    """p + offset, or NULL for NULL (an array not given)."""
    if p == NULL:
        return NULL
    return p + offset


cdef void _add_chunks(const Layout *L, const double *acc, double *out) noexcept nogil:
    """out[c] = every chunk's accumulators of channel c: chunks in order, and in each the
    G places of the channel in order (the loop over c innermost, where it vectorises)."""
    cdef Py_ssize_t c, k, g
    cdef const double *part
    for c in range(L.C):
        out[c] = 0
    for k in range(L.n_chunks):
        for g in range(L.G):
            part = acc + k * L.stride + g * L.C
            for c in range(L.C):
                out[c] = out[c] + part[c]


cdef double *_doubles(Py_ssize_t n) except NULL:
    cdef double *p = <double *> malloc(max(n, 1) * sizeof(double))
    if p == NULL:
        raise MemoryError()
    return p


cdef void _statistics(const floating *x, const Layout *L, double *acc, double *mean_long,
                      double *mean, double *var, int isa, int n_threads) noexcept nogil:
    """mean and biased variance of every channel, two passes: the sum, then the sum of
    squared deviations from the mean. acc: n_chunks * stride doubles; mean_long: width."""
    cdef Py_ssize_t k, j, c
    cdef int threads = threads_for(L.n_chunks, n_threads)
    cdef const fc_bn_table_f32 *k32 = NULL
    cdef const fc_bn_table_f64 *k64 = NULL
    if floating is float:
        k32 = fc_bn_table_f32_for(isa)
    else:
        k64 = fc_bn_table_f64_for(isa)
    for k in prange(L.n_chunks, schedule="static", num_threads=threads):
        if floating is float:
            k32.sum(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                    _tail(L, k), acc + k * L.stride)
        else:
            k64.sum(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                    _tail(L, k), acc + k * L.stride)
    _add_chunks(L, acc, mean)
    for c in range(L.C):
        mean[c] = mean[c] / L.rows
    for j in range(L.width):
        mean_long[j] = mean[j % L.C]
    for k in prange(L.n_chunks, schedule="static", num_threads=threads):
        if floating is float:
            k32.sq_dev(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                       _tail(L, k), mean_long, acc + k * L.stride)
        else:
            k64.sq_dev(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                       _tail(L, k), mean_long, acc + k * L.stride)
    _add_chunks(L, acc, var)
    for c in range(L.C):
        var[c] = var[c] / L.rows


cdef void _apply(const floating *x, const Layout *L, const floating *scale_long,
                 const floating *shift_long, bint relu, floating *y, int isa,
                 int n_threads) noexcept nogil:
    cdef Py_ssize_t k
    cdef const fc_bn_table_f32 *k32 = NULL
    cdef const fc_bn_table_f64 *k64 = NULL
    if floating is float:
        k32 = fc_bn_table_f32_for(isa)
    else:
        k64 = fc_bn_table_f64_for(isa)
    for k in prange(L.n_chunks, schedule="static",
                    num_threads=threads_for(L.n_chunks, n_threads)):
        if floating is float:
            k32.apply(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                      _tail(L, k), scale_long, shift_long, relu, y + _first(L, k) * L.width)
        else:
            k64.apply(x + _first(L, k) * L.width, _first(L, k + 1) - _first(L, k), L.width,
                      _tail(L, k), scale_long, shift_long, relu, y + _first(L, k) * L.width)


def batch_norm_statistics(
    const floating[:, ::1] x,             # IN (M, C), M >= 1, C >= 1
    double[::1] mean,                     # OUT (C,)
    double[::1] var,                      # OUT (C,), biased (divided by M)
    int n_threads, int isa=-1,
):
    """Mean and biased variance of each column of x, in double, two-pass."""
    cdef:
        Layout L = _layout(x.shape[0], x.shape[1])
        double *acc = NULL
        double *mean_long = NULL
    isa = resolve_isa(isa, _DETECTED_ISA)
    try:
        acc = _doubles(L.n_chunks * L.stride)
        mean_long = _doubles(L.width)
        with nogil:
            _statistics(&x[0, 0], &L, acc, mean_long, &mean[0], &var[0], isa, n_threads)
    finally:
        free(acc)
        free(mean_long)


def batch_norm_apply(
    const floating[:, ::1] x,             # IN (M, C), M >= 1, C >= 1
    const floating[::1] scale,            # IN (C,)
    const floating[::1] shift,            # IN (C,)
    floating[:, ::1] y,                   # OUT (M, C), not x
    bint relu, int n_threads, int isa=-1,
):
    """y = x * scale + shift per column, then max(y, 0) if ``relu`` (NaN kept)."""
    cdef:
        Layout L = _layout(x.shape[0], x.shape[1])
        floating *scale_long = NULL
        floating *shift_long = NULL
        Py_ssize_t j
    isa = resolve_isa(isa, _DETECTED_ISA)
    try:
        scale_long = <floating *> _doubles(L.width)
        shift_long = <floating *> _doubles(L.width)
        for j in range(L.width):
            scale_long[j] = scale[j % L.C]
            shift_long[j] = shift[j % L.C]
        with nogil:
            _apply(&x[0, 0], &L, scale_long, shift_long, relu, &y[0, 0], isa, n_threads)
    finally:
        free(scale_long)
        free(shift_long)


def batch_norm_forward_train(
    const floating[:, ::1] x,             # IN (M, C), M >= 1, C >= 1
    const floating[::1] gamma,            # IN (C,)
    const floating[::1] beta,             # IN (C,)
    floating[::1] running_mean,           # INOUT (C,) or None
    floating[::1] running_var,            # INOUT (C,) or None; with running_mean; M >= 2
    double momentum, double epsilon, bint relu,
    floating[:, ::1] y,                   # OUT (M, C), not x
    double[::1] mean,                     # OUT (C,) the batch mean
    double[::1] inv_std,                  # OUT (C,) 1 / sqrt(biased batch variance + eps)
    int n_threads, int isa=-1,
):
    """y = (x - mean) / sqrt(var + epsilon) * gamma + beta with the batch's statistics,
    applied as x * scale + shift (scale = gamma * inv_std, shift = beta - mean * scale,
    computed in double, then rounded to x's type); then max(y, 0) if ``relu``.

    The running statistics, when given, become ``(1 - momentum) * running + momentum *
    batch``, the variance the unbiased one (times M / (M - 1)), computed in double.
    """
    cdef:
        Layout L = _layout(x.shape[0], x.shape[1])
        Py_ssize_t M = x.shape[0], C = x.shape[1], c, j
        double *acc = NULL
        double *mean_long = NULL
        double *var = NULL
        floating *scale_long = NULL
        floating *shift_long = NULL
        double s
        bint update = running_mean is not None
        floating *rm = NULL
        floating *rv = NULL
    isa = resolve_isa(isa, _DETECTED_ISA)
    if update:
        rm = &running_mean[0]
        rv = &running_var[0]
    try:
        acc = _doubles(L.n_chunks * L.stride)
        mean_long = _doubles(L.width)
        var = _doubles(C)
        scale_long = <floating *> _doubles(L.width)
        shift_long = <floating *> _doubles(L.width)
        with nogil:
            _statistics(&x[0, 0], &L, acc, mean_long, &mean[0], var, isa, n_threads)
            for c in range(C):
                inv_std[c] = 1.0 / sqrt(var[c] + epsilon)
                if update:
                    rm[c] = <floating> ((1.0 - momentum) * rm[c] + momentum * mean[c])
                    rv[c] = <floating> ((1.0 - momentum) * rv[c]
                                        + momentum * (var[c] * M / (M - 1)))
            for j in range(L.width):
                c = j % C
                s = gamma[c] * inv_std[c]
                scale_long[j] = <floating> s
                shift_long[j] = <floating> (beta[c] - mean[c] * s)
            _apply(&x[0, 0], &L, scale_long, shift_long, relu, &y[0, 0], isa, n_threads)
    finally:
        free(acc)
        free(mean_long)
        free(var)
        free(scale_long)
        free(shift_long)


def batch_norm_backward(
    const floating[:, ::1] x,             # IN (M, C), the forward input, M >= 1, C >= 1
    const floating[:, ::1] dy,            # IN (M, C)
    const floating[:, ::1] y,             # IN (M, C) the output of a fused relu, or None
    const floating[::1] gamma,            # IN (C,)
    const double[::1] mean,               # IN (C,) the forward's batch mean
    const double[::1] inv_std,            # IN (C,) the forward's 1 / sqrt(var + eps)
    floating[:, ::1] dx,                  # OUT (M, C), or None: no data gradient
    floating[::1] dgamma,                 # OUT (C,)
    floating[::1] dbeta,                  # OUT (C,)
    int n_threads, int isa=-1,
):
    """Gradients of the training forward pass (batch statistics).

    With g = dy (masked by y > 0 when the relu's output y is given), sums in double:
    dbeta = sum(g), dgamma = inv_std * sum(g * (x - mean)), and with xhat = (x - mean) *
    inv_std recomputed on the fly, dx = gamma * inv_std / M * (M * g - dbeta - xhat *
    dgamma), applied as a * g + (b * (x - mean) + d) with a, b, d per channel in double,
    rounded to x's type.
    """
    cdef:
        Layout L = _layout(x.shape[0], x.shape[1])
        Py_ssize_t M = x.shape[0], C = x.shape[1], c, j, k
        int threads = threads_for(L.n_chunks, n_threads)
        double *acc_dy = NULL
        double *acc_dyx = NULL
        double *mean_long = NULL
        double *sum_dy = NULL
        double *sum_dyx = NULL
        floating *coef = NULL
        floating *mean_t
        floating *a
        floating *b
        floating *d
        double s, dg
        const floating *xp = &x[0, 0]
        const floating *dyp = &dy[0, 0]
        const floating *yp = NULL
        floating *dxp = NULL
        const fc_bn_table_f32 *k32 = NULL
        const fc_bn_table_f64 *k64 = NULL
    isa = resolve_isa(isa, _DETECTED_ISA)
    if floating is float:
        k32 = fc_bn_table_f32_for(isa)
    else:
        k64 = fc_bn_table_f64_for(isa)
    if y is not None:
        yp = &y[0, 0]
    if dx is not None:
        dxp = &dx[0, 0]
    try:
        acc_dy = _doubles(L.n_chunks * L.stride)
        acc_dyx = _doubles(L.n_chunks * L.stride)
        mean_long = _doubles(L.width)
        sum_dy = _doubles(C)
        sum_dyx = _doubles(C)
        coef = <floating *> _doubles(4 * L.width)
        mean_t = coef
        a = coef + L.width
        b = coef + 2 * L.width
        d = coef + 3 * L.width
        with nogil:
            for j in range(L.width):
                mean_long[j] = mean[j % C]
            for k in prange(L.n_chunks, schedule="static", num_threads=threads):
                if floating is float:
                    k32.grad_sums(xp + _first(&L, k) * L.width,
                                  dyp + _first(&L, k) * L.width,
                                  _maybe(yp, _first(&L, k) * L.width),
                                  _first(&L, k + 1) - _first(&L, k), L.width, _tail(&L, k),
                                  mean_long, acc_dy + k * L.stride, acc_dyx + k * L.stride)
                else:
                    k64.grad_sums(xp + _first(&L, k) * L.width,
                                  dyp + _first(&L, k) * L.width,
                                  _maybe(yp, _first(&L, k) * L.width),
                                  _first(&L, k + 1) - _first(&L, k), L.width, _tail(&L, k),
                                  mean_long, acc_dy + k * L.stride, acc_dyx + k * L.stride)
            _add_chunks(&L, acc_dy, sum_dy)
            _add_chunks(&L, acc_dyx, sum_dyx)
            for c in range(C):
                dbeta[c] = <floating> sum_dy[c]
                dgamma[c] = <floating> (sum_dyx[c] * inv_std[c])
            if dxp != NULL:
                for j in range(L.width):
                    c = j % C
                    s = gamma[c] * inv_std[c]
                    dg = sum_dyx[c] * inv_std[c]
                    mean_t[j] = <floating> mean[c]
                    a[j] = <floating> s
                    b[j] = <floating> (-s * inv_std[c] * dg / M)
                    d[j] = <floating> (-s * sum_dy[c] / M)
                for k in prange(L.n_chunks, schedule="static", num_threads=threads):
                    if floating is float:
                        k32.backward(xp + _first(&L, k) * L.width,
                                     dyp + _first(&L, k) * L.width,
                                     _maybe(yp, _first(&L, k) * L.width),
                                     _first(&L, k + 1) - _first(&L, k), L.width,
                                     _tail(&L, k), mean_t, a, b, d,
                                     dxp + _first(&L, k) * L.width)
                    else:
                        k64.backward(xp + _first(&L, k) * L.width,
                                     dyp + _first(&L, k) * L.width,
                                     _maybe(yp, _first(&L, k) * L.width),
                                     _first(&L, k + 1) - _first(&L, k), L.width,
                                     _tail(&L, k), mean_t, a, b, d,
                                     dxp + _first(&L, k) * L.width)
    finally:
        free(acc_dy)
        free(acc_dyx)
        free(mean_long)
        free(sum_dy)
        free(sum_dyx)
        free(coef)
