"""Reliability: threads, processes, determinism, memory and pickles (issue 6).

A fitted model must keep working where users put it: in a child made by ``fork`` after the
parent ran OpenMP kernels, under concurrent ``predict`` calls from Python threads, inside
joblib workers (``GridSearchCV(n_jobs=2)``), across thread counts, over many refits, on large
inputs, and after a pickle round trip into a fresh interpreter.
"""
import concurrent.futures
import gc
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from fastcnn._ext._openmp import effective_n_threads
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

import fastcnn
from fastcnn import CNNClassifier, CNNRegressor
from fastcnn import functional as F
from fastcnn._ext import _openmp
from fastcnn.layers import AvgPool2D, Conv2D, Dense, Dropout, MaxPool2D

OPENMP = _openmp.openmp_enabled()
N_CPUS = joblib.cpu_count(only_physical_cores=False)
# Where the fastcnn under test lives, for the fresh interpreters started below.
FASTCNN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastcnn.__file__)))

needs_openmp = pytest.mark.skipif(not OPENMP, reason="serial build: always one thread")
needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")


def small_layers():
    return [Conv2D(4, 3, padding="same"), MaxPool2D(2), Dense(16)]


def small_clf(**params):
    defaults = {"layers": small_layers(), "image_shape": (8, 8), "max_iter": 3, "batch_size": 100,
                    "random_state": 0, "n_threads": 1}
    defaults.update(params)
    return CNNClassifier(**defaults)


def fit_quietly(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def current_rss():
    """Resident memory of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fresh_python(script, tmp_path, **env_overrides):
    """Run ``script`` in a new interpreter that imports the fastcnn under test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [FASTCNN_ROOT, env.get("PYTHONPATH")]))
    env.update(env_overrides)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return fit_quietly(small_clf(), X[:600], y[:600])


# ----------------------------------------------------------------------------- processes


def _predict_in_child(clf, X):
    """Runs in the forked child: predict with 2 threads requested, and train a little."""
    clf.set_params(n_threads=2)
    labels, proba = clf.predict(X), clf.predict_proba(X)
    refit = fit_quietly(small_clf(max_iter=1, n_threads=2), X[:200], labels[:200])
    return labels, proba, effective_n_threads(None), effective_n_threads(2), refit.n_iter_


@needs_fork
def test_predict_in_forked_child_after_parent_ran_openmp(fitted, digits):
    X, _ = digits
    clf = pickle.loads(pickle.dumps(fitted))
    clf.set_params(n_threads=2)
    # The parent runs 2-thread parallel regions first: GNU OpenMP's thread pool then exists
    # in the parent and is lost in the child, where a new 2-thread region would hang.
    x = np.random.default_rng(0).random((8, 16, 16, 8), dtype=np.float32)
    F.conv2d(x, np.ones((3, 3, 8, 16), np.float32), padding="same", n_threads=2)
    expected, expected_proba = clf.predict(X), clf.predict_proba(X)
    if OPENMP:
        assert effective_n_threads(2) == 2

    with multiprocessing.get_context("fork").Pool(1) as pool:
        job = pool.apply_async(_predict_in_child, (clf, X))
        try:
            labels, proba, n_none, n_two, n_iter = job.get(timeout=60)
        except multiprocessing.TimeoutError:
            pool.terminate()
            pytest.fail("predict in a forked child hung (GNU OpenMP after fork)")
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(proba, expected_proba)
    # documented: a forked child runs the kernels serially, whatever n_threads asks for
    assert (n_none, n_two) == (1, 1)
    assert n_iter == 1
    # and the parent still runs in parallel afterwards
    np.testing.assert_array_equal(clf.predict(X), expected)
    if OPENMP:
        assert effective_n_threads(2) == 2


