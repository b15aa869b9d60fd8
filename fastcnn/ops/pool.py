"""Pooling on NHWC arrays: validated wrappers over ``fastcnn._ext._pool``.

Re-exported by :mod:`fastcnn.functional`. Windows have no padding and the output size is
floored, ``Ho = (H - pool_h) // stride_h + 1``. Results have the input's float dtype and do
not depend on ``n_threads``.
"""
import numbers

import numpy as np

from .._ext import _pool
from ._validation import as_float_array
from .geometry import int_pair, pool_output_hw
from .threads import resolve_threads
from .workspace import empty

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
]


def _pool_geometry(in_hw, pool_size, stride):
    """(pool, stride, output size) as (h, w) pairs; the pool must fit the input."""
    pool = int_pair(pool_size, "pool_size")
    stride = pool if stride is None else int_pair(stride, "stride")
    h, w = in_hw
    if pool[0] > h or pool[1] > w:
        raise ValueError(
            f"pool {pool[0]}x{pool[1]} does not fit a {h}x{w} input; use a smaller pool_size"
        )
    return pool, stride, pool_output_hw(in_hw, pool, stride)


def _check_x_shape(x_shape):
    """``x_shape`` as a tuple (N, H, W, C): N, C >= 0 and H, W >= 1."""
    if not isinstance(x_shape, (tuple, list, np.ndarray)) or len(x_shape) != 4:
        raise ValueError(
            f"x_shape must be the forward input's shape, a 4-tuple (N, H, W, C), got {x_shape!r}"
        )
    for v in x_shape:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"x_shape must be a 4-tuple of ints (N, H, W, C), got {x_shape!r}")
    n, h, w, c = (int(v) for v in x_shape)
    if n < 0 or c < 0 or h < 1 or w < 1:
        raise ValueError(
            "x_shape must be a 4-tuple (N, H, W, C) of positive ints (N and C may be 0), "
            f"got {x_shape!r}"
        )
    return n, h, w, c


def _checked_argmax(argmax, dy_shape, in_hw, forward):
    """``argmax`` as a C-contiguous int64 array of ``dy_shape``, each a flat index into an
    image of ``in_hw``, as the function named ``forward`` returns them."""
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(
            f"argmax must be an integer array (the one {forward} returns), got dtype "
            f"{argmax.dtype}"
        )
    if argmax.shape != dy_shape:
        raise ValueError(f"argmax must have dy's shape {dy_shape}, got {argmax.shape}")
    h, w = in_hw
    if argmax.size:
        lo, hi = argmax.min(), argmax.max()
        if lo < 0 or hi >= h * w:
            raise ValueError(
                f"argmax values must be in [0, {h * w}) (flat indices into a {h}x{w} image), "
                f"got values in [{lo}, {hi}]"
            )
    return np.ascontiguousarray(argmax, dtype=np.int64)


