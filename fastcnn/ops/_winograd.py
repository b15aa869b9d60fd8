"""Winograd convolution: the filter transforms and the choice of where it pays.

A 3x3, stride-1, undilated convolution computes each 4x4 block of output pixels from the
6x6 input patch under it as ``A^T [(G g G^T) * (B^T d B)] A``, F(4x4, 3x3): per pair of
channels, 36 multiplications instead of 144 (Lavin and Gray, 2015). A 5x5 one computes
2x2 blocks from the same 6x6 patches, F(2x2, 5x5): 36 instead of 100. Both use the same
six interpolation points (0, 1, -1, 2, -2 and infinity), so the same input transform.

The input and output transforms and the 36 matrix products run in
``_conv.winograd_forward``; the filter transform
``G g G^T`` is done here, once, when a prediction step prepares its weights. Rounding
differs from the direct convolution's (float32 results agree to about 1e-6 of their
scale), so only prediction uses it, and for a layer it is used for every batch size or
none: a sample's prediction never depends on the batch it comes in.
"""
import numpy as np

# G of F(4x4, 3x3) and of F(2x2, 5x5)
G = np.array([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
])
G5 = np.array([
    [1 / 4, 0, 0, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3],
    [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
    [0, 0, 0, 0, 1],
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
AT5 = np.array([
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 1],
], dtype=float)
# kernel size -> (G, output tile)
_FORMS = {3: (G, 4), 5: (G5, 2)}

# The fewest (input, output) channels for which the transforms' cost (per channel, not
# per channel pair) is small next to the products saved, per kernel size. Measured with
# benchmarks/winograd.py against the direct kernels, one core (an Intel Xeon, family 6
# model 207): 3x3 16->16 0.97x, 32->32 1.48x, 64->64 1.89x; 5x5 (whose transforms serve 4
# outputs, not 16) 32->32 1.05x, 32->64 1.13x, 128->128 1.90x.
MIN_CHANNELS = {3: (32, 32), 5: (32, 64)}
# A task's transformed patches and products take about this many bytes (its thread's
# share of the core's L2 cache), whatever the channel counts.
_GROUP_BYTES = 384 * 1024


def eligible(kernel_hw, stride, dilation, c, k):
    """Whether a convolution of this geometry runs by Winograd at prediction."""
    kh, kw = kernel_hw
    if kh != kw or kh not in _FORMS or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    min_c, min_k = MIN_CHANNELS[kh]
    return c >= min_c and k >= min_k


def output_tile(kernel_size):
    """Output pixels per tile side: 4 for 3x3 filters, 2 for 5x5."""
    return _FORMS[kernel_size][1]


def transformed_filter(w, block, dtype):
    """w (R, R, C, K), R 3 or 5, as G w G^T, (36, K blocks, C, block), zero-padded in K,
    computed in double and rounded once to ``dtype``."""
    r, _, c, k = w.shape
    g = _FORMS[r][0]
    u = np.einsum("ar,rsck,bs->abck", g, w.astype(np.float64), g).reshape(36, c, k)
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
