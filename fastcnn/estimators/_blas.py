"""BLAS on one thread while a network trains or predicts."""
import threading

from threadpoolctl import ThreadpoolController


class _SingleThreadedBlas:
    """A context in which BLAS runs on one thread.

    The dense layers' matmuls are small next to the convolutions, and multithreaded BLAS
    competes with the OpenMP kernels' threads (which spin a while after each parallel
    region): on 2 cores training ran 6x slower. scikit-learn's KMeans does the same.
    The limit is process-wide, so concurrent fits and predictions share one: the first to
    enter sets it and the last to leave restores the original.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._controller = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._limiter.restore_original_limits()
                self._limiter = None
        return False


_context = _SingleThreadedBlas()


def single_threaded_blas():
    """The process-wide context in which BLAS runs on one thread (re-entrant)."""
    return _context