def max_pool2d(x, pool_size, stride=None, n_threads=None):
    """2-D max pooling of NHWC images, with the position of each maximum.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        Integer input is cast to float32; float64 stays float64.
    pool_size : int or (int, int)
        Window height and width, >= 1, at most the image's.
    stride : int or (int, int), optional
        Window step; None (the default) means ``pool_size`` (non-overlapping windows).
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of shape (N, Ho, Wo, C), dtype of x
        ``Ho = (H - pool_h) // stride_h + 1``, likewise ``Wo``.
    argmax : ndarray of shape (N, Ho, Wo, C), int64
        Flat index ``ih * W + iw`` of each maximum inside its image. Ties go to the first
        maximum in row-major window order; a window holding NaN gives NaN and the index of
        its first NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import max_pool2d
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> y, argmax = max_pool2d(x, 2)
    >>> y[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    >>> argmax[0, :, :, 0]
    array([[ 5,  7],
           [13, 15]])
    """
    x = as_float_array(x, "x", 4)
    pool, stride, (ho, wo) = _pool_geometry(x.shape[1:3], pool_size, stride)
    n, _, _, c = x.shape
    n_threads = resolve_threads(n_threads, n * ho * wo * c * pool[0] * pool[1])
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.empty((n, ho, wo, c), dtype=np.int64)
    if y.size:
        _pool.max_pool2d_forward(x, y, argmax, pool[0], pool[1], stride[0], stride[1],
                                 n_threads)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, n_threads=None):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each output's gradient goes to the input element that was its maximum; where windows
    overlap, the gradients reaching one element add up.

    Parameters
    ----------
    dy : array-like of shape (N, Ho, Wo, C)
        Gradient of the loss with respect to the pooled output.
    argmax : array-like of ints, shape (N, Ho, Wo, C)
        The ``argmax`` returned by :func:`max_pool2d`, each in ``[0, H * W)``.
    x_shape : tuple (N, H, W, C)
        Shape of the forward input.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape x_shape, dtype of dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import max_pool2d, max_pool2d_backward
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> y, argmax = max_pool2d(x, 2)
    >>> max_pool2d_backward(np.ones_like(y), argmax, x.shape)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]], dtype=float32)
    """
    dy = as_float_array(dy, "dy", 4)
    n, h, w, c = _check_x_shape(x_shape)
    if dy.shape[0] != n or dy.shape[3] != c:
        raise ValueError(
            f"dy of shape {dy.shape} does not match x_shape {tuple(x_shape)}: the batch size "
            "and channel count (first and last axes) must be the same"
        )
    if dy.shape[1] > h or dy.shape[2] > w:
        raise ValueError(
            f"dy of shape {dy.shape} has more output rows/columns than x_shape "
            f"{tuple(x_shape)} has input ones; pass the forward input's shape"
        )
    argmax_arr = _checked_argmax(argmax, dy.shape, (h, w), "max_pool2d")
    n_threads = resolve_threads(n_threads, 2 * argmax_arr.size)
    dx = np.empty((n, h, w, c), dtype=dy.dtype)
    if dx.size:
        _pool.max_pool2d_backward(dy, argmax_arr, dx, n_threads)
    return dx


def avg_pool2d(x, pool_size, stride=None, n_threads=None):
    """2-D average pooling of NHWC images: the mean of each window.

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

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import avg_pool2d
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> avg_pool2d(x, 2)[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    x = as_float_array(x, "x", 4)
    pool, stride, (ho, wo) = _pool_geometry(x.shape[1:3], pool_size, stride)
    n_threads = resolve_threads(n_threads, x.shape[0] * ho * wo * x.shape[3] * pool[0] * pool[1])
    y = np.empty((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    if y.size:
        _pool.avg_pool2d_forward(x, y, pool[0], pool[1], stride[0], stride[1], n_threads)
    return y


def avg_pool2d_backward(dy, x_shape, pool_size, stride=None, n_threads=None):
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Each output's gradient, divided by the window size, goes to every element of its
    window; where windows overlap, the contributions add up.

    Parameters
    ----------
    dy : array-like of shape (N, Ho, Wo, C)
        Gradient of the loss with respect to the pooled output.
    x_shape : tuple (N, H, W, C)
        Shape of the forward input.
    pool_size, stride : as in :func:`avg_pool2d`
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape x_shape, dtype of dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import avg_pool2d_backward
    >>> avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 2, 2, 1), 2)[0, :, :, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    dy = as_float_array(dy, "dy", 4)
    n, h, w, c = _check_x_shape(x_shape)
    pool, stride, (ho, wo) = _pool_geometry((h, w), pool_size, stride)
    if dy.shape != (n, ho, wo, c):
        raise ValueError(
            f"dy must have the forward output's shape {(n, ho, wo, c)} for x_shape "
            f"{tuple(x_shape)}, pool_size {pool} and stride {stride}, got {dy.shape}"
        )
    n_threads = resolve_threads(n_threads, dy.size * pool[0] * pool[1])
    dx = np.empty((n, h, w, c), dtype=dy.dtype)
    if dx.size:
        _pool.avg_pool2d_backward(dy, dx, pool[0], pool[1], stride[0], stride[1], n_threads)
    return dx


def global_avg_pool2d(x, n_threads=None):
    """Mean of each channel over the whole image: (N, H, W, C) -> (N, C).

    Sums are taken in double precision whatever the dtype.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
    n_threads : int or None

    Returns
    -------
    y : ndarray of shape (N, C), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import global_avg_pool2d
    >>> global_avg_pool2d(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[3., 4.]])
    """
    x = as_float_array(x, "x", 4)
    n, h, w, c = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"x must have at least one pixel per image, got shape {x.shape}")
    if n * c == 0:
        return np.empty((n, c), dtype=x.dtype)
    return global_avg_pool_into(x, n_threads)


def global_avg_pool2d_backward(dy, x_shape, n_threads=None):
    """Gradient of :func:`global_avg_pool2d`: ``dy / (H * W)`` at every pixel.

    Parameters
    ----------
    dy : array-like of shape (N, C)
    x_shape : tuple (N, H, W, C)
        Shape of the forward input.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape x_shape, dtype of dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import global_avg_pool2d_backward
    >>> global_avg_pool2d_backward(np.array([[4.0]]), (1, 2, 2, 1))[0, :, :, 0]
    array([[1., 1.],
           [1., 1.]])
    """
    dy = as_float_array(dy, "dy", 2)
    n, h, w, c = _check_x_shape(x_shape)
    if dy.shape != (n, c):
        raise ValueError(
            f"dy must have shape (N, C) = {(n, c)} for x_shape {tuple(x_shape)}, got {dy.shape}"
        )
    if n * h * w * c == 0:
        return np.empty((n, h, w, c), dtype=dy.dtype)
    return global_avg_pool_backward_into(dy, (n, h, w, c), n_threads)


def global_max_pool2d(x, n_threads=None):
    """Maximum of each channel over the whole image, (N, H, W, C) -> (N, C), with its
    position.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
        Integer input is cast to float32; float64 stays float64.
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of shape (N, C), dtype of x
    argmax : ndarray of shape (N, C), int64
        Flat index ``ih * W + iw`` of each maximum in its image. Ties go to the first
        maximum in row-major order; a channel holding NaN gives NaN and the index of its
        first NaN (as :func:`max_pool2d`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import global_max_pool2d
    >>> y, argmax = global_max_pool2d(np.array([[[[1.0, 5.0], [4.0, 2.0]]]]))
    >>> y, argmax
    (array([[4., 5.]]), array([[1, 0]]))
    """
    x = as_float_array(x, "x", 4)
    n, h, w, c = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"x must have at least one pixel per image, got shape {x.shape}")
    if n * c == 0:
        return np.empty((n, c), dtype=x.dtype), np.empty((n, c), dtype=np.int64)
    return global_max_pool_into(x, n_threads)