def test_pickle_round_trip_in_fresh_process(fitted, digits, tmp_path):
    X, _ = digits
    clf = pickle.loads(pickle.dumps(fitted))
    clf.set_params(n_threads=None)
    payload = pickle.dumps(clf)
    (tmp_path / "model.pkl").write_bytes(payload)
    np.save(tmp_path / "X.npy", X)
    fresh_python("""
        import pickle, numpy as np
        with open("model.pkl", "rb") as f:
            clf = pickle.load(f)
        X = np.load("X.npy")
        np.save("labels.npy", clf.predict(X))
        np.save("proba.npy", clf.predict_proba(X))
        np.save("features.npy", clf.transform(X))
    """, tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), clf.predict(X))
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), clf.predict_proba(X))
    np.testing.assert_array_equal(np.load(tmp_path / "features.npy"), clf.transform(X))

    # Weights, not workspaces: no cached activations from the last training batch, and a
    # pickle of about the size of the parameters.
    param_bytes = sum(p.nbytes for p in clf.network_.params)
    assert len(payload) < 1.2 * param_bytes + 16 * 1024, (len(payload), param_bytes)
    for layer in pickle.loads(payload).network_.layers:
        for name in layer._cache_names:
            assert getattr(layer, name, None) is None, (layer.name, name)


def test_pickle_is_weights_only_for_a_wide_model(digits):
    """Gradients and optimizer moments are training workspaces, not part of the model."""
    X, y = digits
    clf = fit_quietly(CNNClassifier(layers=[Conv2D(8, 3, padding="same"), Dense(256)],
                                    image_shape=(8, 8), max_iter=2, random_state=0),
                      X[:300], y[:300])
    payload = pickle.dumps(clf)
    param_bytes = sum(p.nbytes for p in clf.network_.params)
    assert param_bytes > 200_000
    assert len(payload) < 1.1 * param_bytes + 16 * 1024, (len(payload), param_bytes)
    loaded = pickle.loads(payload)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # training goes on after a reload: the optimizer starts afresh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded.partial_fit(X[:300], y[:300])
    assert loaded.n_iter_ == clf.n_iter_ + 1


def test_partial_fit_goes_on_from_a_pickle_as_without_one(digits):
    """Mid-stream (after partial_fit) the optimizer's state travels with the model."""
    X, y = digits
    X, y = X[:300], y[:300]
    clf = CNNClassifier(layers=[Conv2D(4, 3), Dense(16)], image_shape=(8, 8),
                        random_state=0)
    clf.partial_fit(X[:150], y[:150], classes=np.arange(10))
    resumed = pickle.loads(pickle.dumps(clf))
    clf.partial_fit(X[150:], y[150:])
    resumed.partial_fit(X[150:], y[150:])
    np.testing.assert_array_equal(resumed.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("name", ["classifier", "regressor"])
def test_a_pickle_of_version_0_1_fails_naming_the_version(name):
    """Models pickled by fastcnn 0.1 (files made with that version) cannot be rebuilt by
    this layout: loading one says so, naming the version, instead of a missing module."""
    payload = (Path(__file__).parent / "data" / f"fastcnn-0.1-{name}.pkl").read_bytes()
    with pytest.raises(pickle.UnpicklingError,
                       match=r"pickled by fastcnn 0\.1, whose models fastcnn .* cannot load.*"
                             r"Refit the model"):
        pickle.loads(payload)


def test_pickle_carries_the_version_and_warns_on_another(fitted):
    state = fitted.__getstate__()
    assert state["_fastcnn_version"] == fastcnn.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(fitted))  # same version: no warning
    state["_fastcnn_version"] = "0.0.1"
    clone_ = CNNClassifier.__new__(CNNClassifier)
    with pytest.warns(UserWarning, match="from fastcnn version 0.0.1 when using version"):
        clone_.__setstate__(state)


def test_concurrent_predict_restores_blas_threads(fitted, digits):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    X, _ = digits
    before = blas_threads()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: fitted.predict(X), range(12)))
    assert blas_threads() == before


