"""Thread-count resolution: the one place that decides how many threads a kernel gets."""
import os


_in_forked_child = False


def _mark_forked_child():
    # GNU OpenMP's thread pool does not survive fork(): a child that starts a parallel
    # region can hang waiting for threads that do not exist. Children run serially.
    global _in_forked_child
    _in_forked_child = True


os.register_at_fork(after_in_child=_mark_forked_child)


def openmp_enabled():
    """Whether the extension was built with OpenMP."""
    return bool(FASTCNN_OPENMP_ENABLED)


_usable_cpus = None


def _cpu_count():
    # Cgroup- and affinity-aware count of usable CPUs (as joblib/loky compute it). Read
    # once: it reads cgroup files and costs far more than a small kernel call.
    global _usable_cpus
    if _usable_cpus is None:
        from joblib import cpu_count

        _usable_cpus = max(1, cpu_count(only_physical_cores=False))
    return _usable_cpus


def effective_n_threads(n_threads=None):
    """Resolve ``n_threads`` to a positive thread count.

    None: as many threads as OpenMP would use (``OMP_NUM_THREADS`` and
    ``threadpoolctl.threadpool_limits(..., user_api="openmp")`` are honoured), capped by the
    usable cores (cgroup quota, affinity). A negative value counts back from that same
    number, as scikit-learn's does: ``-1`` is what None gives, ``-2`` one fewer, never
    fewer than 1. So ``-1`` also stays within ``OMP_NUM_THREADS`` and the limits that
    joblib sets in its workers (``GridSearchCV(n_jobs=...)`` does not oversubscribe). A
    positive value is used as given. Returns 1 without OpenMP and in a child process made
    by ``fork`` (GNU OpenMP's threads do not survive fork: a parallel region there hangs).
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not (
            hasattr(n_threads, "__index__")
        ):
            raise TypeError(f"n_threads must be an int or None, got {n_threads!r}")
        n_threads = int(n_threads)
        if n_threads == 0:
            raise ValueError("n_threads=0 is invalid: use None (all cores), a positive count, "
                             "or a negative one (-1 = all usable cores, -2 = one fewer)")
    if not FASTCNN_OPENMP_ENABLED or _in_forked_child:
        return 1
    if n_threads is not None and n_threads > 0:
        return n_threads
    usable = max(1, min(omp_get_max_threads(), _cpu_count()))
    if n_threads is None:
        return usable
    return max(1, usable + 1 + n_threads)
