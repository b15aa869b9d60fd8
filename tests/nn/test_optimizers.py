"""The compiled optimiser steps against the update rules written out in NumPy."""
import numpy as np
import pytest

from fastcnn.nn.optimizers import make_optimizer

TOLERANCE = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}


def reference_steps(solver, params, grads_per_step, lr, momentum=0.9, nesterov=True,
                    beta_1=0.9, beta_2=0.999, epsilon=1e-8):
    """The textbook rules, one array at a time, in float64."""
    params = [p.astype(np.float64) for p in params]
    state_a = [np.zeros_like(p) for p in params]
    state_b = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for p, g, a, b in zip(params, grads, state_a, state_b):
            g = g.astype(np.float64)
            if solver == "sgd" and momentum == 0:
                p -= lr * g
            elif solver == "sgd":
                a[...] = momentum * a - lr * g
                p += momentum * a - lr * g if nesterov else a
            else:
                a[...] = beta_1 * a + (1 - beta_1) * g
                b[...] = beta_2 * b + (1 - beta_2) * g * g
                step = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
                p -= step * a / (np.sqrt(b) + epsilon)
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver, options", [
    ("sgd", dict(momentum=0.0)),
    ("sgd", dict(momentum=0.9, nesterovs_momentum=False)),
    ("sgd", dict(momentum=0.8, nesterovs_momentum=True)),
    ("adam", dict(beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
], ids=["sgd", "momentum", "nesterov", "adam"])
def test_steps_match_the_update_rules_for_any_thread_count(solver, options, dtype):
    rng = np.random.default_rng(0)
    # one array bigger than a parallel block, one small, one 2-D
    shapes = [(40000,), (7,), (33, 65)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    steps = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    results = []
    for n_threads in (1, 2, 3):
        params = [p.copy() for p in start]
        opt = make_optimizer(solver, params, learning_rate_init=0.05, **options)
        for grads in steps:
            opt.update(params, grads, n_threads=n_threads)
        results.append(params)
    reference = reference_steps(
        solver, start, steps, 0.05, momentum=options.get("momentum", 0.9),
        nesterov=options.get("nesterovs_momentum", True), beta_1=options.get("beta_1", 0.9),
        beta_2=options.get("beta_2", 0.999), epsilon=options.get("epsilon", 1e-8))
    for got, want in zip(results[0], reference):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])
    for other in results[1:]:
        for got, first in zip(other, results[0]):
            assert np.array_equal(got, first)