def test_pickle_after_predict_holds_no_batch_arrays(fitted, digits):
    """Predicting (inference mode) must not leave batch-sized arrays behind in the model."""
    X, _ = digits
    clf = pickle.loads(pickle.dumps(fitted))
    before = len(pickle.dumps(clf))
    clf.predict(np.concatenate([X] * 3))
    clf.transform(X)
    assert len(pickle.dumps(clf)) <= before + 1024


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("n_threads", [1, 2, None])
def test_concurrent_predict_matches_serial(fitted, digits, n_threads):
    X, _ = digits
    clf = pickle.loads(pickle.dumps(fitted))
    clf.set_params(n_threads=n_threads)
    chunks = [X[i * 150:(i + 1) * 150] for i in range(8)]
    methods = [clf.predict, clf.predict_proba, clf.transform]
    serial = {(m.__name__, i): m(chunk) for m in methods for i, chunk in enumerate(chunks)}
    tasks = list(serial)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        for repeat in range(3):
            order = np.random.default_rng(repeat).permutation(len(tasks))
            futures = {
                executor.submit(getattr(clf, tasks[t][0]), chunks[tasks[t][1]]): tasks[t]
                for t in order
            }
            for future in concurrent.futures.as_completed(futures, timeout=120):
                key = futures[future]
                assert np.array_equal(future.result(), serial[key]), (repeat, key)


@needs_openmp
def test_threadpool_limits_openmp_is_honoured():
    before = effective_n_threads(None)
    assert 1 <= before <= N_CPUS
    with threadpool_limits(limits=1, user_api="openmp"):
        assert effective_n_threads(None) == 1
        assert effective_n_threads(-1) == 1  # -1 counts back from the same limit
        assert effective_n_threads(2) == 2  # an explicit count is the caller's choice
    assert effective_n_threads(None) == before


