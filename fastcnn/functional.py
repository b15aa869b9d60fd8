"""The compiled kernels as plain functions on NHWC arrays.

Every function validates its arguments (shapes, dtypes, index ranges) before any compiled
code runs, accepts any array-like of real numbers (copied or cast as needed) and returns
arrays of the input's float dtype (float32 or float64). Images are NHWC
``(n_images, height, width, channels)``; convolution weights are ``(R, S, C, K)``:
kernel height, kernel width, input channels, output channels. ``n_threads=None`` uses all
usable cores; results do not depend on the thread count.

Examples
--------
>>> import numpy as np
>>> from fastcnn import functional as F
>>> x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
>>> w = np.ones((3, 3, 3, 4), dtype=np.float32)
>>> F.conv2d(x, w, padding="same").shape
(2, 8, 8, 4)
"""
import numpy as np

from ._checks import (
    as_float_array,
    check_same_dtype,
    int_pair,
    output_size,
    padding_amounts,
    resolve_threads,
    result_dtype,
)
from ._ext import _conv
from ._functional_act import *  # noqa: F401,F403
from ._functional_act import __all__ as _act_all
from ._functional_pool import *  # noqa: F401,F403
from ._functional_pool import __all__ as _pool_all

__all__ = ["conv2d", "conv2d_backward", *_pool_all, *_act_all]

# Fewer weight-gradient tiles than this and the batch is split into chunks with private
# partial sums (added in chunk order), so small layers still use every core. Fixed, so
# the arithmetic does not depend on the thread count.
_MIN_WEIGHT_GRAD_TASKS = 64
# The bias gradient sums this many fixed chunks of pixels in parallel, then adds them in order.
_BIAS_GRAD_CHUNKS = 64
# The weight gradient walks the batch in steps of about this many bytes of x and dy, so
# that each step stays in cache while every tile reads it.
_WEIGHT_GRAD_STEP_BYTES = 256 * 1024


def _resolve_isa(isa):
    best = _conv.cpu_isa()
    if isa is None:
        return best
    if isa not in (0, 1, 2):
        raise ValueError(f"isa must be None, 0 (baseline), 1 (AVX2) or 2 (AVX-512), got {isa!r}")
    if isa > best:
        raise ValueError(
            f"isa={isa} ({_conv.ISA_NAMES[isa]}) is not supported by this CPU; "
            f"the best it has is {best} ({_conv.ISA_NAMES[best]})"
        )
    return isa


def _vector_plan(isa, itemsize, n_out):
    """Instruction set and vectors per tile row for ``n_out`` output channels.

    Wide layers use two full vectors per tile row; narrow ones step down to a narrower
    vector so that little of each vector is padding.
    """
    if n_out > _conv.vector_length(isa, itemsize):
        return isa, 2
    while isa > 0 and n_out <= _conv.vector_length(isa - 1, itemsize):
        isa -= 1
    return isa, 1


