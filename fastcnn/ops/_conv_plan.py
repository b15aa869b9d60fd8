"""How one convolution geometry runs on the compiled kernels, decided once.

A :class:`ConvPlan` fixes everything that depends only on the shapes (output size, which
kernel, SIMD path and register-tile width, the stride phases of the data gradient) so that
each call only packs the weights and runs the kernels. ``fastcnn.ops.conv`` builds a plan
per call after validating its arguments; the network's layers build one per layer and
reuse it for every batch. Plans trust their inputs: C-contiguous arrays of the plan's
dtype and shapes, as the callers guarantee.
"""
import functools

import numpy as np

from .._ext import _conv
from . import _bf16, _winograd
from ._conv_wgrad import WeightGradients
from ._isa import resolve_isa, vector_plan
from ._program import conv_op, direct_op, unpacked_op, winograd_op, with_op
from .geometry import conv_output_hw, data_grad_phases
from .threads import resolve_threads
from .workspace import empty

# The bias gradient sums this many fixed chunks of pixels in parallel, then adds them in order.
_BIAS_GRAD_CHUNKS = 64
# The column data gradient works through the batch in chunks of about this many bytes of
# columns, so they stay in cache between being written and added up.
_COLUMN_CHUNK_BYTES = 1024 * 1024
# Packed weights bigger than this (about a core's L2 cache) are walked block by block,
# each block used for every pixel tile before the next (dense layers).
_WEIGHTS_OUTER_BYTES = 1024 * 1024
# A 1x1 convolution with weights bigger than that (a big dense layer) runs over slices of
# its input channels whose weights take about this many bytes: each slice's weights come
# from memory once, in order, and stay in cache for every tile.
_SLICE_WEIGHT_BYTES = 512 * 1024
# bf16 forward passes of an odd channel count and at most this many patch values run on
# each output pixel's expanded patch (ConvPlan.bf16_patches), about this many output
# pixels a task. Against the taps (batch 64, 32x32, one core of an AMD EPYC Zen 4, ad-hoc):
# 3x3 on 3 channels 1.35x (32 and 64 outputs; 1.3x on two cores); 5x5 on 3 (75 values)
# 1.00x; an even count gains nothing by it (2 and 4 channels, 3x3: 0.96x, 0.86x).
_PATCH_MAX_VALUES = 32
_PATCH_TASK_PIXELS = 64