# Loads only the thread-resolution extension (not sklearn): a fast interpreter start.
RESOLVE_SCRIPT = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("fastcnn._ext._openmp", {_openmp.__file__!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
e = module.effective_n_threads
print(e(None), e(-1), e(2))
"""


def test_omp_num_threads_in_subprocess(tmp_path):
    script = RESOLVE_SCRIPT
    one = fresh_python(script, tmp_path, OMP_NUM_THREADS="1").split()
    assert one == ["1", "1", "2" if OPENMP else "1"]
    # more than the machine has: capped at the usable cores
    many = fresh_python(script, tmp_path, OMP_NUM_THREADS=str(4 * N_CPUS)).split()
    expected = str(N_CPUS) if OPENMP else "1"
    assert many[:2] == [expected, expected]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or N_CPUS < 2,
                    reason="needs CPU affinity and at least 2 CPUs")
def test_cpu_affinity_is_honoured(tmp_path):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [FASTCNN_ROOT, env.get("PYTHONPATH")]))
    first_cpu = min(os.sched_getaffinity(0))
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_SCRIPT], env=env, capture_output=True, text=True,
        timeout=120, check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, {first_cpu}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["1", "1"]


def test_negative_n_threads_count_back_from_usable_cores():
    usable = effective_n_threads(None)
    assert effective_n_threads(-1) == usable
    assert effective_n_threads(np.int64(-1)) == usable
    assert effective_n_threads(-2) == max(1, usable - 1)
    assert effective_n_threads(-10_000) == 1
    if OPENMP:
        assert usable == min(N_CPUS, usable)
        assert effective_n_threads(3) == 3
        assert effective_n_threads(np.int32(2)) == 2


@pytest.mark.parametrize("bad", [True, False, 1.0, 2.5, "2", np.float64(2), [2]])
def test_n_threads_of_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError, match="n_threads"):
        effective_n_threads(bad)


def test_n_threads_zero_is_a_value_error(digits):
    X, y = digits
    with pytest.raises(ValueError, match="n_threads=0"):
        effective_n_threads(0)
    with pytest.raises(ValueError, match="n_threads"):
        F.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), n_threads=0)
    with pytest.raises(ValueError, match="n_threads"):
        F.max_pool2d(np.ones((1, 4, 4, 1)), 2, n_threads=0)
    with pytest.raises(ValueError, match="n_threads"):
        small_clf(n_threads=0).fit(X[:50], y[:50])


def _worker_threads(estimator, X, y):
    """A scorer: the thread count this worker's kernels get for the estimator."""
    return effective_n_threads(estimator.n_threads)


def _worker_pid(estimator, X, y):
    return os.getpid()


def test_grid_search_n_jobs_does_not_oversubscribe(digits, monkeypatch):
    """joblib's workers get OMP_NUM_THREADS = cores // n_jobs, and fastcnn honours it for
    n_threads=None and negative n_threads alike, so the total stays at the core count."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # joblib leaves a user's value be
    X, y = digits
    n_jobs = 2
    search = GridSearchCV(
        small_clf(max_iter=2, n_threads=None),
        {"n_threads": [None, -1], "learning_rate_init": [1e-3, 1e-2]},
        scoring={"accuracy": "accuracy", "threads": _worker_threads, "pid": _worker_pid},
        refit="accuracy", cv=2, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X[:400], y[:400])
    results = search.cv_results_
    threads = np.concatenate([results[f"split{i}_test_threads"] for i in range(2)])
    pids = np.concatenate([results[f"split{i}_test_pid"] for i in range(2)])
    assert os.getpid() not in set(pids.astype(int)), "the search did not use worker processes"
    assert np.all(threads >= 1)
    assert np.all(threads * n_jobs <= max(N_CPUS, n_jobs)), threads
    accuracy = np.concatenate([results[f"split{i}_test_accuracy"] for i in range(2)])
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    assert search.best_estimator_.predict(X[:10]).shape == (10,)


# ----------------------------------------------------------------------------- determinism


LAYER_SETS = {
    "conv-maxpool-dense": small_layers,
    "strided-dilated-avgpool-dropout": lambda: [
        Conv2D(6, 3, padding="same"), Conv2D(12, 3, padding="same", dilation=2),
        AvgPool2D(2), Conv2D(16, 3, stride=2, padding=1), Dense(16), Dropout(0.2)],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers", sorted(LAYER_SETS))
def test_same_random_state_is_bitwise_identical_for_any_thread_count(digits, layers, dtype):
    X, y = digits
    X, y = X[:300], y[:300]
    results = {}
    for n_threads in [1, 2, -1]:
        clf = fit_quietly(small_clf(layers=LAYER_SETS[layers](), dtype=dtype, max_iter=2,
                                    random_state=7, n_threads=n_threads), X, y)
        results[n_threads] = ([p.copy() for p in clf.network_.params], clf.loss_curve_,
                              clf.predict_proba(X))
    params_1, curve_1, proba_1 = results[1]
    for n_threads in [2, -1]:
        params, curve, proba = results[n_threads]
        assert len(params) == len(params_1)
        for i, (a, b) in enumerate(zip(params_1, params)):
            assert a.dtype == b.dtype == np.dtype(dtype)
            assert np.array_equal(a, b), f"parameter {i} differs for n_threads={n_threads}"
        assert curve == curve_1
        assert np.array_equal(proba, proba_1)


# ----------------------------------------------------------------------------- memory


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_memory_growth_over_repeated_fits(digits):
    X, y = digits
    X, y = X[:200], y[:200]
    rss = {}
    for i in range(1, 26):
        # every fifth fit with 2 threads: per-thread buffers must not leak either
        n_threads = 2 if i % 5 == 0 else 1
        clf = fit_quietly(small_clf(max_iter=1, random_state=i, n_threads=n_threads), X, y)
        clf.predict_proba(X)
        payload = pickle.dumps(clf)
        pickle.loads(payload).predict(X[:10])
        del clf, payload
        gc.collect()
        if i in (5, 25):
            rss[i] = current_rss()
    assert rss[25] <= 1.10 * rss[5], (rss[5], rss[25])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc (Linux)")
def test_predict_on_100k_images_works_in_batches(fitted, digits, tmp_path):
    """predict on 100,000 images goes through bounded batches: the peak resident memory
    grows by far less than an unbatched forward pass would need (~160 MB here)."""
    X, _ = digits
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(fitted))
    np.save(tmp_path / "X.npy", X)
    out = fresh_python("""
        import gc, os, pickle, numpy as np
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("model.pkl", "rb") as f:
            clf = pickle.load(f)
        X = np.load("X.npy")
        clf.predict(X[:10])  # warm up: buffers, thread pools
        big = X[np.random.default_rng(0).integers(0, len(X), 100_000)]
        gc.collect()
        base = rss()
        labels = clf.predict(big)
        # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts at the resident size
        # of the parent that spawned it (the pytest process, however much it imported).
        with open("/proc/self/status") as f:
            peak = int(f.read().split("VmHWM:")[1].split()[0]) * 1024
        np.save("labels.npy", labels)
        np.save("index.npy", np.random.default_rng(0).integers(0, len(X), 100_000))
        print(base, peak)
    """, tmp_path)
    base, peak = (int(v) for v in out.split())
    labels = np.load(tmp_path / "labels.npy")
    index = np.load(tmp_path / "index.npy")
    assert labels.shape == (100_000,)
    # the same images predicted in small pieces here give the same labels
    np.testing.assert_array_equal(labels, fitted.predict(X)[index])
    growth_mb = (peak - base) / 2**20
    assert growth_mb < 64, f"predict on 100k images raised peak RSS by {growth_mb:.0f} MB"


# ----------------------------------------------------------------------------- not fitted


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba",
                                    "transform", "score"])
def test_unfitted_classifier_raises_not_fitted(digits, method):
    X, y = digits
    args = (X[:5], y[:5]) if method == "score" else (X[:5],)
    with pytest.raises(NotFittedError):
        getattr(small_clf(), method)(*args)


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_unfitted_regressor_raises_not_fitted(digits, method):
    X, y = digits
    args = (X[:5], y[:5].astype(float)) if method == "score" else (X[:5],)
    with pytest.raises(NotFittedError):
        getattr(CNNRegressor(layers=small_layers(), image_shape=(8, 8)), method)(*args)


# ----------------------------------------------------------------------------- faults


def test_divergence_stops_with_a_warning_and_keeps_finite_weights(digits):
    X, y = digits
    clf = CNNClassifier(layers=[Conv2D(4, 3, padding="same"), Dense(16)], image_shape=(8, 8),
                        solver="sgd", learning_rate_init=1e4, momentum=0.9, max_iter=5,
                        random_state=0)
    with pytest.warns(RuntimeWarning, match=r"loss became .* in epoch \d+.*learning_rate_init"):
        clf.fit(X[:300] * 100, y[:300])
    assert all(np.isfinite(p).all() for p in clf.network_.params)
    assert np.isfinite(clf.predict_proba(X[:50])).all()


def test_ctrl_c_stops_at_a_batch_boundary_and_keeps_the_last_epoch(digits, monkeypatch):
    X, y = digits
    clf = small_clf(max_iter=5, batch_size=64)
    fit_quietly(clf, X[:256], y[:256])
    done = {"calls": 0}
    original = clf.network_.backward

    def interrupt_in_third_epoch(*args, **kwargs):
        done["calls"] += 1
        if done["calls"] == 2 * 4 + 2:  # 4 batches per epoch: inside epoch 3
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    clf.set_params(warm_start=True)
    n_iter = clf.n_iter_
    monkeypatch.setattr(clf.network_, "backward", interrupt_in_third_epoch)
    with pytest.warns(RuntimeWarning, match="training interrupted in epoch"):
        clf.fit(X[:256], y[:256])
    assert clf.n_iter_ == n_iter + 2
    assert np.isfinite(clf.predict_proba(X)).all()


def test_an_error_inside_a_kernel_leaves_the_estimator_unchanged(fitted, digits,
                                                                  monkeypatch):
    from fastcnn.ops.conv import ConvPlan

    X, y = digits
    clf = pickle.loads(pickle.dumps(fitted))
    before = [p.copy() for p in clf.network_.params]
    state = (clf.n_iter_, list(clf.loss_curve_), clf.t_)
    expected = clf.predict_proba(X)
    calls = {"n": 0}
    original = ConvPlan.backward

    def fail_later(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("simulated")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConvPlan, "backward", fail_later)
    with pytest.raises(MemoryError):
        clf.partial_fit(X[:300], y[:300])
    monkeypatch.undo()
    assert (clf.n_iter_, list(clf.loss_curve_), clf.t_) == state
    for p, q in zip(clf.network_.params, before):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(clf.predict_proba(X), expected)
