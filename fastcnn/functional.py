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

from .ops.activation import (
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
    tanh,
    tanh_backward,
)
from .ops.batchnorm import batch_norm, batch_norm_backward
from .ops.conv import conv2d, conv2d_backward
from .ops.depthwise import depthwise_conv2d, depthwise_conv2d_backward
from .ops.l2_pool import l2_pool2d, l2_pool2d_backward
from .ops.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    global_max_pool2d,
    global_max_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .ops.pyramid import spatial_pyramid_pool, spatial_pyramid_pool_backward

__all__ = [
    "conv2d",
    "conv2d_backward",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "l2_pool2d",
    "l2_pool2d_backward",
    "spatial_pyramid_pool",
    "spatial_pyramid_pool_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_cross_entropy",
    "batch_norm",
    "batch_norm_backward",
]
