"""The weight gradients of a convolution plan (ConvPlan inherits them): the register-
tiled float32/float64 kernel, the bf16 one on pairs of output pixels, and the
single-channel one on expanded rows. Each splits the batch into a fixed number of
chunks with private partial sums, added in chunk order, so that the arithmetic does not
depend on the thread count."""
import numpy as np

from .._ext import _conv
from .workspace import empty, zeros

# Fewer weight-gradient tiles than this and the batch is split into chunks with private
# partial sums (added in chunk order), so small layers still use every core. Fixed, so
# the arithmetic does not depend on the thread count.
_MIN_WEIGHT_GRAD_TASKS = 64
# The weight gradient walks the batch in steps of about this many bytes of x and dy, so
# that each step stays in cache while every tile reads it.
_WEIGHT_GRAD_STEP_BYTES = 256 * 1024


class WeightGradients:
    """ConvPlan's weight-gradient methods; they read the plan's geometry attributes."""

    def _partials(self, n, tiles, kp, dtype, ws, dw_out):
        """The weight-gradient kernels' output: one (R, S, C, kp) partial sum per chunk of
        the batch (chunks enough for _MIN_WEIGHT_GRAD_TASKS tasks of ``tiles`` tiles), or
        ``dw_out`` itself, written in place, where one chunk of unpadded channels does
        (then ``direct``)."""
        n_chunks = max(1, min(n, -(-_MIN_WEIGHT_GRAD_TASKS // tiles)))
        if n_chunks == 1 and kp == self.k and dw_out is not None:
            return dw_out.reshape((1,) + dw_out.shape), True
        return empty(ws, "partial", (n_chunks, self.kh, self.kw, self.c, kp), dtype), False

    def _sum_partials(self, partial, direct, dw_out):
        """dw from the chunks' partial sums, added in chunk order (into ``dw_out`` if given)."""
        if direct:
            return dw_out
        partial = partial[..., :self.k]
        if partial.shape[0] == 1:
            return partial[0]
        return np.sum(partial, axis=0, out=dw_out)

    def _weight_grad(self, x, dy, n_threads, ws, dw_out=None):
        """dw by the register-tiled kernel: (channel tile x output-channel block) per task."""
        n = x.shape[0]
        if self.k_padded != self.k:
            # the padding channels stay zero when the array is reused
            dy_padded = zeros(ws, "dy_padded", (n, self.ho, self.wo, self.k_padded), self.dtype)
            dy_padded[..., :self.k] = dy
        else:
            dy_padded = dy
        partial, direct = self._partials(n, self.wgrad_tiles, self.k_padded, self.dtype, ws, dw_out)
        images_per_step = max(1, _WEIGHT_GRAD_STEP_BYTES // (dy_padded[0].nbytes + x[0].nbytes))
        _conv.conv2d_backward_weights(x, dy_padded, partial, self.stride[0], self.stride[1],
                                      self.pads[0], self.pads[2], self.dilation[0],
                                      self.dilation[1], self.fwd_block, images_per_step,
                                      self.fwd_isa, self.fwd_nv, n_threads)
        return self._sum_partials(partial, direct, dw_out)

    def _weight_grad_bf16(self, x, dy, n_threads, ws, dw_out=None):
        """dw on bf16 operands, the reduction over pairs of output pixels along each row:
        x and dy are first laid out as those pairs (see conv2d_backward_weights_bf16)."""
        n = x.shape[0]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        kp, wq = self.bf16_k_padded, -(-self.wo // 2)
        width = 2 * (wq - 1) * sw + (self.kw - 1) * dw + 1
        xpairs = empty(ws, "x_pairs", (n, self.h, width, 2 * self.c), np.uint16)
        _conv.pair_columns_bf16(x, xpairs, 1, self.pads[2], sw, n_threads)
        # the padding channels stay zero when the array is reused
        dypairs = (zeros if kp != self.k else empty)(ws, "dy_pairs",
                                                     (n, self.ho, wq, 2 * kp), np.uint16)
        _conv.pair_columns_bf16(dy, dypairs, 2, 0, 1, n_threads)
        partial, direct = self._partials(n, self.bf16_wgrad_tiles, kp, np.float32, ws, dw_out)
        images_per_step = max(1, _WEIGHT_GRAD_STEP_BYTES // (xpairs[0].nbytes
                                                             + dypairs[0].nbytes))
        _conv.conv2d_backward_weights_bf16(xpairs, dypairs, partial, sh, sw, self.pads[0], dh,
                                           dw, self.bf16_nv, images_per_step, n_threads)
        return self._sum_partials(partial, direct, dw_out)

    def _single_channel_weight_grad(self, expanded, dy, n_threads, ws):
        """dw of a single-channel, width-stride-1 convolution, vectorised along rows."""
        n = expanded.shape[0]
        n_chunks = max(1, min(n, -(-_MIN_WEIGHT_GRAD_TASKS // (self.kh * self.kw))))
        sums = empty(ws, "partial", (n_chunks, self.kh, self.kw, self.row_vector_values),
                     self.dtype)
        _conv.conv2d_backward_weights_c1(expanded, dy, sums,
                                         self.stride[0], self.dilation[0], self.dilation[1],
                                         self.isa, n_threads)
        # chunks in order, then the output columns of each channel
        sums = sums[0] if n_chunks == 1 else sums.sum(axis=0)
        dw = sums[..., :self.wo * self.k].reshape(self.kh, self.kw, self.wo, self.k).sum(axis=2)
        return dw.reshape(self.kh, self.kw, 1, self.k)
