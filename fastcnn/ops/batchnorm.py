"""Batch normalisation over the last axis: validated ops over ``fastcnn._ext._batchnorm``.

Re-exported by :mod:`fastcnn.functional`. Channels are the last axis of a 2-D ``(N, F)``
or a 4-D NHWC ``(N, H, W, C)`` array: each channel is normalised over the ``M = N`` (or
``N * H * W``) values it has in the batch, as ``torch.nn.BatchNorm1d`` / ``BatchNorm2d``
do. Statistics are summed in double in a fixed order, so results are bitwise the same
for any ``n_threads``.

The ``*_into`` functions below the public ones are what a network's layer runs on
trusted arrays, with workspace outputs.
"""
import numbers

import numpy as np

from .._ext import _batchnorm
from ._validation import as_float_array, check_same_dtype, result_dtype
from .threads import resolve_threads
from .workspace import empty

__all__ = ["batch_norm", "batch_norm_backward"]


def _as_input(value, name, dtype):
    """``value`` as a C-contiguous 2-D or 4-D float array (channels last)."""
    ndim = np.ndim(value)
    if ndim not in (2, 4):
        raise ValueError(
            f"{name} must be 2-D (N, features) or 4-D NHWC (N, H, W, C), got an array of "
            f"shape {np.shape(value)}"
        )
    return as_float_array(value, name, ndim, dtype)


def _as_channel_vector(value, name, c, dtype):
    array = as_float_array(value, name, 1, dtype)
    if array.shape != (c,):
        raise ValueError(
            f"{name} must have shape ({c},), one value per channel (the last axis of x), "
            f"got {array.shape}"
        )
    return array


def _check_running_to_update(value, name, c, dtype):
    """A running-statistics array the op writes into: it must be the caller's own."""
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} is updated in place when training=True, so it must be a NumPy array, "
            f"got {type(value).__name__}; create it with np.zeros({c}, dtype=x.dtype)"
        )
    if value.shape != (c,):
        raise ValueError(
            f"{name} must have shape ({c},), one value per channel (the last axis of x), "
            f"got {value.shape}"
        )
    if value.dtype != dtype:
        raise TypeError(
            f"{name} is updated in place, so it must have x's dtype {np.dtype(dtype)}, got "
            f"{value.dtype}; convert it once with {name}.astype(x.dtype)"
        )
    if not (value.flags.c_contiguous and value.flags.writeable):
        raise ValueError(
            f"{name} is updated in place, so it must be a writable C-contiguous array; "
            f"pass np.ascontiguousarray({name}) (and keep that copy)"
        )
    return value