def _row_vector_isa(isa, itemsize, width):
    """The widest instruction set whose vectors tile an output row of ``width`` with
    little waste (single-channel kernels vectorise along rows)."""
    while isa > 0:
        v = _conv.vector_length(isa, itemsize)
        if -(-width // v) * v <= 1.15 * width:
            break
        isa -= 1
    return isa


def _single_channel_rows(x, pads, kernel_w, dilation_w, wo, isa):
    """Zero-padded (N, Hp, Wp) copy of single-channel images, readable a vector past
    the last output column, and the output row width rounded up to the vector length."""
    n, h, wd, _ = x.shape
    v = _conv.vector_length(isa, x.itemsize)
    width = -(-wo // v) * v
    wp = max(wd + pads[2] + pads[3], width + (kernel_w - 1) * dilation_w)
    xpad = np.zeros((n, h + pads[0] + pads[1], wp), dtype=x.dtype)
    xpad[:, pads[0]:pads[0] + h, pads[2]:pads[2] + wd] = x[..., 0]
    return xpad, width


def _conv_geometry(x, w, stride, padding, dilation):
    n, h, wd, c = x.shape
    kh, kw, wc, k = w.shape
    if 0 in (kh, kw, wc, k):
        raise ValueError(f"w must have no empty dimension, got shape {w.shape} (R, S, C, K)")
    if c != wc:
        raise ValueError(
            f"x has {c} channels (x is NHWC, shape {x.shape}) but w expects {wc} "
            f"(w is (R, S, C, K), shape {w.shape})"
        )
    stride = int_pair(stride, "stride")
    dilation = int_pair(dilation, "dilation")
    pads = padding_amounts(padding, (h, wd), (kh, kw), stride, dilation)
    ho = output_size(h, pads[0], pads[1], kh, stride[0], dilation[0])
    wo = output_size(wd, pads[2], pads[3], kw, stride[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"kernel {kh}x{kw} (dilation {dilation[0]}x{dilation[1]}) does not fit the "
            f"{h}x{wd} input padded by {pads} (top, bottom, left, right); use a smaller "
            "kernel or dilation, or more padding (e.g. padding='same')"
        )
    return stride, pads, dilation, (ho, wo)


def _pack_blocks(w2, block):
    """(T, Cin, Cout) -> (Cout blocks, T, Cin, block), zero-padded in Cout."""
    taps, cin, cout = w2.shape
    n_blocks = -(-cout // block)
    packed = np.zeros((taps, cin, n_blocks * block), dtype=w2.dtype)
    packed[:, :, :cout] = w2
    return np.ascontiguousarray(packed.reshape(taps, cin, n_blocks, block).transpose(2, 0, 1, 3))


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, activation=None, n_threads=None,
           isa=None):
    """2-D convolution (cross-correlation, as in every deep-learning library), NHWC.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C)
    w : array-like of shape (R, S, C, K)
    b : array-like of shape (K,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int, (vertical, horizontal), (top, bottom, left, right), "valid" or "same"
        "same" is TensorFlow's: output size ceil(input / stride), odd extra at bottom/right.
    activation : None or "relu", applied after the bias, fused into the kernel.
    n_threads : int or None
    isa : None or 0, 1, 2
        SIMD path (0 baseline, 1 AVX2, 2 AVX-512); None picks the best the CPU has.

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
    stride, pads, dilation, (ho, wo) = _conv_geometry(x, w, stride, padding, dilation)
    kh, kw, c, k = w.shape
    if activation not in (None, "linear", "identity", "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    # work in vector multiply-adds (about 16 scalar ones each)
    n_threads = resolve_threads(n_threads, x.shape[0] * ho * wo * kh * kw * c * k // 16)
    isa_arg = isa
    isa, nv = _vector_plan(_resolve_isa(isa), x.itemsize, k)
    block = nv * _conv.vector_length(isa, x.itemsize)
    wpack = _pack_blocks(w.reshape(kh * kw, c, k), block)
    bias = np.zeros(wpack.shape[0] * block, dtype=dtype)
    if b is not None:
        b = as_float_array(b, "b", 1, dtype)
        if b.shape != (k,):
            raise ValueError(f"b must have shape ({k},) to match w's {k} output channels, "
                             f"got {b.shape}")
        bias[:k] = b
    out = np.empty((x.shape[0], ho, wo, k), dtype=dtype)
    if out.size and c == 1 and stride[1] == 1:
        isa = _row_vector_isa(_resolve_isa(isa_arg), x.itemsize, wo)
        xpad, width = _single_channel_rows(x, pads, kw, dilation[1], wo, isa)
        _conv.conv2d_forward_c1(xpad, w.reshape(kh * kw, k), bias[:k], out, kh, kw, stride[0],
                                dilation[0], dilation[1], width, activation == "relu", isa,
                                n_threads)
    elif out.size:
        _conv.conv2d_forward(x, wpack, bias, out, kh, kw, stride[0], stride[1], pads[0],
                             pads[2], dilation[0], dilation[1], activation == "relu", isa, nv,
                             n_threads)
    return out


def _data_grad_phases(shape_hw, kernel_hw, stride, pads, dilation):
    """For each stride phase (row0, col0): the taps (r, s) that reach it and their dy offsets.

    Input row i = row0 + stride*j (padded row a = i + pad_top) receives output row
    oh = (a - r*dilation) / stride for each r where that is an integer, i.e. oh = j + e_r
    with e_r = (row0 + pad_top - r*dilation) / stride, the same for every j of the phase.
    """
    axes = []
    for size, kernel, s, pad, d in zip(shape_hw, kernel_hw, stride, pads, dilation):
        phases = []
        for first in range(min(s, size)):
            taps = [(r, (first + pad - r * d) // s) for r in range(kernel)
                    if (first + pad - r * d) % s == 0]
            phases.append((first, taps))
        axes.append(phases)
    for row0, row_taps in axes[0]:
        for col0, col_taps in axes[1]:
            yield row0, col0, [(r, er, s, es) for r, er in row_taps for s, es in col_taps]


def _weight_grad(x, dy, pads, kernel_hw, stride, dilation, isa, n_threads):
    """dw by the register-tiled kernel: (channel tile x output-channel block) per task."""
    n, ho, wo, k = dy.shape
    c = x.shape[3]
    kh, kw = kernel_hw
    isa, nv = _vector_plan(isa, x.itemsize, k)
    block = nv * _conv.vector_length(isa, x.itemsize)
    k_padded = -(-k // block) * block
    if k_padded != k:
        dy_padded = np.zeros((n, ho, wo, k_padded), dtype=dy.dtype)
        dy_padded[..., :k] = dy
    else:
        dy_padded = dy
    if n == 0:
        return np.zeros((kh, kw, c, k), dtype=dy.dtype)
    n_tiles = kh * kw * -(-c // _conv.TILE_CHANNELS) * (k_padded // block)
    n_chunks = max(1, min(n, -(-_MIN_WEIGHT_GRAD_TASKS // n_tiles)))
    partial = np.empty((n_chunks, kh, kw, c, k), dtype=dy.dtype)
    images_per_step = max(1, _WEIGHT_GRAD_STEP_BYTES // (dy_padded[0].nbytes + x[0].nbytes))
    _conv.conv2d_backward_weights(x, dy_padded, partial, stride[0], stride[1], pads[0], pads[2],
                                  dilation[0], dilation[1], block, images_per_step, isa, nv,
                                  n_threads)
    return partial[0] if n_chunks == 1 else partial.sum(axis=0)


def _single_channel_weight_grad(x, dy, pads, kernel_hw, stride, dilation, isa, n_threads):
    """dw of a single-channel, width-stride-1 convolution, vectorised along rows."""
    n, ho, wo, k = dy.shape
    kh, kw = kernel_hw
    isa = _row_vector_isa(isa, x.itemsize, wo)
    xpad, width = _single_channel_rows(x, pads, kw, dilation[1], wo, isa)
    dyt = np.zeros((n, ho, k, width), dtype=dy.dtype)
    dyt[..., :wo] = dy.transpose(0, 1, 3, 2)
    n_chunks = max(1, min(n, -(-_MIN_WEIGHT_GRAD_TASKS // (kh * kw))))
    partial = np.empty((n_chunks, kh, kw, k), dtype=dy.dtype)
    _conv.conv2d_backward_weights_c1(xpad, dyt, partial, stride[0], dilation[0], dilation[1],
                                     isa, n_threads)
    dw = partial[0] if n_chunks == 1 else partial.sum(axis=0)
    return dw.reshape(kh, kw, 1, k)


def conv2d_backward(x, w, dy, stride=1, padding=0, dilation=1, need_dx=True, n_threads=None,
                    isa=None):
    """Gradients of :func:`conv2d` (before its activation) with respect to x, w and b.

    The data gradient convolves the zero-padded delta with the 180-degree rotated,
    channel-transposed filter; for stride > 1 it is split into stride phases, each a
    dense convolution with the taps that reach it (no multiplications by inserted zeros).
    The weight gradient correlates x with dy; the bias gradient sums dy.

    Parameters
    ----------
    x : array-like of shape (N, H, W, C), the forward input
    w : array-like of shape (R, S, C, K)
    dy : array-like of shape (N, Ho, Wo, K), the gradient of the loss w.r.t. the output
    stride, padding, dilation : as in :func:`conv2d`
    need_dx : bool
        False skips the data gradient (a network's first layer) and returns None for it.
    n_threads, isa : as in :func:`conv2d`

    Returns
    -------
    dx : ndarray (N, H, W, C) or None
    dw : ndarray (R, S, C, K)
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
    stride, pads, dilation, (ho, wo) = _conv_geometry(x, w, stride, padding, dilation)
    n, h, wd, c = x.shape
    kh, kw, _, k = w.shape
    if dy.shape != (n, ho, wo, k):
        raise ValueError(
            f"dy must have the forward output's shape {(n, ho, wo, k)} for x {x.shape} and "
            f"w {w.shape}, got {dy.shape}"
        )
    n_threads = resolve_threads(n_threads, n * ho * wo * kh * kw * c * k // 16)
    best_isa = _resolve_isa(isa)
    itemsize = x.itemsize
    db = np.empty(k, dtype=dtype)
    _conv.bias_grad(dy.reshape(-1, k), db, _BIAS_GRAD_CHUNKS, n_threads)
    if c == 1 and stride[1] == 1 and n:
        dw = _single_channel_weight_grad(x, dy, pads, (kh, kw), stride, dilation, best_isa,
                                         n_threads)
    else:
        dw = _weight_grad(x, dy, pads, (kh, kw), stride, dilation, best_isa, n_threads)
    if not need_dx:
        return None, dw, db
    dx = np.zeros_like(x)
    if n == 0:
        return dx, dw, db
    d_isa, d_nv = _vector_plan(best_isa, itemsize, c)
    block = d_nv * _conv.vector_length(d_isa, itemsize)
    # (R, S, C, K) -> (R, S, K, C): the data gradient's "output channels" are C.
    w_t = w.transpose(0, 1, 3, 2)
    for row0, col0, taps in _data_grad_phases((h, wd), (kh, kw), stride, pads[::2], dilation):
        if not taps:
            continue  # no tap reaches this phase: its gradient is zero
        rows, row_off, cols, col_off = (np.array(v, dtype=np.intc) for v in zip(*taps))
        wpack = _pack_blocks(w_t[rows, cols], block)
        _conv.conv2d_backward_data_phase(dy, wpack, row_off, col_off, dx, row0, col0,
                                         stride[0], stride[1], d_isa, d_nv, n_threads)
    return dx, dw, db
