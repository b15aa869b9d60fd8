"""Convolution on NHWC arrays with (R, S, C, K) weights: validated ops over the plans.

Re-exported by :mod:`fastcnn.functional`. Each call validates its arguments, then builds a
:class:`~fastcnn.ops._conv_plan.ConvPlan` for the geometry (for ``groups`` > 1 a
:class:`~fastcnn.ops._grouped_conv_plan.GroupedConvPlan`, one group's plan run on each
group's channels) and runs it; a network's layers keep one plan per layer instead.
"""
import numpy as np

from ._conv_plan import ConvPlan
from ._grouped_conv_plan import GroupedConvPlan
from ._isa import cpu_isa, isa_name, resolve_isa
from ._validation import as_float_array, check_same_dtype, result_dtype
from .geometry import (
    checked_conv_geometry,
    positive_int,
)

__all__ = ["ConvPlan", "GroupedConvPlan", "conv2d", "conv2d_backward", "cpu_isa", "isa_name",
           "resolve_isa"]

def _conv_geometry(x, w, stride, padding, dilation, groups=1):
    n, h, wd, c = x.shape
    kh, kw, wc, k = w.shape
    if 0 in (kh, kw, wc, k):
        raise ValueError(f"w must have no empty dimension, got shape {w.shape} (R, S, C, K)")
    if groups > 1 and (c % groups or k % groups):
        raise ValueError(
            f"groups={groups} must divide both the input channels (x has {c}) and the "
            f"output channels (w has {k}); choose groups among their common divisors"
        )
    if groups > 1 and c != wc * groups:
        raise ValueError(
            f"x has {c} channels, so with groups={groups} w must have {c // groups} input "
            f"channels per group (w is (R, S, C / groups, K)), got w of shape {w.shape}"
        )
    if groups == 1 and c != wc:
        raise ValueError(
            f"x has {c} channels (x is NHWC, shape {x.shape}) but w expects {wc} "
            f"(w is (R, S, C, K), shape {w.shape})"
        )
    return checked_conv_geometry((h, wd), (kh, kw), stride, padding, dilation)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, activation=None, n_threads=None,
           isa=None, groups=1, bf16=False):
    """2-D convolution (cross-correlation, as in every deep-learning library), NHWC.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
    w : array-like of shape (R, S, C / groups, K)
    b : array-like of shape (K,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int, (vertical, horizontal), (top, bottom, left, right), "valid" or "same"
        "same" is TensorFlow's: output size ceil(input / stride), odd extra at bottom/right.
    activation : None or "relu", applied after the bias, fused into the kernel.
    n_threads : int or None
    isa : None or 0, 1, 2
        SIMD path (0 baseline, 1 AVX2, 2 AVX-512); None picks the best the CPU has.
    groups : int, default=1
        Input and output channels split into this many consecutive equal blocks, output
        block j computed from input block j only (it must divide C and K).
    bf16 : bool, default=False
        Mixed precision: multiply x and w rounded to bfloat16 (to nearest, ties to even)
        and add in float32, on the AVX512_BF16 kernels (float32 input, groups=1; a single
        input channel keeps the float32 kernel).

    Returns
    -------
    y : ndarray of shape (N, Ho, Wo, K), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import conv2d
    >>> conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)))[0, :, :, 0]
    array([[9., 9.],
           [9., 9.]])
    """
    check_same_dtype(x=x, w=w, b=b)
    dtype = result_dtype(x, w, b)
    x = as_float_array(x, "x", 4, dtype)
    w = as_float_array(w, "w", 4, dtype)
    groups = positive_int(groups, "groups")
    stride, pads, dilation, (ho, wo) = _conv_geometry(x, w, stride, padding, dilation,
                                                      groups)
    kh, kw, c, k = w.shape
    if activation not in (None, "linear", "identity", "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    if b is not None:
        b = as_float_array(b, "b", 1, dtype)
        if b.shape != (k,):
            raise ValueError(f"b must have shape ({k},) to match w's {k} output channels, "
                             f"got {b.shape}")
    plan = _plan(x, w, groups, stride, pads, dilation, dtype, isa, bf16)
    return plan.forward(x, w, b, activation == "relu", n_threads)


def conv2d_backward(x, w, dy, stride=1, padding=0, dilation=1, need_dx=True, n_threads=None,
                    isa=None, groups=1, bf16=False):
    """Gradients of :func:`conv2d` (before its activation) with respect to x, w and b.

    The data gradient convolves the zero-padded delta with the 180-degree rotated,
    channel-transposed filter; for stride > 1 it is split into stride phases, each a
    dense convolution with the taps that reach it (no multiplications by inserted zeros).
    The weight gradient correlates x with dy; the bias gradient sums dy.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C), the forward input
    w : array-like of shape (R, S, C / groups, K)
    dy : array-like of shape (N, Ho, Wo, K), the gradient of the loss w.r.t. the output
    stride, padding, dilation : as in :func:`conv2d`
    need_dx : bool
        False skips the data gradient (a network's first layer) and returns None for it.
    n_threads, isa, groups : as in :func:`conv2d`
    bf16 : bool, default=False
        As in :func:`conv2d`: the data gradient multiplies bf16 dy and w, the weight
        gradient (from 8 input channels) bf16 x and dy, all adding in float32; the bias
        gradient stays float32.

    Returns
    -------
    dx : ndarray (N, H, W, C) or None
    dw : ndarray (R, S, C / groups, K)
    db : ndarray (K,)

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import conv2d_backward
    >>> dx, dw, db = conv2d_backward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)),
    ...                              np.ones((1, 2, 2, 1)))
    >>> dw[:, :, 0, 0]
    array([[4., 4., 4.],
           [4., 4., 4.],
           [4., 4., 4.]])
    """
    check_same_dtype(x=x, w=w, dy=dy)
    dtype = result_dtype(x, w, dy)
    x = as_float_array(x, "x", 4, dtype)
    w = as_float_array(w, "w", 4, dtype)
    dy = as_float_array(dy, "dy", 4, dtype)
    groups = positive_int(groups, "groups")
    stride, pads, dilation, (ho, wo) = _conv_geometry(x, w, stride, padding, dilation,
                                                      groups)
    n, h, wd, c = x.shape
    kh, kw, _, k = w.shape
    if dy.shape != (n, ho, wo, k):
        raise ValueError(
            f"dy must have the forward output's shape {(n, ho, wo, k)} for x {x.shape} and "
            f"w {w.shape}, got {dy.shape}"
        )
    plan = _plan(x, w, groups, stride, pads, dilation, dtype, isa, bf16)
    return plan.backward(x, w, dy, need_dx, n_threads)


def _plan(x, w, groups, stride, pads, dilation, dtype, isa, bf16=False):
    if bf16:
        if dtype != np.float32:
            raise ValueError(f"bf16=True takes float32 arrays, got {np.dtype(dtype)}: convert them "
                             "with .astype(np.float32)")
        if groups != 1:
            raise ValueError("bf16=True runs ungrouped convolutions only (groups=1), got "
                             f"groups={groups}")
    if groups == 1:
        return ConvPlan(x.shape[1:], w.shape, stride, pads, dilation, dtype, isa, bf16=bf16)
    return GroupedConvPlan(x.shape[1:], w.shape, groups, stride, pads, dilation, dtype, isa)
