"""The inference plan: a fitted network's prediction pass, prepared once.

Training runs each layer's ``forward``, which reads the weights as they are at that
moment. Prediction runs many batches through weights that do not change, so a
:class:`InferencePlan` makes, once, everything that depends only on them: BatchNorm folded
into the convolution or dense layer before it (and the activation after it fused in),
weights packed into the kernels' blocks, biases padded. Each layer becomes a step
(:meth:`Layer.prediction_step <fastcnn.nn.layer.Layer.prediction_step>`), and the plan
runs the steps over the batch in chunks of a fixed number of images, in buffers that each
thread keeps from call to call (sized for the largest chunk, so a last, smaller chunk
reuses them too).

The plan belongs to one state of the weights: the network drops it whenever they may
have changed (:meth:`Network.weights_changed <fastcnn.nn.network.Network.weights_changed>`),
and it is never pickled. Its results are those of ``Network.forward`` at prediction, by
the same kernels (a 2x2 pooling after a convolution runs inside it, with the same
results), except where a 3x3 or 5x5 convolution runs by Winograd's algorithm.
"""
import threading

import numpy as np

from .._ext._conv import Program
from ..ops.threads import grain
from ..ops.workspace import GrowingWorkspace
from .dense import DenseLayer

# Images per chunk: as many as keep the chunk's activations within about this many bytes
# (so that they stay near the cache while the next layer reads them), a power of two
# between the two bounds below. On one Zen 4 core (32 MB of L3 shared by the machine),
# 1024 images of benchmarks/inference.py's all-conv net: 4,834 img/s at 4 MB, 4,841 at 8,
# 4,561 at 16 and 4,313 at 32 (medians of 5 rounds; the other nets within noise).
_CHUNK_BYTES = 8 * 1024 * 1024
_MIN_CHUNK = 16
_MAX_CHUNK = 1024


def chunk_images(activation_bytes_per_image):
    """Images per chunk for a network whose layer outputs take this many bytes per image."""
    fit = max(1, _CHUNK_BYTES // max(1, activation_bytes_per_image))
    chunk = _MIN_CHUNK
    while chunk * 2 <= min(fit, _MAX_CHUNK):
        chunk *= 2
    return chunk


def _activations(layers):
    """Values per image in the outputs of these layers and every layer inside them."""
    return sum(int(np.prod(layer.output_shape)) for child in layers for layer in child.walk())


def _program(image_steps, flat_steps, dtype):
    """The compiled program of these steps, or None where one of them has no op (see
    :mod:`fastcnn.ops._program`)."""
    ops = [getattr(step, "op", None) for step in image_steps + flat_steps]
    if not ops or None in ops or dtype not in (np.float32, np.float64):
        return None
    return Program(ops, len(image_steps), np.dtype(dtype))


def _width(layer, network):
    """Values per image in the output of ``layer`` (None: the network's input)."""
    return int(np.prod(network.input_shape if layer is None else layer.output_shape))


class InferencePlan:
    """The prediction pass of ``network`` (its last layer's output, or, with
    ``features``, its input), prepared for the network's current weights.

    With ``winograd`` (the default), the stride-1 3x3 and 5x5 convolutions with enough
    channels for it to pay run by Winograd's algorithm (:mod:`fastcnn.ops._winograd`):
    fewer multiplications, a different rounding (float32 results agree with the direct
    convolution's to about 1e-6 of their scale). Without it, the plan's results are
    bitwise those of ``Network.forward``. Either way a 2x2 pooling with stride 2 runs
    inside the convolution before it (direct or Winograd), whose output then never leaves
    the cache.

    Where every step is one call of a kernel that ``_conv.Program`` knows (the direct,
    single-channel, pooled and Winograd convolutions, dense layers, max, average and
    global average pooling; not bf16 operands, residual blocks, depthwise convolutions,
    L2, pyramid or global max pooling, or activations other than relu), the whole pass,
    chunks and all, is one call of that compiled program, with no Python between layers:
    the same kernels, so the same results. Otherwise the steps run one by one, from
    Python.

    Thread-safe: each thread runs the same steps in its own buffers.
    """

    def __init__(self, network, features=False, winograd=True):
        root = network.root
        children = root.children[:len(root.children) - 1 if features else None]
        # Two stages: the layers on images run chunk by chunk; the dense layers after
        # them (whose weights are read once per call of their kernel) on bigger chunks,
        # so that each pass over their weights serves more images.
        split = next((i for i, child in enumerate(children)
                      if isinstance(child, DenseLayer) or len(child.input_shape) == 1),
                     len(children))
        self.image_steps = root.prediction_steps(split, winograd)
        self.flat_steps = root.prediction_steps(len(children), winograd, first=split)
        itemsize = network.dtype.itemsize
        self.chunk = chunk_images(itemsize * _activations(children[:split]))
        flat_bytes = itemsize * (_activations(children[split:])
                                 + _width(children[split - 1] if split else None, network))
        self.flat_chunk = max(self.chunk, chunk_images(flat_bytes))
        self.flat_width = _width(children[split - 1] if split else None, network)
        self.output_width = _width(children[-1] if children else None, network)
        self.dtype = network.dtype
        self.program = _program(self.image_steps, self.flat_steps, self.dtype)
        self._local = threading.local()

    def _spaces(self):
        spaces = getattr(self._local, "spaces", None)
        if spaces is None:
            spaces = self._local.spaces = (
                [GrowingWorkspace() for _ in self.image_steps],
                [GrowingWorkspace() for _ in self.flat_steps],
                GrowingWorkspace())
        return spaces

    def _image_stage(self, x, spaces, n_threads):
        for step, ws in zip(self.image_steps, spaces):
            x = step(x, ws, n_threads)
        return x.reshape(x.shape[0], -1)

    def run(self, images, out, n_threads):
        """Write the plan's output for ``images`` (N, H, W, C), C-contiguous of the plan's
        dtype, into ``out`` (N, output width), with ``n_threads`` threads (an int)."""
        image_spaces, flat_spaces, own = self._spaces()
        n = images.shape[0]
        chunk = self.chunk
        if self.program is not None:
            buffer = own.empty("program", (self.program.buffer_len(chunk, self.flat_chunk),),
                               self.dtype)
            self.program.run(images.reshape(n, -1), out, buffer, chunk, self.flat_chunk,
                             n_threads, grain())
            return out
        for first in range(0, n, self.flat_chunk):
            last = min(n, first + self.flat_chunk)
            if not self.image_steps:
                flat = images[first:last].reshape(last - first, -1)
            elif last - first <= chunk:     # one chunk: its output goes on as it is
                flat = self._image_stage(images[first:last], image_spaces, n_threads)
            else:
                flat = own.empty("flat", (last - first, self.flat_width), self.dtype)
                for begin in range(first, last, chunk):
                    end = min(last, begin + chunk)
                    flat[begin - first:end - first] = self._image_stage(
                        images[begin:end], image_spaces, n_threads)
            for step, ws in zip(self.flat_steps, flat_spaces):
                flat = step(flat, ws, n_threads)
            out[first:last] = flat.reshape(last - first, -1)
        return out

    def release(self):
        """Drop every thread's buffers."""
        self._local = threading.local()
