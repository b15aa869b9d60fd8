"""The thread policy: how many threads a kernel call gets, decided in one place.

``n_threads`` is resolved once per call (None: every usable core, honouring
``OMP_NUM_THREADS`` and threadpoolctl; negative: counted back from that) by
:func:`effective_n_threads`, then capped for small work by :func:`resolve_threads`. The
kernels take the result as an argument and never decide it themselves.
"""
import contextlib

from .._ext._openmp import effective_n_threads, openmp_enabled

__all__ = ["effective_n_threads", "openmp_enabled", "parallel_grain", "resolve_threads"]

# Work below this many units per thread runs on fewer threads (PyTorch's grain size):
# a parallel region costs microseconds to start and join, and far more when the cores are
# busy with other processes and the OpenMP team has to wait for one to be scheduled.
_grain = 32768


def resolve_threads(n_threads, work=None):
    """Threads for a kernel call: ``n_threads`` resolved, then capped so that each
    thread gets at least the grain's units of ``work`` (elements, or vector
    multiply-adds for the convolutions). Results never depend on the count."""
    n_threads = effective_n_threads(n_threads)
    if work is not None:
        n_threads = max(1, min(n_threads, int(work) // _grain))
    return n_threads


def grain():
    """Units of work per thread below which :func:`resolve_threads` uses fewer threads."""
    return _grain


@contextlib.contextmanager
def parallel_grain(units):
    """Within the block, work is split between threads down to ``units`` per thread.

    ``parallel_grain(1)`` runs even tiny inputs on every thread (the tests use it to
    exercise the parallel code paths); results do not depend on it.
    """
    global _grain
    previous, _grain = _grain, int(units)
    try:
        yield
    finally:
        _grain = previous
