# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Activations and their gradients, softmax and softmax cross-entropy.

Elementwise kernels work on flat C-contiguous arrays (the caller ravels any shape) split
into fixed blocks; the row kernels give each row to one task. exp, sigmoid and tanh are
branch-free vector code (Cephes' approximations, within 2 ulp) in the C block below.
No result depends on how the work is split: per-row losses go into an array that is
summed serially afterwards, so every output is bitwise the same for any thread count.

The arrays arrive validated by ``fastcnn._functional_act``; nothing here checks them again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport log
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from ._openmp cimport per_thread, threads_for

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Vectorised exp / sigmoid / tanh with GCC vector extensions (16-byte vectors: SSE2 on
       any x86-64, NEON on arm64), about 5x faster than scalar libm calls. The compiler's
       auto-vectoriser cannot be relied on here: selects that feed arithmetic are not
       if-converted under the default -ftrapping-math, and double selects need AVX2. Every
       element goes through the same vector code, tails included (padded into a full vector),
       so results do not depend on an element's position or on how the array is split
       between threads. */
    typedef float fc_f32x4 __attribute__((vector_size(16)));
    typedef int32_t fc_i32x4 __attribute__((vector_size(16)));
    typedef double fc_f64x2 __attribute__((vector_size(16)));
    typedef int64_t fc_i64x2 __attribute__((vector_size(16)));

    /* mask ? a : b, mask lanes all ones or all zeros */
    static inline fc_f32x4 fc_select_f32x4(fc_i32x4 mask, fc_f32x4 a, fc_f32x4 b) {
        return (fc_f32x4) (((fc_i32x4) a & mask) | ((fc_i32x4) b & ~mask));
    }
    static inline fc_f64x2 fc_select_f64x2(fc_i64x2 mask, fc_f64x2 a, fc_f64x2 b) {
        return (fc_f64x2) (((fc_i64x2) a & mask) | ((fc_i64x2) b & ~mask));
    }

    /* 2**n for integral n in [-126, 127] / [-1022, 1023]: n + bias lands in the low mantissa
       bits of 2**23 + n + bias (2**52 + ...), and a shift moves it into the exponent field. */
    static inline fc_f32x4 fc_pow2_f32x4(fc_f32x4 n) {
        return (fc_f32x4) ((fc_i32x4) (n + (127.0f + 8388608.0f)) << 23);
    }
    static inline fc_f64x2 fc_pow2_f64x2(fc_f64x2 n) {
        return (fc_f64x2) ((fc_i64x2) (n + (1023.0 + 4503599627370496.0)) << 52);
    }

    /* exp(t) for t <= 0 and NaN. Cephes expf: t = n ln2 + r with |r| <= ln2/2, a degree-7
       polynomial in r; within 1 ulp, subnormal results included (2**n applied as two factors,
       so one rounding). Rounding to an integer adds and subtracts 1.5 * 2**23. */
    static inline fc_f32x4 fc_exp_nonpos_f32x4(fc_f32x4 t) {
        const fc_f32x4 lowest = {-104.0f, -104.0f, -104.0f, -104.0f}; /* exp rounds to 0 below */
        t = fc_select_f32x4(t < lowest, lowest, t);
        fc_f32x4 n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        fc_f32x4 r = t - n * 0.693359375f;
        r = r + n * 2.12194440e-4f;
        fc_f32x4 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * (r * r) + r + 1.0f;
        fc_f32x4 n1 = (n * 0.5f + 12582912.0f) - 12582912.0f;
        return p * fc_pow2_f32x4(n1) * fc_pow2_f32x4(n - n1);
    }
    /* Cephes exp: rational approximation in r; within 2 ulp. */
    static inline fc_f64x2 fc_exp_nonpos_f64x2(fc_f64x2 t) {
        const fc_f64x2 lowest = {-746.0, -746.0};
        t = fc_select_f64x2(t < lowest, lowest, t);
        fc_f64x2 n = (t * 1.4426950408889634074 + 6755399441055744.0) - 6755399441055744.0;
        fc_f64x2 r = t - n * 6.93145751953125e-1;
        r = r - n * 1.42860682030941723212e-6;
        fc_f64x2 rr = r * r;
        fc_f64x2 px = ((rr * 1.26177193074810590878e-4 + 3.02994407707441961300e-2) * rr
                       + 9.99999999999999999910e-1) * r;
        fc_f64x2 q = ((rr * 3.00198505138664455042e-6 + 2.52448340349684104192e-3) * rr
                      + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
        fc_f64x2 p = 1.0 + 2.0 * (px / (q - px));
        fc_f64x2 n1 = (n * 0.5 + 6755399441055744.0) - 6755399441055744.0;
        return p * fc_pow2_f64x2(n1) * fc_pow2_f64x2(n - n1);
    }

    /* sigmoid from e = exp(-|x|) only: 1 / (1 + e) for x >= 0, e / (1 + e) below. */
    static inline fc_f32x4 fc_sigmoid_f32x4(fc_f32x4 x) {
        const fc_f32x4 zero = {0}, one = {1.0f, 1.0f, 1.0f, 1.0f};
        fc_f32x4 a = (fc_f32x4) ((fc_i32x4) x & 0x7fffffff);
        fc_f32x4 e = fc_exp_nonpos_f32x4(-a);
        return fc_select_f32x4(x >= zero, one, e) / (1.0f + e);
    }
    static inline fc_f64x2 fc_sigmoid_f64x2(fc_f64x2 x) {
        const fc_f64x2 zero = {0}, one = {1.0, 1.0};
        fc_f64x2 a = (fc_f64x2) ((fc_i64x2) x & 0x7fffffffffffffffLL);
        fc_f64x2 e = fc_exp_nonpos_f64x2(-a);
        return fc_select_f64x2(x >= zero, one, e) / (1.0 + e);
    }

    /* tanh: Cephes' odd approximation below |x| = 0.625, else (1 - e) / (1 + e) with
       e = exp(-2|x|) <= 0.29 (no cancellation, no overflow); the sign put back on bits. */
    static inline fc_f32x4 fc_tanh_f32x4(fc_f32x4 x) {
        const fc_f32x4 split = {0.625f, 0.625f, 0.625f, 0.625f};
        fc_i32x4 sign = (fc_i32x4) x & (int32_t) 0x80000000u;
        fc_f32x4 a = (fc_f32x4) ((fc_i32x4) x & 0x7fffffff);
        fc_f32x4 z = a * a;
        fc_f32x4 small = ((((z * -5.70498872745e-3f + 2.06390887954e-2f) * z - 5.37397155531e-2f)
                           * z + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * a + a;
        fc_f32x4 e = fc_exp_nonpos_f32x4(-2.0f * a);
        fc_f32x4 large = (1.0f - e) / (1.0f + e);
        return (fc_f32x4) ((fc_i32x4) fc_select_f32x4(a < split, small, large) | sign);
    }
    static inline fc_f64x2 fc_tanh_f64x2(fc_f64x2 x) {
        const fc_f64x2 split = {0.625, 0.625};
        fc_i64x2 sign = (fc_i64x2) x & (int64_t) 0x8000000000000000ull;
        fc_f64x2 a = (fc_f64x2) ((fc_i64x2) x & 0x7fffffffffffffffLL);
        fc_f64x2 z = a * a;
        fc_f64x2 p = (z * -9.64399179425052238628e-1 - 9.92877231001918586564e1) * z
                     - 1.61468768441708447952e3;
        fc_f64x2 q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
                     + 4.84406305325125486048e3;
        fc_f64x2 small = a + a * z * (p / q);
        fc_f64x2 e = fc_exp_nonpos_f64x2(-2.0 * a);
        fc_f64x2 large = (1.0 - e) / (1.0 + e);
        return (fc_f64x2) ((fc_i64x2) fc_select_f64x2(a < split, small, large) | sign);
    }

    /* y[i] = f(x[i]) over n elements; x and y may be the same array. */
    #define FC_MAP(name, T, V, W, f)                                        \
        static void name(const T *x, T *y, Py_ssize_t n) {                 \
            Py_ssize_t i = 0;                                               \
            V v;                                                            \
            for (; i + W <= n; i += W) {                                    \
                memcpy(&v, x + i, sizeof v);                                \
                v = f(v);                                                   \
                memcpy(y + i, &v, sizeof v);                                \
            }                                                               \
            if (i < n) {                                                    \
                memset(&v, 0, sizeof v);                                    \
                memcpy(&v, x + i, (n - i) * sizeof(T));                     \
                v = f(v);                                                   \
                memcpy(y + i, &v, (n - i) * sizeof(T));                     \
            }                                                               \
        }
    FC_MAP(fc_exp_nonpos_f32, float, fc_f32x4, 4, fc_exp_nonpos_f32x4)
    FC_MAP(fc_exp_nonpos_f64, double, fc_f64x2, 2, fc_exp_nonpos_f64x2)
    FC_MAP(fc_sigmoid_f32, float, fc_f32x4, 4, fc_sigmoid_f32x4)
    FC_MAP(fc_sigmoid_f64, double, fc_f64x2, 2, fc_sigmoid_f64x2)
    FC_MAP(fc_tanh_f32, float, fc_f32x4, 4, fc_tanh_f32x4)
    FC_MAP(fc_tanh_f64, double, fc_f64x2, 2, fc_tanh_f64x2)
    """
    void fc_exp_nonpos_f32(const float *x, float *y, Py_ssize_t n) noexcept nogil
    void fc_exp_nonpos_f64(const double *x, double *y, Py_ssize_t n) noexcept nogil
    void fc_sigmoid_f32(const float *x, float *y, Py_ssize_t n) noexcept nogil
    void fc_sigmoid_f64(const double *x, double *y, Py_ssize_t n) noexcept nogil
    void fc_tanh_f32(const float *x, float *y, Py_ssize_t n) noexcept nogil
    void fc_tanh_f64(const double *x, double *y, Py_ssize_t n) noexcept nogil

# Elements per parallel task of the elementwise kernels: big enough that a task is worth
# a thread, small enough that mid-sized arrays still use several.
cdef enum:
    BLOCK = 16384


cdef inline void _exp_nonpositive(const floating *x, floating *y,
                                  Py_ssize_t n) noexcept nogil:
    # y = exp(x) for x <= 0 (or NaN); y may be x
    if floating is float:
        fc_exp_nonpos_f32(x, y, n)
    else:
        fc_exp_nonpos_f64(x, y, n)


cdef inline void _relu_block(const floating *x, floating *y, Py_ssize_t n) noexcept nogil:
    # A plain pointer loop gcc vectorises (memoryview indexing in the loop kept it scalar).
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = 0 if x[i] < 0 else x[i]


cdef inline void _relu_backward_block(const floating *dy, const floating *y, floating *dx,
                                      Py_ssize_t n) noexcept nogil:
    # Both loads unconditional, so the choice compiles to a vector select, not a branch
    # that half of the elements mispredict.
    cdef Py_ssize_t i
    cdef floating d
    for i in range(n):
        d = dy[i]
        dx[i] = d if y[i] > 0 else 0


def relu_forward(const floating[::1] x, floating[::1] y, int n_threads):
    """y = max(x, 0); NaN stays NaN. y may be x."""
    cdef:
        Py_ssize_t size = x.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block
    if size == 0:
        return
    cdef const floating *px = &x[0]
    cdef floating *py = &y[0]
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        _relu_block(px + block * BLOCK, py + block * BLOCK,
                    min(size - block * BLOCK, BLOCK))


def relu_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                  int n_threads):
    """dx = dy where the forward output y > 0, else 0. dx may be dy."""
    cdef:
        Py_ssize_t size = dy.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block
    if size == 0:
        return
    cdef const floating *pdy = &dy[0]
    cdef const floating *py = &y[0]
    cdef floating *pdx = &dx[0]
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        _relu_backward_block(pdy + block * BLOCK, py + block * BLOCK, pdx + block * BLOCK,
                             min(size - block * BLOCK, BLOCK))


def sigmoid_forward(const floating[::1] x, floating[::1] y, int n_threads):
    """y = 1 / (1 + exp(-x)), from exp(-|x|): no overflow for large |x|."""
    cdef:
        Py_ssize_t size = x.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block
    if size == 0:
        return
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        if floating is float:
            fc_sigmoid_f32(&x[block * BLOCK], &y[block * BLOCK],
                           min(size - block * BLOCK, BLOCK))
        else:
            fc_sigmoid_f64(&x[block * BLOCK], &y[block * BLOCK],
                           min(size - block * BLOCK, BLOCK))


def sigmoid_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                     int n_threads):
    """dx = dy * y * (1 - y), y the forward output."""
    cdef:
        Py_ssize_t size = dy.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block, i
    if size == 0:
        return
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        for i in range(block * BLOCK, min(size, (block + 1) * BLOCK)):
            dx[i] = dy[i] * y[i] * (1 - y[i])


def tanh_forward(const floating[::1] x, floating[::1] y, int n_threads):
    """y = tanh(x)."""
    cdef:
        Py_ssize_t size = x.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block
    if size == 0:
        return
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        if floating is float:
            fc_tanh_f32(&x[block * BLOCK], &y[block * BLOCK], min(size - block * BLOCK, BLOCK))
        else:
            fc_tanh_f64(&x[block * BLOCK], &y[block * BLOCK], min(size - block * BLOCK, BLOCK))


def tanh_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx,
                  int n_threads):
    """dx = dy * (1 - y * y), y the forward output."""
    cdef:
        Py_ssize_t size = dy.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block, i
    if size == 0:
        return
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        for i in range(block * BLOCK, min(size, (block + 1) * BLOCK)):
            # (1 - y)(1 + y) rather than 1 - y*y: no cancellation when |y| is near 1.
            dx[i] = dy[i] * ((1 - y[i]) * (1 + y[i]))


cdef inline floating _row_max(const floating *row, Py_ssize_t k) noexcept nogil:
    # A NaN in the first column is kept; a later one reaches the output through exp.
    cdef floating m = row[0]
    cdef Py_ssize_t j
    for j in range(1, k):
        if row[j] > m:
            m = row[j]
    return m


def softmax_forward(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads):
    """out[i] = exp(logits[i] - max) / sum(exp(logits[i] - max)), the sum in double."""
    cdef:
        Py_ssize_t n_rows = logits.shape[0], k = logits.shape[1]
        Py_ssize_t i, j
        const floating *row
        floating *orow
        floating m
        double total
    if n_rows == 0 or k == 0:
        return
    for i in prange(n_rows, schedule="static", nogil=True,
                    num_threads=threads_for(n_rows, n_threads)):
        row = &logits[i, 0]
        orow = &out[i, 0]
        m = _row_max(row, k)
        for j in range(k):
            orow[j] = row[j] - m
        _exp_nonpositive(orow, orow, k)
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
            fc_exp_nonpos_f64(shifted, shifted, k)
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
