"""Spatial pyramid pooling on NHWC arrays: any image size to a fixed-length vector.

Each level ``l`` pools the image into ``l x l`` bins with PyTorch's adaptive pooling rule
(see :func:`~fastcnn.ops.geometry.adaptive_bins`); each level's ``(l, l, C)`` result is
flattened in NHWC order and the levels are concatenated in order, ``(N, H, W, C) ->
(N, C * sum(l * l))``. Validated wrappers over ``fastcnn._ext._pool``, re-exported by
:mod:`fastcnn.functional`, and the plan a network's ``SpatialPyramidPool2D`` layer runs.
Results have the input's float dtype and do not depend on ``n_threads``.
"""
import numbers

import numpy as np

from .._ext import _pool
from ._validation import as_float_array, check_same_dtype, result_dtype
from .geometry import pyramid_bins
from .threads import resolve_threads
from .workspace import empty

__all__ = ["spatial_pyramid_pool", "spatial_pyramid_pool_backward"]

MODES = ("max", "avg")


def check_levels(levels):
    """``levels`` as a tuple of ints >= 1; a non-empty sequence of them is required."""
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (tuple, list, np.ndarray)):
        raise TypeError(
            f"levels must be a sequence of positive ints such as (1, 2, 4), got {levels!r}"
        )
    if len(levels) == 0:
        raise ValueError("levels must hold at least one level, e.g. (1, 2, 4)")
    for level in levels:
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Integral):
            raise TypeError(f"levels must be positive ints, got {levels!r}")
        if level < 1:
            raise ValueError(f"levels must be >= 1 (bins per side), got {levels!r}")
    return tuple(int(level) for level in levels)


def check_mode(mode):
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    return mode


def spatial_pyramid_pool(x, levels=(1, 2, 4), mode="max", n_threads=None):
    """Spatial pyramid pooling of NHWC images into one vector per image.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        Any H, W >= 1 (below a level's size, bins repeat pixels). Integer input is cast to
        float32; float64 stays float64.
    levels : sequence of int, default=(1, 2, 4)
        Bins per side of each level, each >= 1.
    mode : {"max", "avg"}, default="max"
        The maximum or the mean of each bin. Max ties go to the first maximum in
        row-major order; a bin holding NaN gives NaN.
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of shape (N, C * sum(l * l for l in levels)), dtype of x
        Level by level; within a level, bin row, bin column, then channel.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import spatial_pyramid_pool
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> spatial_pyramid_pool(x, levels=(1, 2))
    array([[15.,  5.,  7., 13., 15.]])
    >>> spatial_pyramid_pool(x, levels=(1,), mode="avg")
    array([[7.5]])
    """
    x = as_float_array(x, "x", 4)
    plan = PyramidPlan(x.shape[1:], levels, mode, x.dtype)
    y, _ = plan.forward(x, n_threads)
    return y


def spatial_pyramid_pool_backward(x, dy, levels=(1, 2, 4), mode="max", n_threads=None):
    """Gradient of :func:`spatial_pyramid_pool` with respect to its input.

    "max" sends each output's gradient to the element that was its bin's maximum; "avg"
    shares it equally among the bin's elements. Where bins overlap (between levels, and
    within a level when the size is not a multiple of it), the contributions add up.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        The forward input (max mode finds the maxima again from it).
    dy : array-like of shape (N, C * sum(l * l for l in levels))
        Gradient of the loss with respect to the pooled output.
    levels, mode : as in :func:`spatial_pyramid_pool`
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape (N, H, W, C), dtype of x and dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import spatial_pyramid_pool_backward
    >>> x = np.arange(4.0).reshape(1, 2, 2, 1)
    >>> spatial_pyramid_pool_backward(x, np.ones((1, 1)), levels=(1,))[0, :, :, 0]
    array([[0., 0.],
           [0., 1.]])
    """
    check_same_dtype(x=x, dy=dy)
    dtype = result_dtype(x, dy)
    x = as_float_array(x, "x", 4, dtype)
    dy = as_float_array(dy, "dy", 2, dtype)
    plan = PyramidPlan(x.shape[1:], levels, mode, dtype)
    expected = (x.shape[0], *plan.output_shape)
    if dy.shape != expected:
        raise ValueError(
            f"dy must have the forward output's shape {expected} for x of shape {x.shape} "
            f"and levels {plan.levels} (C * sum(l * l) = {plan.output_shape[0]}), "
            f"got {dy.shape}"
        )
    _, argmax = plan.forward(x, n_threads)
    return plan.backward(dy, x.shape, argmax, n_threads)


class PyramidPlan:
    """Spatial pyramid pooling of one image shape (H, W, C), decided once.

    The bins are laid out when the plan is made; each call takes C-contiguous arrays of
    the plan's dtype and image shape (the caller guarantees it) and writes into workspace
    arrays.
    """

    def __init__(self, image_shape, levels, mode, dtype):
        h, w, c = image_shape
        if h < 1 or w < 1:
            raise ValueError(
                f"x must have at least one pixel per image, got images of {h}x{w}x{c}"
            )
        self.levels = check_levels(levels)
        self.mode = check_mode(mode)
        self.dtype = np.dtype(dtype)
        self.bins = pyramid_bins((h, w), self.levels)
        self.n_bins = len(self.bins)
        self.channels = c
        self.output_shape = (self.n_bins * c,)
        # elements read per image: every bin's size, times the channels
        sizes = (self.bins[:, 1] - self.bins[:, 0]) * (self.bins[:, 3] - self.bins[:, 2])
        self.work = int(sizes.sum()) * c

    def forward(self, x, n_threads, ws=None):
        """(y, argmax): y of shape (N, C * bins); argmax (N, bins, C), None for "avg"."""
        n = x.shape[0]
        n_threads = resolve_threads(n_threads, n * self.work)
        y = empty(ws, "y", (n, *self.output_shape), self.dtype)
        y3 = y.reshape(n, self.n_bins, self.channels)
        if self.mode == "avg":
            _pool.pyramid_avg_forward(x, self.bins, y3, n_threads)
            return y, None
        argmax = empty(ws, "argmax", y3.shape, np.int64)
        _pool.pyramid_max_forward(x, self.bins, y3, argmax, n_threads)
        return y, argmax

    def backward(self, dy, x_shape, argmax, n_threads, ws=None):
        n = x_shape[0]
        n_threads = resolve_threads(n_threads, n * self.work)
        dx = empty(ws, "dx", x_shape, self.dtype)
        if self.mode == "avg":
            dy3 = dy.reshape(n, self.n_bins, self.channels)
            _pool.pyramid_avg_backward(dy3, self.bins, dx, n_threads)
        else:
            # a scatter to the maxima, as max pooling's: the bins as one output row
            dy4 = dy.reshape(n, 1, self.n_bins, self.channels)
            _pool.max_pool2d_backward(dy4, argmax.reshape(dy4.shape), dx, n_threads)
        return dx
