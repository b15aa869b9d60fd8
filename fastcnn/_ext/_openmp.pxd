# OpenMP shim: the kernels compile and run serially when the build has no OpenMP.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTCNN_OPENMP_ENABLED 1
    #else
    #define FASTCNN_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint FASTCNN_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil


cdef inline Py_ssize_t per_thread(Py_ssize_t count, Py_ssize_t itemsize) noexcept nogil:
    """Elements of per-thread scratch to set aside for ``count`` used: rounded up to whole
    64-byte cache lines, plus one, so that no two threads' scratch share a line (a line
    written by both would bounce between the cores on every write). itemsize divides 64."""
    return ((count * itemsize + 63) // 64 + 1) * (64 // itemsize)


cdef inline int threads_for(Py_ssize_t n_tasks, int n_threads) noexcept nogil:
    """``n_threads``, but never more threads than there are tasks (a tiny array runs on
    one)."""
    if n_tasks < n_threads:
        return <int> max(n_tasks, 1)
    return n_threads