def _check_number(value, name, low, high=None):
    """A finite real number in [low, high], or above low when there is no high."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and bool(np.isfinite(value)))
    if high is None:
        ok = ok and value > low
        bounds = f"> {low}"
    else:
        ok = ok and low <= value <= high
        bounds = f"in [{low}, {high}]"
    if not ok:
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return float(value)


def _rows(x):
    """x viewed as (M, C) rows."""
    return x.reshape(-1, x.shape[-1])


def _check_batch_size(x, m):
    if m <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input of shape "
            f"{x.shape} ({m} value(s) per channel); use a batch of at least 2 samples, or "
            "training=False with running statistics"
        )


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, training=True,
               momentum=0.1, epsilon=1e-5, n_threads=None):
    """Batch normalisation of each channel (the last axis) over the batch.

    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta``, applied as ``x * scale +
    shift`` with ``scale = gamma / sqrt(var + epsilon)`` and ``shift = beta - mean *
    scale`` computed in double.

    Parameters
    ----------
    x : array-like of shape (N, F) or (N, H, W, C)
        Integer input is cast to float32; float64 stays float64.
    gamma, beta : array-like of shape (C,)
        Scale and shift of each channel.
    running_mean, running_var : ndarray of shape (C,), optional
        With ``training=True``, updated in place (when given: both, writable
        C-contiguous arrays of x's dtype) to ``(1 - momentum) * running + momentum *
        batch``, the variance being the unbiased batch variance (times M / (M - 1)), as
        in PyTorch. With ``training=False``, the statistics used (required).
    training : bool, default=True
        True normalises with the batch's mean and biased variance; it needs more than
        one value per channel (M = N, or N * H * W, above 1).
    momentum : float in [0, 1], default=0.1
    epsilon : float > 0, default=1e-5
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of x's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import batch_norm
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> running_mean, running_var = np.zeros(2), np.ones(2)
    >>> batch_norm(x, np.ones(2), np.zeros(2), running_mean, running_var, epsilon=1e-12)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> running_mean, running_var
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    momentum = _check_number(momentum, "momentum", 0, 1)
    epsilon = _check_number(epsilon, "epsilon", 0)
    check_same_dtype(x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                     running_var=running_var)
    if (running_mean is None) != (running_var is None):
        raise ValueError("pass both running_mean and running_var, or neither")
    dtype = result_dtype(x, gamma, beta, running_mean, running_var)
    x = _as_input(x, "x", dtype)
    c = x.shape[-1]
    gamma = _as_channel_vector(gamma, "gamma", c, dtype)
    beta = _as_channel_vector(beta, "beta", c, dtype)
    if not training:
        if running_mean is None:
            raise ValueError(
                "training=False normalises with the running statistics: pass running_mean "
                "and running_var (or use training=True for the batch's own)"
            )
        running_mean = _as_channel_vector(running_mean, "running_mean", c, dtype)
        running_var = _as_channel_vector(running_var, "running_var", c, dtype)
        if np.any(running_var < 0):
            raise ValueError("running_var must hold variances, >= 0; got negative values")
        if x.size == 0:
            return np.empty_like(x)
        scale, shift = folded_scale_shift(gamma, beta, running_mean, running_var, epsilon,
                                          dtype)
        return batch_norm_apply_into(_rows(x), scale, shift, False, n_threads).reshape(
            x.shape)
    if running_mean is not None:
        running_mean = _check_running_to_update(running_mean, "running_mean", c, dtype)
        running_var = _check_running_to_update(running_var, "running_var", c, dtype)
    _check_batch_size(x, int(np.prod(x.shape[:-1])))
    if c == 0:
        return np.empty_like(x)
    y, _, _ = batch_norm_train_into(_rows(x), gamma, beta, running_mean, running_var,
                                    momentum, epsilon, False, n_threads)
    return y.reshape(x.shape)


def batch_norm_backward(x, gamma, dy, epsilon=1e-5, n_threads=None):
    """Gradients of :func:`batch_norm` in training mode (batch statistics).

    With ``xhat = (x - mean) / sqrt(var + epsilon)`` from x's batch statistics:
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)`` over the batch (and pixels), and
    ``dx = gamma / sqrt(var + epsilon) / M * (M * dy - dbeta - xhat * dgamma)``.

    Parameters
    ----------
    x : array-like of shape (N, F) or (N, H, W, C)
        The forward input (more than one value per channel).
    gamma : array-like of shape (C,)
    dy : array-like of x's shape
        Gradient of the loss with respect to the output.
    epsilon : float > 0, default=1e-5
    n_threads : int or None

    Returns
    -------
    dx : ndarray of x's shape
    dgamma, dbeta : ndarray of shape (C,)
        All of x's float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import batch_norm_backward
    >>> dx, dgamma, dbeta = batch_norm_backward(np.array([[1.0], [3.0]]), np.ones(1),
    ...                                         np.array([[1.0], [2.0]]), epsilon=1e-12)
    >>> dgamma, dbeta
    (array([1.]), array([3.]))
    """
    epsilon = _check_number(epsilon, "epsilon", 0)
    check_same_dtype(x=x, gamma=gamma, dy=dy)
    dtype = result_dtype(x, gamma, dy)
    x = _as_input(x, "x", dtype)
    dy = _as_input(dy, "dy", dtype)
    if dy.shape != x.shape:
        raise ValueError(
            f"dy must have the shape of x (the forward input), {x.shape}, got {dy.shape}"
        )
    c = x.shape[-1]
    gamma = _as_channel_vector(gamma, "gamma", c, dtype)
    _check_batch_size(x, int(np.prod(x.shape[:-1])))
    if c == 0:
        return np.empty_like(x), np.empty(0, dtype), np.empty(0, dtype)
    x2 = _rows(x)
    mean, var = batch_norm_statistics(x2, n_threads)
    inv_std = 1.0 / np.sqrt(var + epsilon)
    dgamma = np.empty(c, dtype)
    dbeta = np.empty(c, dtype)
    dx = batch_norm_backward_into(x2, _rows(dy), None, gamma, mean, inv_std, dgamma, dbeta,
                                  True, n_threads)
    return dx.reshape(x.shape), dgamma, dbeta


# The forms a network's layer runs on (M, C) C-contiguous arrays of one float dtype, M >= 1
# and C >= 1, which the network checked when it was built.


def batch_norm_statistics(x2, n_threads):
    """(mean, biased variance) of each column of x2, float64 arrays of shape (C,)."""
    c = x2.shape[1]
    mean = np.empty(c, np.float64)
    var = np.empty(c, np.float64)
    _batchnorm.batch_norm_statistics(x2, mean, var, resolve_threads(n_threads, x2.size))
    return mean, var


def batch_norm_train_into(x2, gamma, beta, running_mean, running_var, momentum, epsilon,
                          relu, n_threads, ws=None):
    """The training forward pass: (y, mean, inv_std), mean and inv_std float64 (C,).

    ``running_mean`` and ``running_var`` (or None) are updated in place; with a single
    row (M = 1) they are left as they are, since one value has no variance.
    """
    m, c = x2.shape
    if m < 2:
        running_mean = running_var = None
    y = empty(ws, "y", x2.shape, x2.dtype)
    mean = empty(ws, "mean", (c,), np.float64)
    inv_std = empty(ws, "inv_std", (c,), np.float64)
    _batchnorm.batch_norm_forward_train(x2, gamma, beta, running_mean, running_var,
                                        momentum, epsilon, relu, y, mean, inv_std,
                                        resolve_threads(n_threads, x2.size))
    return y, mean, inv_std


def batch_norm_apply_into(x2, scale, shift, relu, n_threads, ws=None):
    """y = x2 * scale + shift per column (then relu): the prediction pass."""
    y = empty(ws, "y", x2.shape, x2.dtype)
    _batchnorm.batch_norm_apply(x2, scale, shift, y, relu, resolve_threads(n_threads,
                                                                           x2.size))
    return y


def batch_norm_backward_into(x2, dy2, y2, gamma, mean, inv_std, dgamma_out, dbeta_out,
                             need_dx, n_threads, ws=None):
    """Fills dgamma_out and dbeta_out; returns dx (or None when not ``need_dx``).

    ``y2`` is the output of a relu fused into the forward pass (its mask applies to dy),
    or None.
    """
    dx = empty(ws, "dx", x2.shape, x2.dtype) if need_dx else None
    _batchnorm.batch_norm_backward(x2, dy2, y2, gamma, mean, inv_std, dx, dgamma_out,
                                   dbeta_out, resolve_threads(n_threads, x2.size))
    return dx


def folded_scale_shift(gamma, beta, running_mean, running_var, epsilon, dtype):
    """(scale, shift) with ``x * scale + shift`` the normalisation by running statistics:
    computed in double, returned in ``dtype``."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(running_var, np.float64)
                                                    + epsilon)
    shift = np.asarray(beta, np.float64) - np.asarray(running_mean, np.float64) * scale
    return scale.astype(dtype), shift.astype(dtype)