def global_max_pool2d_backward(dy, argmax, x_shape, n_threads=None):
    """Gradient of :func:`global_max_pool2d`: each ``dy[n, c]`` goes to the pixel that was
    the maximum, every other pixel gets 0.

    Parameters
    ----------
    dy : array-like of shape (N, C)
    argmax : array-like of ints, shape (N, C)
        The ``argmax`` returned by :func:`global_max_pool2d`, each in ``[0, H * W)``.
    x_shape : tuple (N, H, W, C)
        Shape of the forward input.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of shape x_shape, dtype of dy

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import global_max_pool2d_backward
    >>> global_max_pool2d_backward(np.array([[3.0]]), np.array([[2]]), (1, 2, 2, 1))[0, :, :, 0]
    array([[0., 0.],
           [3., 0.]])
    """
    dy = as_float_array(dy, "dy", 2)
    n, h, w, c = _check_x_shape(x_shape)
    if dy.shape != (n, c):
        raise ValueError(
            f"dy must have shape (N, C) = {(n, c)} for x_shape {tuple(x_shape)}, got {dy.shape}"
        )
    argmax = _checked_argmax(argmax, dy.shape, (h, w), "global_max_pool2d")
    if n * h * w * c == 0:
        return np.zeros((n, h, w, c), dtype=dy.dtype)
    return global_max_pool_backward_into(dy, argmax, (n, h, w, c), n_threads)