def _pack_blocks(w, taps, block, transpose, ws, name, n_threads):
    """Taps ``taps`` of w (T, Cin, Cout) as (Cout blocks, len(taps), Cin, block),
    zero-padded in Cout; with ``transpose`` w is (T, Cout, Cin)."""
    _, rows, cols = w.shape
    cin, cout = (cols, rows) if transpose else (rows, cols)
    packed = empty(ws, name, (-(-cout // block), len(taps), cin, block), w.dtype)
    _conv.pack_weights(np.ascontiguousarray(w), taps, packed, transpose, n_threads)
    return packed


class ConvPlan(WeightGradients):
    """One convolution geometry: image (H, W, C), weights (R, S, C, K), stride, padding
    (top, bottom, left, right), dilation, dtype and SIMD path."""

    def __init__(self, image_shape, weight_shape, stride, pads, dilation, dtype, isa=None,
                 dx_path=None, weights_outer_bytes=_WEIGHTS_OUTER_BYTES,
                 slice_weight_bytes=_SLICE_WEIGHT_BYTES, bf16=False, train_winograd=False):
        self.h, self.w, self.c = image_shape
        self.kh, self.kw, _, self.k = weight_shape
        self.stride, self.pads, self.dilation = tuple(stride), tuple(pads), tuple(dilation)
        self.dtype = np.dtype(dtype)
        itemsize = self.dtype.itemsize
        # (the thresholds of the weights-outer order and of the slices, for tests to move)
        self.weights_outer_bytes = weights_outer_bytes
        self.slice_weight_bytes = slice_weight_bytes
        self.ho, self.wo = conv_output_hw((self.h, self.w), (self.kh, self.kw), stride, pads,
                                          dilation)
        isa = resolve_isa(isa)
        # Multiply-adds per image, in vectors of ~16: the work that decides the threads.
        self.vector_work = self.ho * self.wo * self.kh * self.kw * self.c * self.k // 16

        # A single input channel with stride 1 along the width runs the row-vectorised
        # kernels; everything else the register-tiled ones.
        self.single_channel = self.c == 1 and stride[1] == 1
        # Their rows are expanded K-fold (see _conv_c1_microkernel.h): an output row is Wo*K
        # values, computed in whole vectors of Lv, and every expanded row must be readable
        # from each tap's offset to the end of that last vector.
        self.isa = isa
        v = _conv.vector_length(isa, itemsize)
        row_values = self.wo * self.k
        self.row_vector_values = -(-row_values // v) * v
        self.expanded_row_len = max((self.w + pads[2] + pads[3]) * self.k,
                                    (self.kw - 1) * dilation[1] * self.k
                                    + self.row_vector_values)

        self.fwd_isa, self.fwd_nv = vector_plan(isa, itemsize, self.k)
        self.fwd_block = self.fwd_nv * _conv.vector_length(self.fwd_isa, itemsize)
        self.k_padded = -(-self.k // self.fwd_block) * self.fwd_block
        tile_channels = _conv.wgrad_tile_channels(self.fwd_isa, itemsize, self.fwd_nv)
        self.wgrad_tiles = (self.kh * self.kw * -(-self.c // tile_channels)
                            * (self.k_padded // self.fwd_block))

        # Mixed precision: bf16 operands, float32 sums, for the forward pass and the stride
        # phases of the data gradient (a single input channel keeps its float32 kernels).
        self.bf16 = bool(bf16) and not self.single_channel
        if self.bf16:
            if self.dtype != np.float32:
                raise ValueError("bf16 operands need a float32 plan")
            _bf16.require()
            self.bf16_nv = _bf16.nv_for(self.k)
            self.bf16_block = self.bf16_nv * _bf16.LANES
            self.bf16_dx_nv = _bf16.nv_for(self.c)
            self.bf16_dx_block = self.bf16_dx_nv * _bf16.LANES
            # bf16 weight gradients: a tile of channels, or a first layer's kernel rows
            rows, row_tiles = _conv.bf16_wgrad_layout(self.c, self.kw, dilation[1])
            self.bf16_wgrad = self.c >= _conv.TILE_CHANNELS or rows
            self.bf16_k_padded = -(-self.k // self.bf16_block) * self.bf16_block
            self.bf16_wgrad_tiles = (self.kh * row_tiles
                                     * (self.bf16_k_padded // self.bf16_block))
            # The forward pass of an odd count of input channels as a 1x1 convolution of
            # each output pixel's whole patch (conv2d_forward_bf16_patches): one tap, its
            # (R, S, C) values padded to even once rather than each tap's C (3x3 on RGB:
            # 14 pairs for 18)
            self.bf16_patches = (self.c % 2 == 1 and self.kh * self.kw > 1
                                 and self.kh * self.kw * self.c <= _PATCH_MAX_VALUES)

        self.dx_isa, self.dx_nv = vector_plan(isa, itemsize, self.c)
        self.dx_block = self.dx_nv * _conv.vector_length(self.dx_isa, itemsize)
        self._all_taps = np.arange(self.kh * self.kw, dtype=np.intc)
        self.phases = []
        n_phases = 0
        for row0, col0, taps in data_grad_phases((self.h, self.w), (self.kh, self.kw),
                                                  stride, pads[::2], dilation):
            n_phases += 1
            if taps:  # a phase no tap reaches has a zero gradient
                rows, row_off, cols, col_off = (np.array(v, dtype=np.intc) for v in zip(*taps))
                self.phases.append((row0, col0, rows * self.kw + cols, row_off, col_off))
        # the phases' kernels write every input pixel unless a phase has no taps
        self.dx_needs_zeros = len(self.phases) < n_phases
        # Few input channels leave data-gradient vectors part empty, and the phases also
        # run the taps on dy's padding (H*W pixels' work for Ho*Wo*sh*sw). Up to 4 channels
        # per that ratio (benchmarks/dx_paths.py), each output pixel's (R, S, C) terms (dy
        # times the filter transposed, K -> S*C per kernel row) go into the padded input
        # rows ("rows"; dilated: via an array of terms, "columns"); above, the phases win.
        if dx_path is None:   # (``dx_path`` forces the choice, for tests)
            work = self.ho * self.wo * np.prod(stride)
            if self.c >= _conv.vector_length(isa, itemsize) or self.c * work > 4 * self.h * self.w:
                dx_path = "phases"
            else:
                dx_path = "rows" if dilation[1] == 1 else "columns"
        if dx_path not in ("phases", "columns", "rows") or (dx_path == "rows"
                                                             and dilation[1] != 1):
            raise ValueError(f"dx_path {dx_path!r} is not one this convolution can use")
        self.dx_path = dx_path
        # Mixed precision trains by float32 Winograd where it applies (fewer products than
        # bf16's direct kernels): forward, data gradient, weight gradient (_winograd).
        self.train_winograd = bool(train_winograd) and self.winograd_eligible
        self.dx_winograd = self.train_winograd and _winograd.eligible(
            (self.kh, self.kw), stride, dilation, self.k, self.c)
        if dx_path == "rows":
            self.rows_isa, self.rows_nv = vector_plan(isa, itemsize, self.kw * self.c)
            self.rows_block = self.rows_nv * _conv.vector_length(self.rows_isa, itemsize)
        if dx_path == "columns":
            n_terms = self.kh * self.kw * self.c
            self._columns = ConvPlan((self.ho, self.wo, self.k), (1, 1, self.k, n_terms),
                                     (1, 1), (0, 0, 0, 0), (1, 1), dtype, isa,
                                     dx_path="phases", weights_outer_bytes=weights_outer_bytes,
                                     slice_weight_bytes=slice_weight_bytes)
            self._images_per_chunk = max(1, _COLUMN_CHUNK_BYTES
                                         // (self.ho * self.wo * n_terms * itemsize))

    def threads(self, n_threads, n_images):
        """``n_threads`` (None: all usable cores) capped for small batches."""
        return resolve_threads(n_threads, n_images * self.vector_work)

    def expand(self, x, n_threads, ws=None):
        """The zero-padded, K-fold expanded rows (N, Hp, row length) that the single-channel
        kernels read, for a single-channel plan (None for any other).

        A caller running forward and backward on the same x (a layer in training) makes them
        once and passes them to both as ``expanded``.
        """
        if not self.single_channel:
            return None
        top, bottom, left, _ = self.pads
        xe = empty(ws, "expanded", (x.shape[0], self.h + top + bottom, self.expanded_row_len),
                   self.dtype)
        _conv.expand_channels(x.reshape(x.shape[:3]), xe, top, left, self.k, self.isa,
                              self.threads(n_threads, x.shape[0]))
        return xe

    def _row_pattern(self, values):
        """(..., K) -> (..., Lv): the values repeated for each output column, zero-padded."""
        tiled = np.zeros(values.shape[:-1] + (self.row_vector_values,), dtype=self.dtype)
        tiled[..., :self.wo * self.k] = np.tile(values, self.wo)
        return tiled

    def _bias(self, b, ws):
        """b (or zeros), zero-padded to whole blocks of output channels."""
        bias = empty(ws, "bias", (self.k_padded,), self.dtype)
        bias[:self.k], bias[self.k:] = (0 if b is None else b), 0
        return bias

    def in_slices(self, w):
        """Whether forward runs slice by slice of the input channels (a big 1x1)."""
        return (self.kh == self.kw == 1 and self.stride == (1, 1) and not any(self.pads)
                and w.nbytes > self.weights_outer_bytes and self.k_padded == self.k
                and not self.single_channel)

    @property
    def winograd_eligible(self):
        """Whether :meth:`prepare` can set this up for Winograd (F(4x4, 3x3) or 5x5)."""
        return _winograd.eligible((self.kh, self.kw), self.stride, self.dilation, self.c,
                                  self.k)

    def prepare(self, w, b, winograd=False):
        """What :meth:`forward` makes of w and b on every call, made once, as keyword
        arguments for it: for weights that many batches use unchanged (prediction).

        Forward then computes the same bits as from w and b themselves; with ``winograd``
        (where :attr:`winograd_eligible`) it computes the convolution by Winograd's
        algorithm instead, to within rounding.
        """
        kh, kw, k = self.kh, self.kw, self.k
        # A bf16 plan runs Winograd in float32 too: its products are fewer, and faster
        # here than bf16 ones (benchmarks/winograd.py).
        if self.bf16 and not (winograd and self.winograd_eligible):
            return {"bf16_packed": self._bf16_weights(w, b)}
        if winograd and self.winograd_eligible:
            rows = _conv.winograd_rows(self.fwd_isa, self.fwd_nv)
            return {"winograd": _winograd.prepare(w, b, self.fwd_block, self.dtype, rows)}
        if self.single_channel:
            bias = self._bias(b, None)
            return {"row_patterns": (self._row_pattern(w.reshape(kh * kw, k)),
                                     self._row_pattern(bias[:k]))}
        if self.in_slices(w) or (w.nbytes > self.weights_outer_bytes and self.k_padded == k):
            return {}   # read in place: nothing to pack
        packed = _pack_blocks(w.reshape(kh * kw, self.c, k), self._all_taps, self.fwd_block,
                              False, None, "packed", resolve_threads(None))
        return {"packed": packed, "padded_bias": self._bias(b, None)}

    def compile_forward(self, w, b, relu, winograd=False):
        """``run(x, ws, n_threads) -> out``: :meth:`forward` with these weights, bias and
        relu, its choices and packing made once, so that a call does little more than
        start the kernel (prediction, where per-call overhead matters at small batches).
        The results are those of ``forward(x, w, b, relu, ...)`` (of Winograd's algorithm
        with ``winograd``, where it applies)."""
        prepared = self.prepare(w, b, winograd)
        shape = (self.ho, self.wo, self.k)
        if "packed" not in prepared:    # the single-channel, sliced, in-place and Winograd
            def run(x, ws, n_threads):  # forms: forward's own dispatch
                return self.forward(x, w, b, relu, n_threads, ws, **prepared)
            return with_op(run, unpacked_op(self, prepared, w, b, relu))
        wpack, bias = prepared["packed"], prepared["padded_bias"]
        args = self._kernel_args(wpack, relu)
        return self._kernel_step(_conv.conv2d_forward, (wpack, bias), args, shape,
                                 op=direct_op(self, wpack, bias, relu, args[-2]))

    def _kernel_step(self, kernel, operands, args, shape, images=None, op=None):
        """``run(x, ws, n_threads) -> out``: ``kernel(images(x), *operands, out, *args,
        n_threads)`` into a workspace array of (N,) + shape (``images``: x itself), the
        call described by ``op`` (:mod:`fastcnn.ops._program`)."""
        dtype, threads = self.dtype, self.threads

        def run(x, ws, n_threads):
            n = x.shape[0]
            out = ws.empty("out", (n,) + shape, dtype)
            if out.size:
                kernel(x if images is None else images(x), *operands, out, *args,
                       threads(n_threads, n))
            return out
        return with_op(run, op)

    def compile_forward_pool(self, w, b, relu, mode, winograd=False):
        """``run(x, ws, n_threads) -> out``: this convolution with these weights, bias and
        relu, then a 2x2 pooling with stride 2 (``mode`` "max" or "avg"), as one kernel
        that writes only the pooled values (prediction); None where there is none: where
        bf16 operands would run the convolution, for a 1x1 with big weights, for rows too
        narrow for the kernels' strips, and for a single input channel but with max
        pooling. The values are those of :meth:`forward` (by Winograd's algorithm, with
        ``winograd``, where it applies) then the pooling, bit for bit."""
        if self.ho < 2 or self.wo < 2:
            return None
        kh, kw, k = self.kh, self.kw, self.k
        shape = (self.ho // 2, self.wo // 2, k)
        if self.single_channel:
            if mode != "max":
                return None
            weight = np.array(w, dtype=self.dtype).reshape(kh * kw, k)
            bias = np.zeros(k, self.dtype) if b is None else np.array(b, dtype=self.dtype)
            args = (kh, kw, self.stride[0], *self.pads, *self.dilation, relu, self.isa)
            return self._kernel_step(_conv.conv2d_forward_c1_max_pool, (weight, bias), args,
                                     shape, lambda x: x.reshape(x.shape[:3]),
                                     conv_op(self, "c1_max_pool", (weight, bias), relu,
                                             pooled=True, isa=self.isa))
        prepared = self.prepare(w, b, winograd)
        if "winograd" in prepared:
            args = (self.pads[0], self.pads[2], relu, self.fwd_isa, self.fwd_nv,
                    self.fwd_block)
            return self._kernel_step(functools.partial(_winograd.run, pool=mode),
                                     (prepared["winograd"],), args, shape,
                                     op=winograd_op(self, prepared["winograd"], relu, mode))
        if "packed" not in prepared or not _conv.pooled_forward_applies(
                self.h, self.w, self.ho, self.wo, kw, self.stride[1], self.pads[2],
                self.dilation[1], self.fwd_isa, self.fwd_nv):
            return None
        (sh, sw), (dh, dw) = self.stride, self.dilation
        args = (self.ho, self.wo, kh, kw, sh, sw, self.pads[0], self.pads[2], dh, dw, relu,
                mode == "avg", self.fwd_isa, self.fwd_nv, self.fwd_block)
        wpack = prepared["packed"]
        return self._kernel_step(
            _conv.conv2d_forward_pooled, (wpack, prepared["padded_bias"]), args, shape,
            op=conv_op(self, "conv_pool", (wpack, prepared["padded_bias"]), relu, pooled=True,
                       average=mode == "avg", n_kblocks=wpack.shape[0], w_last=wpack.shape[3]))

    def forward(self, x, w, b, relu, n_threads, ws=None, out=None, packed=None,
                expanded=None, padded_bias=None, row_patterns=None, winograd=None,
                bf16_packed=None):
        """conv(x, w) + b (then relu), as (N, Ho, Wo, K). ``b`` may be None.

        ``ws`` is a :class:`~fastcnn.ops.workspace.Workspace` to take arrays from (None: fresh
        ones); ``out``, if given, receives the result; ``packed``, if given, is w already
        packed in output-channel blocks (then w is not read); ``expanded``, if given, is
        :meth:`expand` of this x. ``padded_bias``, ``row_patterns`` and ``winograd`` come
        from :meth:`prepare` (then neither w nor b is read).
        """
        n = x.shape[0]
        if out is None:
            out = empty(ws, "out", (n, self.ho, self.wo, self.k), self.dtype)
        if out.size == 0:
            return out
        n_threads = self.threads(n_threads, n)
        kh, kw, k = self.kh, self.kw, self.k
        sh, (dh, dw) = self.stride[0], self.dilation
        if self.train_winograd and winograd is packed is bf16_packed is None:
            winograd = _winograd.prepare(w, b, self.fwd_block, self.dtype, _conv.winograd_rows(
                self.fwd_isa, self.fwd_nv), ws, n_threads=n_threads)
        if winograd is not None:
            return _winograd.run(x, winograd, out, self.pads[0], self.pads[2], relu,
                                 self.fwd_isa, self.fwd_nv, self.fwd_block, n_threads)
        if self.bf16:
            return self._forward_bf16(x, w, b, relu, n_threads, ws, out, bf16_packed)
        if self.single_channel and packed is None:
            if expanded is None:
                expanded = self.expand(x, n_threads, ws)
            if row_patterns is None:
                row_patterns = (self._row_pattern(w.reshape(kh * kw, k)),
                                self._row_pattern(self._bias(b, ws)[:k]))
            _conv.conv2d_forward_c1(expanded, *row_patterns, out, kh, kw, sh, dh, dw, relu,
                                    self.isa, n_threads)
            return out
        if packed is None and self.in_slices(w):
            return self._forward_in_slices(x, w, b, relu, n_threads, ws, out)
        if packed is not None:
            wpack = packed
        elif w.nbytes > self.weights_outer_bytes and self.k_padded == k:
            # read in place, each block at a row stride of K: a copy of weights this big
            # (a dense layer's) would cost more than the strided reads
            wpack = np.ascontiguousarray(w).reshape(1, kh * kw, self.c, k)
        else:
            wpack = _pack_blocks(w.reshape(kh * kw, self.c, k), self._all_taps,
                                 self.fwd_block, False, ws, "packed", n_threads)
        bias = self._bias(b, ws) if padded_bias is None else padded_bias
        _conv.conv2d_forward(x, wpack, bias, out, *self._kernel_args(wpack, relu), n_threads)
        return out

    def _bf16_weights(self, w, b, ws=None, n_threads=None):
        """(packed bf16 weights, padded float32 bias) of the bf16 forward kernel (for
        :attr:`bf16_patches`, as one tap of R * S * C values)."""
        taps, values = ((1, self.kh * self.kw * self.c) if self.bf16_patches
                        else (self.kh * self.kw, self.c))
        wpack = _bf16.pack(w.reshape(taps, values, self.k), self.bf16_block,
                           ws=ws, n_threads=resolve_threads(n_threads))
        bias = np.zeros(wpack.shape[0] * self.bf16_block, np.float32)
        if b is not None:
            bias[:self.k] = b
        return wpack, bias

    def _forward_bf16(self, x, w, b, relu, n_threads, ws, out, packed=None):
        """The forward pass on bf16 operands: x rounded to bf16 (an even channel count),
        the packed weights (``packed`` from :meth:`prepare`, or packed here)."""
        wpack, bias = self._bf16_weights(w, b, ws, n_threads) if packed is None else packed
        if self.bf16_patches:
            return self._forward_bf16_patches(x, wpack, bias, relu, n_threads, ws, out)
        xb = _bf16.to_bf16(x, ws, "x_bf16", n_threads)
        (sh, sw), (dh, dw) = self.stride, self.dilation
        _conv.conv2d_forward_bf16(xb, wpack, bias, out, self.kh, self.kw, sh, sw,
                                  self.pads[0], self.pads[2], dh, dw, relu, self.bf16_nv,
                                  wpack.nbytes > self.weights_outer_bytes, n_threads)
        return out

    def _forward_bf16_patches(self, x, wpack, bias, relu, n_threads, ws, out):
        """:meth:`_forward_bf16` on each output pixel's expanded patch, a few output rows
        at a time (``_conv.conv2d_forward_bf16_patches``)."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        rows = max(1, _PATCH_TASK_PIXELS // self.wo)
        _conv.conv2d_forward_bf16_patches(x, wpack, bias, out, self.kh, self.kw, sh, sw,
                                          self.pads[0], self.pads[2], dh, dw, relu,
                                          self.bf16_nv, rows, n_threads)
        return out

    def _kernel_args(self, wpack, relu):
        """The forward kernel's arguments after (x, wpack, bias, out), but for n_threads."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return (self.kh, self.kw, sh, sw, self.pads[0], self.pads[2], dh, dw, relu,
                self.fwd_isa, self.fwd_nv, self.fwd_block,
                wpack.nbytes > self.weights_outer_bytes, False)

    def slices(self):
        """(width, count, row length) of the input-channel slices of :meth:`in_slices`."""
        width = max(1, self.slice_weight_bytes // (self.k * self.dtype.itemsize))
        n_slices = -(-self.c // width)
        width = -(-self.c // n_slices)   # slices of nearly equal width
        return width, n_slices, width + 64 // self.dtype.itemsize

    def _forward_in_slices(self, x, w, b, relu, n_threads, ws, out):
        """A 1x1 convolution with big weights, slice by slice of the input channels, each
        slice added onto the result of the ones before it (in a fixed order).

        The slices of x are copied out, each pixel's row padded by a cache line: rows a
        multiple of 4 KiB apart (4096 float32 channels) would all fall into the same cache
        sets, and a tile reads a dozen of them at once.
        """
        n_pixels = x.shape[0] * self.h * self.w
        width, n_slices, row = self.slices()
        slices = empty(ws, "x_slices", (n_slices, n_pixels, row), self.dtype)
        x2 = x.reshape(n_pixels, self.c)
        w2 = w.reshape(self.c, self.k)
        bias = self._bias(b, ws)
        for j in range(n_slices):
            first, last = j * width, min(self.c, (j + 1) * width)
            x_slice = slices[j, :, :last - first]
            x_slice[...] = x2[:, first:last]
            _conv.conv2d_forward(x_slice.reshape(1, 1, n_pixels, last - first),
                                 w2[first:last].reshape(1, 1, last - first, self.k), bias,
                                 out.reshape(1, 1, n_pixels, self.k), 1, 1, 1, 1, 0, 0, 1, 1,
                                 relu and j == n_slices - 1, self.fwd_isa, self.fwd_nv,
                                 self.fwd_block, True, j > 0, n_threads)
        return out

    def backward(self, x, w, dy, need_dx, n_threads, ws=None, relu_y=None, dw_out=None,
                 expanded=None):
        """(dx or None, dw, db) for the forward input x and the output gradient dy.

        With ``relu_y`` (the output of a fused relu) dy is the gradient of the relu's output
        and becomes, in place, that of its input. dw goes into ``dw_out`` when given (a
        C-contiguous (R, S, C, K) array: a layer's gradient, written without a copy). dx
        and dw may be arrays of ``ws`` (db is always fresh). ``expanded``, if given, is
        :meth:`expand` of x (that the forward pass used).
        """
        n = x.shape[0]
        n_threads = self.threads(n_threads, n)
        db = np.empty(self.k, dtype=self.dtype)
        if relu_y is None:
            _conv.bias_grad(dy.reshape(-1, self.k), db, _BIAS_GRAD_CHUNKS, n_threads)
        else:
            _conv.relu_backward_bias_grad(dy.reshape(-1, self.k), relu_y.reshape(-1, self.k),
                                          db, _BIAS_GRAD_CHUNKS, n_threads)
        if n == 0:
            dw = np.zeros((self.kh, self.kw, self.c, self.k), dtype=self.dtype)
        elif self.single_channel:
            if expanded is None:
                expanded = self.expand(x, n_threads, ws)
            dw = self._single_channel_weight_grad(expanded, dy, n_threads, ws)
        elif _winograd.weight_grad_eligible(self):   # mixed precision's, from 64 inputs
            dw = _winograd.weight_grad(self, x, dy, n_threads, dw_out, ws)
        elif self.bf16 and self.bf16_wgrad:
            dw = self._weight_grad_bf16(x, dy, n_threads, ws, dw_out)
        else:
            dw = self._weight_grad(x, dy, n_threads, ws, dw_out)
        if dw_out is not None and dw is not dw_out:
            dw_out[...] = dw
            dw = dw_out
        if not need_dx:
            return None, dw, db
        if self.dx_path == "rows":
            return self._data_grad_by_rows(w, dy, n_threads, ws), dw, db
        if self.dx_path == "columns":
            return self._data_grad_by_columns(w, dy, n_threads, ws), dw, db
        dx = empty(ws, "dx", x.shape, self.dtype)
        if self.dx_needs_zeros:
            dx.fill(0)
        if n == 0:
            return dx, dw, db
        if self.dx_winograd:
            return _winograd.data_grad(self, w, dy, dx, n_threads, ws), dw, db
        w_taps = w.reshape(self.kh * self.kw, self.c, self.k)
        if self.bf16:
            return self._data_grad_bf16(w_taps, dy, dx, n_threads, ws), dw, db
        for i, (row0, col0, taps, row_off, col_off) in enumerate(self.phases):
            # The phase's taps of w, packed transposed: the data gradient's "output
            # channels" are C.
            wpack = _pack_blocks(w_taps, taps, self.dx_block, True, ws, f"packed_dx{i}",
                                 n_threads)
            _conv.conv2d_backward_data_phase(dy, wpack, row_off, col_off, dx, row0, col0,
                                             self.stride[0], self.stride[1], self.dx_isa,
                                             self.dx_nv, wpack.nbytes > self.weights_outer_bytes,
                                             n_threads)
        return dx, dw, db

    def _data_grad_bf16(self, w_taps, dy, dx, n_threads, ws):
        """The stride phases of the data gradient on bf16 operands."""
        dyb = _bf16.to_bf16(dy, ws, "dy_bf16", n_threads)
        for i, (row0, col0, taps, row_off, col_off) in enumerate(self.phases):
            # the phase's taps, transposed: K is the reduction, C the outputs
            wpack = _bf16.pack(w_taps, self.bf16_dx_block, taps, True, ws,
                               f"packed_bf16_dx{i}", n_threads)
            _conv.conv2d_backward_data_phase_bf16(dyb, wpack, row_off, col_off, dx, row0,
                                                  col0, self.stride[0], self.stride[1],
                                                  self.bf16_dx_nv,
                                                  wpack.nbytes > self.weights_outer_bytes,
                                                  n_threads)
        return dx

    def _data_grad_by_rows(self, w, dy, n_threads, ws):
        """dx as each output pixel's (S, C) terms per kernel row, added into the padded
        input rows, then cropped."""
        n = dy.shape[0]
        top, bottom, left, right = self.pads
        padded = any(self.pads)
        shape = (n, self.h + top + bottom, self.w + left + right, self.c)
        dxp = empty(ws, "dx_padded" if padded else "dx", shape, self.dtype)
        # each kernel row's weights as (S*C, K), packed transposed: the (s, c) terms are
        # the "output channels", in blocks of the vector width
        wpack = _pack_blocks(w.reshape(self.kh, self.kw * self.c, self.k),
                             self._all_taps[:self.kh], self.rows_block, True, ws,
                             "packed_rows", n_threads)
        _conv.conv2d_backward_data_rows(dy, wpack, dxp, self.kw, *self.stride,
                                        self.dilation[0], self.rows_isa, self.rows_nv,
                                        n_threads)
        if not padded:
            return dxp
        dx = empty(ws, "dx", (n, self.h, self.w, self.c), self.dtype)
        dx[...] = dxp[:, top:top + self.h, left:left + self.w]
        return dx

    def _data_grad_by_columns(self, w, dy, n_threads, ws):
        """dx as the (R, S, C) terms of every output pixel, dy @ w.T, added into place."""
        n = dy.shape[0]
        dx = empty(ws, "dx", (n, self.h, self.w, self.c), self.dtype)
        if n == 0:
            return dx
        # The 1x1 convolution's weights: K inputs, the (R, S, C) terms as outputs, i.e.
        # w as (1, R*S*C, K) packed transposed, once for every chunk.
        w_columns = _pack_blocks(w.reshape(1, -1, self.k), self._all_taps[:1],
                                 self._columns.fwd_block, True, ws, "packed_columns",
                                 n_threads)
        step = min(n, self._images_per_chunk)
        columns = empty(ws, "columns", (step, self.ho, self.wo, self._columns.k), self.dtype)
        for first in range(0, n, step):
            chunk = slice(first, first + step)
            cols = self._columns.forward(dy[chunk], None, None, False, n_threads,
                                         out=columns[:len(dy[chunk])], packed=w_columns)
            _conv.col2im_add(cols, dx[chunk], self.kh, self.kw, *self.stride, self.pads[0],
                             self.pads[2], *self.dilation, self._columns.fwd_isa, n_threads)
        return dx
