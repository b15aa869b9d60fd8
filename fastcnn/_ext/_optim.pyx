# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Optimiser steps on flat parameter arrays: one pass over each array, in parallel.

The arithmetic is elementwise and done in the arrays' own precision, in the same order as
the NumPy expressions in ``fastcnn.nn.optimizers`` describe, so any thread count gives the
same result. Blocks of BLOCK elements are the parallel tasks.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from ._openmp cimport threads_for

cdef Py_ssize_t BLOCK = 16384


def sgd_step(
    floating[::1] p,                      # IN/OUT parameters
    const floating[::1] g,                # IN gradient
    floating[::1] v,                      # IN/OUT velocity (unused when momentum == 0)
    double learning_rate, double momentum, bint nesterov, int n_threads,
):
    """p -= lr * g, or with momentum: v = mu * v - lr * g, then p += v, or with Nesterov
    p += mu * v - lr * g (the form MLPClassifier uses)."""
    cdef:
        Py_ssize_t size = p.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block, i, end
        floating lr = <floating> learning_rate, mu = <floating> momentum
        floating step, vel
        floating *pp
        const floating *pg
        floating *pv
    if size == 0:
        return
    pp, pg = &p[0], &g[0]
    pv = &v[0] if mu != 0 else NULL
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        end = min(size, (block + 1) * BLOCK)
        if mu == 0:
            for i in range(block * BLOCK, end):
                pp[i] = pp[i] - pg[i] * lr
        elif nesterov:
            for i in range(block * BLOCK, end):
                step = pg[i] * lr
                vel = pv[i] * mu - step
                pv[i] = vel
                pp[i] = (pp[i] - step) + vel * mu
        else:
            for i in range(block * BLOCK, end):
                vel = pv[i] * mu - pg[i] * lr
                pv[i] = vel
                pp[i] = pp[i] + vel


def adam_step(
    floating[::1] p,                      # IN/OUT parameters
    const floating[::1] g,                # IN gradient
    floating[::1] m,                      # IN/OUT first moment
    floating[::1] v,                      # IN/OUT second moment
    double step_size, double beta_1, double beta_2, double epsilon, int n_threads,
):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= step_size * m / (sqrt(v) + eps),
    step_size being the bias-corrected learning rate."""
    cdef:
        Py_ssize_t size = p.shape[0], n_blocks = (size + BLOCK - 1) // BLOCK
        Py_ssize_t block, i, end
        floating b1 = <floating> beta_1, b2 = <floating> beta_2
        floating c1 = <floating> (1 - beta_1), c2 = <floating> (1 - beta_2)
        floating eps = <floating> epsilon, lr = <floating> step_size
        floating gi, mi, vi
        floating *pp
        const floating *pg
        floating *pm
        floating *pv
    if size == 0:
        return
    pp, pg, pm, pv = &p[0], &g[0], &m[0], &v[0]
    for block in prange(n_blocks, schedule="static", nogil=True,
                        num_threads=threads_for(n_blocks, n_threads)):
        end = min(size, (block + 1) * BLOCK)
        for i in range(block * BLOCK, end):
            gi = pg[i]
            mi = pm[i] * b1 + c1 * gi
            vi = pv[i] * b2 + (gi * gi) * c2
            pm[i] = mi
            pv[i] = vi
            pp[i] = pp[i] - (mi / (<floating> sqrt(vi) + eps)) * lr