class PoolPlan:
    """Max or average pooling of one image shape (H, W, C), decided once.

    What a network's pooling layer runs for every batch: the geometry is checked when the
    plan is made, and each call takes C-contiguous arrays of the plan's dtype and image
    shape (the caller guarantees it) and writes into workspace arrays.
    """

    def __init__(self, image_shape, pool_size, stride, mode, dtype):
        h, w, c = image_shape
        self.mode = mode
        self.pool, self.stride, (ho, wo) = _pool_geometry((h, w), pool_size, stride)
        self.output_shape = (ho, wo, c)
        self.dtype = np.dtype(dtype)
        self.work = ho * wo * c * self.pool[0] * self.pool[1]  # per image
        # Windows that tile the image (no overlap), at least a vector of channels: the
        # forward pass keeps each maximum's place in its window in a byte (not a flat
        # int64 index), the backward pass writes each dx element once, no zeroing first
        self.tiled = (mode == "max" and self.pool == self.stride
                      and self.pool[0] * self.pool[1] <= 256
                      and c >= _pool.vector_length(-1, self.dtype.itemsize))

    def forward(self, x, n_threads, ws=None):
        """(y, argmax): argmax is None for average pooling, and for a :attr:`tiled` one
        each maximum's position in its window (uint8), else its flat index (int64)."""
        n_threads = resolve_threads(n_threads, x.shape[0] * self.work)
        y = empty(ws, "y", (x.shape[0], *self.output_shape), self.dtype)
        if self.mode == "avg":
            _pool.avg_pool2d_forward(x, y, *self.pool, *self.stride, n_threads)
            return y, None
        if self.tiled:
            positions = empty(ws, "positions", y.shape, np.uint8)
            _pool.max_pool2d_forward_tiled(x, y, positions, *self.pool, n_threads)
            return y, positions
        argmax = empty(ws, "argmax", y.shape, np.int64)
        _pool.max_pool2d_forward(x, y, argmax, *self.pool, *self.stride, n_threads)
        return y, argmax

    def predict(self, x, n_threads, ws=None):
        """y alone (no positions for a backward pass)."""
        if self.mode == "avg":
            return self.forward(x, n_threads, ws)[0]
        n_threads = resolve_threads(n_threads, x.shape[0] * self.work)
        y = empty(ws, "y", (x.shape[0], *self.output_shape), self.dtype)
        _pool.max_pool2d_values_forward(x, y, *self.pool, *self.stride, n_threads)
        return y

    def backward(self, dy, x_shape, argmax, n_threads, ws=None, relu_pooled=None):
        """dx; with ``relu_pooled`` (this pooling's output, for a :attr:`tiled` one) also
        the gradient of a relu before the pooling: zero where the window's maximum is not
        above zero."""
        if relu_pooled is not None and not self.tiled:
            raise ValueError("relu_pooled needs a max pooling whose windows tile the image")
        n_threads = resolve_threads(n_threads, dy.shape[0] * self.work)
        dx = empty(ws, "dx", x_shape, self.dtype)
        if self.mode == "avg":
            _pool.avg_pool2d_backward(dy, dx, *self.pool, *self.stride, n_threads)
        elif self.tiled:
            _pool.max_pool2d_backward_tiled(dy, argmax, dx, *self.pool, n_threads, relu_pooled)
        else:
            _pool.max_pool2d_backward(dy, argmax, dx, n_threads)
        return dx


def global_avg_pool_into(x, n_threads, ws=None):
    """:func:`global_avg_pool2d` of a trusted C-contiguous x, into a workspace array."""
    y = empty(ws, "y", (x.shape[0], x.shape[3]), x.dtype)
    _pool.global_avg_pool2d_forward(x, y, resolve_threads(n_threads, x.size))
    return y


def global_avg_pool_backward_into(dy, x_shape, n_threads, ws=None):
    """:func:`global_avg_pool2d_backward` of a trusted dy, into a workspace array."""
    dx = empty(ws, "dx", x_shape, dy.dtype)
    _pool.global_avg_pool2d_backward(dy, dx, resolve_threads(n_threads, dx.size))
    return dx


def global_max_pool_into(x, n_threads, ws=None):
    """:func:`global_max_pool2d` of a trusted C-contiguous x, into workspace arrays: max
    pooling with the whole image as the one window."""
    n, h, w, c = x.shape
    y = empty(ws, "y", (n, c), x.dtype)
    argmax = empty(ws, "argmax", (n, c), np.int64)
    _pool.max_pool2d_forward(x, y.reshape(n, 1, 1, c), argmax.reshape(n, 1, 1, c), h, w, 1, 1,
                             resolve_threads(n_threads, x.size))
    return y, argmax


def global_max_pool_backward_into(dy, argmax, x_shape, n_threads, ws=None):
    """:func:`global_max_pool2d_backward` of trusted C-contiguous dy and argmax, into a
    workspace array."""
    n, _, _, c = x_shape
    dx = empty(ws, "dx", x_shape, dy.dtype)
    _pool.max_pool2d_backward(dy.reshape(n, 1, 1, c), argmax.reshape(n, 1, 1, c), dx,
                              resolve_threads(n_threads, dx.size))
    return dx
