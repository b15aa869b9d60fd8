"""How one depthwise convolution geometry runs on the compiled kernels, decided once.

A :class:`DepthwisePlan` fixes what depends only on the shapes (output size, SIMD path,
the chunks of the weight gradient) so that each call only runs the kernels; the validated
ops of :mod:`fastcnn.ops.depthwise` build one per call, a network's layers one per layer.
Plans trust their inputs: C-contiguous arrays of the plan's dtype and shapes.

A depth multiplier M > 1 makes C * M output channels, channel c * M + m from input
channel c through filter m. The kernels see it as a depthwise convolution of C * M
channels: the weights (R, S, C, M) read as (R, S, C * M) in that order already, and the
input has each channel repeated M times (:meth:`DepthwisePlan.repeat`); the data
gradient of the repeated input is summed back over each channel's M copies.
"""
import numpy as np

from .._ext import _conv, _depthwise
from ._isa import resolve_isa
from .geometry import conv_output_hw
from .threads import resolve_threads
from .workspace import empty

# Fewer weight-gradient tasks (batch chunks x channel vectors) than this and the batch
# is split into more chunks, so that small layers still use every core; and no chunk
# holds much more than _WEIGHT_GRAD_CHUNK_BYTES of x and dy, so that a chunk stays in
# cache while each channel vector of it is summed. Fixed by the shapes, so the arithmetic
# does not depend on the thread count.
_MIN_WEIGHT_GRAD_TASKS = 64
_WEIGHT_GRAD_CHUNK_BYTES = 512 * 1024
# The bias gradient sums this many fixed chunks of pixels in parallel, then adds them in order.
_BIAS_GRAD_CHUNKS = 64


