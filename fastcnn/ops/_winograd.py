"""Winograd F(4x4, 3x3): the filter transform and the choice of where it pays.

A 3x3, stride-1, undilated convolution computes each 4x4 block of output pixels from the
6x6 input patch under it as ``A^T [(G g G^T) * (B^T d B)] A``: per pair of channels, 36
multiplications instead of 144 (Lavin and Gray, 2015). The input and output transforms
and the 36 matrix products run in ``_conv.winograd_forward``; the filter transform
``G g G^T`` is done here, once, when a prediction step prepares its weights. Rounding
differs from the direct convolution's (float32 results agree to about 1e-6 of their
scale), so only prediction uses it, and for a layer it is used for every batch size or
none: a sample's prediction never depends on the batch it comes in.
"""
import numpy as np

# G of F(4x4, 3x3)
G = np.array([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
])
# B^T and A^T, for the NumPy reference in the tests
BT = np.array([
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
], dtype=float)
AT = np.array([
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
], dtype=float)

# The fewest input and output channels for which the transforms' cost (per channel, not
# per channel pair) is small next to the products saved.
MIN_CHANNELS = 16
# A task's transformed patches and products take about this many bytes (its thread's
# share of the core's L2 cache), whatever the channel counts.
_GROUP_BYTES = 384 * 1024


def eligible(kernel_hw, stride, dilation, c, k):
    """Whether a convolution of this geometry runs by Winograd at prediction."""
    return (tuple(kernel_hw) == (3, 3) and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and c >= MIN_CHANNELS and k >= MIN_CHANNELS)


def transformed_filter(w, block, dtype):
    """w (3, 3, C, K) as G w G^T, (36, K blocks, C, block), zero-padded in K, computed in
    double and rounded once to ``dtype``."""
    _, _, c, k = w.shape
    u = np.einsum("ar,rsck,bs->abck", G, w.astype(np.float64), G).reshape(36, c, k)
    n_blocks = -(-k // block)
    padded = np.zeros((36, c, n_blocks * block))
    padded[..., :k] = u
    packed = padded.reshape(36, c, n_blocks, block).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(packed, dtype=dtype)


def group_tiles(c, k_padded, itemsize, tile_pixels):
    """Tiles per task: a multiple of the forward kernel's pixels per tile, at least one."""
    per_tile = 36 * (c + k_padded) * itemsize
    tiles = max(1, _GROUP_BYTES // per_tile // tile_pixels) * tile_pixels
    return int(tiles)
