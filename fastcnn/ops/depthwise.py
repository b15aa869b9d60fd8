"""Depthwise convolution on NHWC arrays with (R, S, C, M) weights: validated ops over the plan.

Re-exported by :mod:`fastcnn.functional`. Each input channel is convolved with its own M
filters (M, the depth multiplier, is w's last axis); output channel ``c * M + m`` comes
from input channel ``c`` through filter ``w[:, :, c, m]``, as in TensorFlow's
``depthwise_conv2d`` and PyTorch's ``conv2d(..., groups=C)``. Each call validates its
arguments, then builds a :class:`~fastcnn.ops._depthwise_plan.DepthwisePlan` and runs it;
a network's layers keep one plan per layer instead.
"""
from ._depthwise_plan import DepthwisePlan
from ._validation import as_float_array, check_same_dtype, result_dtype
from .geometry import checked_conv_geometry

__all__ = ["DepthwisePlan", "depthwise_conv2d", "depthwise_conv2d_backward"]


def _depthwise_geometry(x, w, stride, padding, dilation):
    n, h, wd, c = x.shape
    kh, kw, wc, m = w.shape
    if 0 in (kh, kw, wc, m):
        raise ValueError(f"w must have no empty dimension, got shape {w.shape} (R, S, C, M)")
    if c != wc:
        raise ValueError(
            f"x has {c} channels (x is NHWC, shape {x.shape}) but w has filters for {wc} "
            f"(w is (R, S, C, M) with M the depth multiplier, shape {w.shape})"
        )
    return checked_conv_geometry((h, wd), (kh, kw), stride, padding, dilation)


def depthwise_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, n_threads=None, *,
                     activation=None, isa=None):
    """Depthwise 2-D convolution (cross-correlation), NHWC.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
    w : array-like of shape (R, S, C, M)
        M filters per input channel (the depth multiplier).
    b : array-like of shape (C * M,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int, (vertical, horizontal), (top, bottom, left, right), "valid" or "same"
        As in :func:`~fastcnn.functional.conv2d`; "same" is TensorFlow's.
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.
    activation : None or "relu", applied after the bias, fused into the kernel.
    isa : None or 0, 1, 2
        SIMD path (0 baseline, 1 AVX2, 2 AVX-512); None picks the best the CPU has.

    Returns
    -------
    y : ndarray of shape (N, Ho, Wo, C * M), dtype of x
        ``y[..., c * M + m]`` is channel c convolved with ``w[:, :, c, m]``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import depthwise_conv2d
    >>> x = np.ones((1, 3, 3, 2))
    >>> w = np.stack([np.ones((3, 3)), 2 * np.ones((3, 3))], axis=-1)[:, :, :, None]
    >>> depthwise_conv2d(x, w, padding="same")[0, :, :, 1]
    array([[ 8., 12.,  8.],
           [12., 18., 12.],
           [ 8., 12.,  8.]])
    """
    check_same_dtype(x=x, w=w, b=b)
    dtype = result_dtype(x, w, b)
    x = as_float_array(x, "x", 4, dtype)
    w = as_float_array(w, "w", 4, dtype)
    stride, pads, dilation, _ = _depthwise_geometry(x, w, stride, padding, dilation)
    kh, kw, c, m = w.shape
    if activation not in (None, "linear", "identity", "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    if b is not None:
        b = as_float_array(b, "b", 1, dtype)
        if b.shape != (c * m,):
            raise ValueError(f"b must have shape ({c * m},), one value per output channel "
                             f"(C * M = {c} * {m}), got {b.shape}")
    plan = DepthwisePlan(x.shape[1:], (kh, kw), m, stride, pads, dilation, dtype, isa)
    return plan.forward(x, w, b, activation == "relu", n_threads)


def depthwise_conv2d_backward(x, w, dy, stride=1, padding=0, dilation=1, need_dx=True,
                              n_threads=None, *, isa=None):
    """Gradients of :func:`depthwise_conv2d` (before its activation) with respect to x, w
    and b.

    The data gradient gathers, for each input pixel, the deltas of the output pixels that
    read it (column phase by column phase when strided); the weight gradient sums x times
    dy per tap over fixed chunks of the batch, added in chunk order; the bias gradient
    sums dy. Results do not depend on the thread count.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C), the forward input
    w : array-like of shape (R, S, C, M)
    dy : array-like of shape (N, Ho, Wo, C * M), the gradient of the loss w.r.t. the output
    stride, padding, dilation : as in :func:`depthwise_conv2d`
    need_dx : bool
        False skips the data gradient (a network's first layer) and returns None for it.
    n_threads, isa : as in :func:`depthwise_conv2d`

    Returns
    -------
    dx : ndarray (N, H, W, C) or None
    dw : ndarray (R, S, C, M)
    db : ndarray (C * M,)

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import depthwise_conv2d_backward
    >>> dx, dw, db = depthwise_conv2d_backward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)),
    ...                                        np.ones((1, 2, 2, 1)))
    >>> dw[:, :, 0, 0]
    array([[4., 4., 4.],
           [4., 4., 4.],
           [4., 4., 4.]])
    >>> db
    array([4.])
    """
    check_same_dtype(x=x, w=w, dy=dy)
    dtype = result_dtype(x, w, dy)
    x = as_float_array(x, "x", 4, dtype)
    w = as_float_array(w, "w", 4, dtype)
    dy = as_float_array(dy, "dy", 4, dtype)
    stride, pads, dilation, (ho, wo) = _depthwise_geometry(x, w, stride, padding, dilation)
    n = x.shape[0]
    kh, kw, c, m = w.shape
    if dy.shape != (n, ho, wo, c * m):
        raise ValueError(
            f"dy must have the forward output's shape {(n, ho, wo, c * m)} for x {x.shape} "
            f"and w {w.shape}, got {dy.shape}"
        )
    plan = DepthwisePlan(x.shape[1:], (kh, kw), m, stride, pads, dilation, dtype, isa)
    return plan.backward(x, w, dy, need_dx, n_threads)