class DepthwisePlan:
    """One depthwise geometry: image (H, W, C), kernel (R, S), depth multiplier M, stride,
    padding (top, bottom, left, right), dilation, dtype and SIMD path."""

    def __init__(self, image_shape, kernel_hw, multiplier, stride, pads, dilation, dtype,
                 isa=None):
        self.h, self.w, self.c = image_shape
        self.kh, self.kw = kernel_hw
        self.m = multiplier
        self.channels = self.c * self.m
        self.stride, self.pads, self.dilation = tuple(stride), tuple(pads), tuple(dilation)
        self.dtype = np.dtype(dtype)
        itemsize = self.dtype.itemsize
        self.ho, self.wo = conv_output_hw((self.h, self.w), (self.kh, self.kw), stride, pads,
                                          dilation)
        # The widest vectors that the channels fill at least once: narrower ones waste
        # fewer lanes than one vector mostly past the last channel.
        isa = resolve_isa(isa)
        while isa > 0 and self.channels < _depthwise.vector_length(isa, itemsize):
            isa -= 1
        self.isa = isa
        self.lanes = _depthwise.vector_length(isa, itemsize)
        self.n_blocks = max(1, -(-self.channels // self.lanes))
        # Multiply-adds per image, in vectors of ~16: the work that decides the threads.
        self.vector_work = self.ho * self.wo * self.kh * self.kw * self.channels // 16
        self._image_bytes = (self.h * self.w + self.ho * self.wo) * self.channels * itemsize

    @property
    def output_shape(self):
        return self.ho, self.wo, self.channels

    def threads(self, n_threads, n_images):
        """``n_threads`` (None: all usable cores) capped for small batches."""
        return resolve_threads(n_threads, n_images * self.vector_work)

    def weight_grad_chunks(self, n_images):
        """How many chunks the weight gradient splits a batch of ``n_images`` into."""
        if n_images == 0:
            return 0
        by_tasks = -(-_MIN_WEIGHT_GRAD_TASKS // self.n_blocks)
        by_bytes = -(-n_images * self._image_bytes // _WEIGHT_GRAD_CHUNK_BYTES)
        return min(n_images, max(by_tasks, by_bytes))

    def repeat(self, x, ws=None):
        """x with each channel repeated M times (N, H, W, C * M), the input the kernels
        read; None when M == 1 (they read x itself).

        A caller running forward and backward on the same x (a layer in training) makes
        it once and passes it to both as ``repeated``.
        """
        if self.m == 1:
            return None
        xr = empty(ws, "x_repeated", x.shape[:3] + (self.channels,), self.dtype)
        xr.reshape(x.shape + (self.m,))[...] = x[..., None]
        return xr

    def _kernel_args(self):
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return sh, sw, self.pads[0], self.pads[2], dh, dw

    def compile_forward(self, w, b, relu, winograd=False):
        """``run(x, ws, n_threads) -> out``: :meth:`forward` with these weights, bias and
        relu (the convolution plans' interface; the kernel reads w and b as they are)."""
        def run(x, ws, n_threads):
            return self.forward(x, w, b, relu, n_threads, ws)
        return run

    def forward(self, x, w, b, relu, n_threads, ws=None, out=None, repeated=None):
        """The depthwise convolution of x with w (R, S, C, M), + b (C * M,) (None: no
        bias), then relu if asked, as (N, Ho, Wo, C * M).

        ``ws`` is a :class:`~fastcnn.ops.workspace.Workspace` to take arrays from (None:
        fresh ones); ``out``, if given, receives the result; ``repeated``, if given, is
        :meth:`repeat` of this x.
        """
        n = x.shape[0]
        if out is None:
            out = empty(ws, "out", (n,) + self.output_shape, self.dtype)
        if out.size == 0:
            return out
        if self.m > 1 and repeated is None:
            repeated = self.repeat(x, ws)
        x_in = x if self.m == 1 else repeated
        _depthwise.depthwise_forward(x_in, w.reshape(self.kh, self.kw, self.channels), b, out,
                                     *self._kernel_args(), relu, self.threads(n_threads, n),
                                     self.isa)
        return out

    def backward(self, x, w, dy, need_dx, n_threads, ws=None, relu_y=None, dw_out=None,
                 repeated=None):
        """(dx or None, dw, db) for the forward input x and the output gradient dy.

        With ``relu_y`` (the output of a fused relu) dy is the gradient of the relu's
        output and becomes, in place, that of its input. dw (R, S, C, M) goes into
        ``dw_out`` when given; dx and dw may be arrays of ``ws`` (db is always fresh).
        ``repeated``, if given, is :meth:`repeat` of x (that the forward pass used).
        """
        n = x.shape[0]
        k = self.channels
        n_threads = self.threads(n_threads, n)
        db = np.empty(k, dtype=self.dtype)
        if relu_y is None:
            _conv.bias_grad(dy.reshape(-1, k), db, _BIAS_GRAD_CHUNKS, n_threads)
        else:
            _conv.relu_backward_bias_grad(dy.reshape(-1, k), relu_y.reshape(-1, k), db,
                                          _BIAS_GRAD_CHUNKS, n_threads)
        if self.m > 1 and repeated is None and n > 0:
            repeated = self.repeat(x, ws)
        x_in = x if self.m == 1 else repeated
        dw = self._weight_grad(x_in, dy, n_threads, ws)
        if dw_out is not None:
            dw_out[...] = dw
            dw = dw_out
        if not need_dx:
            return None, dw, db
        return self._data_grad(w, dy, n_threads, ws), dw, db

    def _weight_grad(self, x_in, dy, n_threads, ws):
        """dw as (R, S, C, M): each chunk's sum by the kernel, the chunks added in order."""
        n_chunks = self.weight_grad_chunks(x_in.shape[0] if x_in is not None else 0)
        shape = (self.kh, self.kw, self.c, self.m)
        if n_chunks == 0:
            return np.zeros(shape, dtype=self.dtype)
        partial = empty(ws, "partial", (n_chunks, self.kh, self.kw, self.channels), self.dtype)
        _depthwise.depthwise_backward_weights(x_in, dy, partial, *self._kernel_args(),
                                              n_threads, self.isa)
        dw = partial[0] if n_chunks == 1 else partial.sum(axis=0)
        return dw.reshape(shape)

    def _data_grad(self, w, dy, n_threads, ws):
        n = dy.shape[0]
        dx = empty(ws, "dx", (n, self.h, self.w, self.c), self.dtype)
        if dx.size == 0:
            return dx
        w3 = w.reshape(self.kh, self.kw, self.channels)
        if self.m == 1:
            _depthwise.depthwise_backward_data(dy, w3, dx, *self._kernel_args(), n_threads,
                                               self.isa)
            return dx
        # the gradient of the repeated input, then each channel's M copies added up
        dxr = empty(ws, "dx_repeated", (n, self.h, self.w, self.channels), self.dtype)
        _depthwise.depthwise_backward_data(dy, w3, dxr, *self._kernel_args(), n_threads,
                                           self.isa)
        np.sum(dxr.reshape(dx.shape + (self.m,)), axis=-1, out=dx)
        return dx
