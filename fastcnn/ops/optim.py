"""Optimiser steps: one compiled pass over each parameter array.

Flat C-contiguous arrays of one float dtype, updated in place; the optimisers in
:mod:`fastcnn.nn.optimizers` keep the state arrays and call these once per parameter.
"""
from .._ext import _optim


def sgd_step(p, g, velocity, learning_rate, momentum, nesterov, n_threads):
    """v = mu * v - lr * g; p += v (or p += mu * v - lr * g with Nesterov's momentum)."""
    _optim.sgd_step(p.reshape(-1), g.reshape(-1), velocity.reshape(-1), learning_rate,
                    momentum, nesterov, n_threads)


def adam_step(p, g, m, v, step_size, beta_1, beta_2, epsilon, n_threads):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= step_size m / (sqrt(v) + eps)."""
    _optim.adam_step(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), step_size,
                     beta_1, beta_2, epsilon, n_threads)
