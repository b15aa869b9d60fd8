"""L2 pooling on NHWC arrays: ``y = sqrt(sum of x**2 over each window)``.

Validated wrappers over ``fastcnn._ext._pool``, re-exported by :mod:`fastcnn.functional`,
and the plan a network's ``L2Pool2D`` layer runs. Windows are those of
:func:`~fastcnn.ops.pool.avg_pool2d` (no padding, output size floored); this is PyTorch's
``LPPool2d`` with ``norm_type=2``. Results have the input's float dtype and do not depend
on ``n_threads``.
"""
import numpy as np

from .._ext import _pool
from ._validation import as_float_array, check_same_dtype, result_dtype
from .pool import PoolPlan
from .threads import resolve_threads
from .workspace import empty

__all__ = ["l2_pool2d", "l2_pool2d_backward"]


def l2_pool2d(x, pool_size, stride=None, n_threads=None):
    """2-D L2 pooling of NHWC images: the Euclidean norm of each window.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        Integer input is cast to float32; float64 stays float64.
    pool_size : int or (int, int)
        Window height and width, >= 1, at most the image's.
    stride : int or (int, int), optional
        Window step; None (the default) means ``pool_size``.
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of shape (N, Ho, Wo, C), dtype of x
        ``y[n, oh, ow, c] = sqrt(sum of x[n, ih, iw, c] ** 2 over the window)``;
        ``Ho = (H - pool_h) // stride_h + 1``, likewise ``Wo``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import l2_pool2d
    >>> x = np.array([3.0, 4.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    >>> l2_pool2d(x, 2)[0, :, :, 0]
    array([[5.]])
    """
    x = as_float_array(x, "x", 4)
    plan = L2PoolPlan(x.shape[1:], pool_size, stride, x.dtype)
    if x.shape[0] * x.shape[3] == 0:
        return np.empty((x.shape[0], *plan.output_shape), dtype=x.dtype)
    return plan.forward(x, n_threads)


def l2_pool2d_backward(x, dy, pool_size, stride=None, n_threads=None):
    """Gradient of :func:`l2_pool2d` with respect to its input.

    Each output's gradient reaches every element of its window as ``dy * x / y``; where
    windows overlap, the contributions add up. A window of zeros (``y == 0``) passes no
    gradient (0 rather than NaN).

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        The forward input.
    dy : array-like of shape (N, Ho, Wo, C)
        Gradient of the loss with respect to the pooled output.
    pool_size, stride : as in :func:`l2_pool2d`
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape (N, H, W, C), dtype of x and dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import l2_pool2d_backward
    >>> x = np.array([3.0, 4.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    >>> l2_pool2d_backward(x, np.ones((1, 1, 1, 1)), 2)[0, :, :, 0]
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    check_same_dtype(x=x, dy=dy)
    dtype = result_dtype(x, dy)
    x = as_float_array(x, "x", 4, dtype)
    dy = as_float_array(dy, "dy", 4, dtype)
    plan = L2PoolPlan(x.shape[1:], pool_size, stride, dtype)
    expected = (x.shape[0], *plan.output_shape)
    if dy.shape != expected:
        raise ValueError(
            f"dy must have the forward output's shape {expected} for x of shape {x.shape}, "
            f"pool_size {plan.pool} and stride {plan.stride}, got {dy.shape}"
        )
    if x.size == 0:
        return np.zeros(x.shape, dtype=dtype)
    return plan.backward(x, plan.forward(x, n_threads), dy, n_threads)


class L2PoolPlan(PoolPlan):
    """L2 pooling of one image shape (H, W, C), decided once (see :class:`PoolPlan`).

    The backward pass takes the forward input and output; each call takes C-contiguous
    arrays of the plan's dtype and image shape (the caller guarantees it).
    """

    def __init__(self, image_shape, pool_size, stride, dtype):
        super().__init__(image_shape, pool_size, stride, "l2", dtype)

    def forward(self, x, n_threads, ws=None):
        """y, the norm of each window."""
        n_threads = resolve_threads(n_threads, 2 * x.shape[0] * self.work)
        y = empty(ws, "y", (x.shape[0], *self.output_shape), self.dtype)
        _pool.l2_pool2d_forward(x, y, *self.pool, *self.stride, n_threads)
        return y

    def predict(self, x, n_threads, ws=None):
        return self.forward(x, n_threads, ws)

    def backward(self, x, y, dy, n_threads, ws=None):
        """dx from the forward input x, its output y and the output's gradient dy."""
        n_threads = resolve_threads(n_threads, 2 * dy.shape[0] * self.work)
        dx = empty(ws, "dx", x.shape, self.dtype)
        _pool.l2_pool2d_backward(x, y, dy, dx, *self.pool, *self.stride, n_threads)
        return dx
