"""Winograd convolution: the filter transforms and the choice of where it pays.

A 3x3, stride-1, undilated convolution computes each 4x4 block of output pixels from the
6x6 input patch under it as ``A^T [(G g G^T) * (B^T d B)] A``, F(4x4, 3x3): per pair of
channels, 36 multiplications instead of 144 (Lavin and Gray, 2015). A 5x5 one computes
4x4 blocks from 8x8 patches, F(4x4, 5x5): 64 instead of 400, on the eight points 0, 1,
-1, 2, -2, 1/2, -1/2 and infinity. F(2x2, 5x5), 2x2 blocks from 6x6 patches (36 instead
of 100), shares F(4x4, 3x3)'s six points and input transform; it is kept for comparison
(``benchmarks/winograd.py``): F(4x4, 5x5) has fewer products and less transform work per
output pixel, and float32 errors of the same size.

The input and output transforms and the alpha x alpha matrix products run in
``_conv.winograd_forward``; the filter transform
``G g G^T`` is done here (once when a prediction step prepares its weights). Rounding
differs from the direct convolution's (float32 results agree to about 1e-6 of their
scale), so only prediction uses it (for a layer, at every batch size or none: a
sample's prediction never depends on the batch it comes in), and mixed-precision
training, whose direct kernels round their operands to bf16 anyway: its forward pass,
data gradient (:func:`data_grad`) and, for 3x3 layers from 64 input channels, weight
gradient (:func:`weight_grad`, F(3x3, 4x4): the same transforms, transposed).
"""
import numpy as np

from .._ext import _conv
from .workspace import empty

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
# F(4x4, 5x5) on the points 0, 1, -1, 2, -2, 1/2, -1/2, infinity (Cook-Toom: row j of
# B^T holds the coefficients of prod_{l != j} (x - p_l), of G p_j^k / prod_{l != j} (p_j
# - p_l); infinity's rows keep the highest power)
BT8 = np.array([
    [-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0],
    [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
    [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
    [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
    [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
    [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
    [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
    [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1],
])
G45 = np.array([
    [-1, 0, 0, 0, 0],
    [-2 / 9, -2 / 9, -2 / 9, -2 / 9, -2 / 9],
    [-2 / 9, 2 / 9, -2 / 9, 2 / 9, -2 / 9],
    [1 / 90, 1 / 45, 2 / 45, 4 / 45, 8 / 45],
    [1 / 90, -1 / 45, 2 / 45, -4 / 45, 8 / 45],
    [32 / 45, 16 / 45, 8 / 45, 4 / 45, 2 / 45],
    [32 / 45, -16 / 45, 8 / 45, -4 / 45, 2 / 45],
    [0, 0, 0, 0, 1],
])
AT8 = np.array([
    [1, 1, 1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
    [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
    [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 1],
])
# (kernel size, output tile) -> (G, B^T, A^T); the tile each kernel size runs with
FORMS = {(3, 4): (G, BT, AT), (5, 2): (G5, BT, AT5), (5, 4): (G45, BT8, AT8)}
_TILES = {3: 4, 5: 4}

# The fewest (input, output) channels for which the transforms' cost (per channel, not
# per channel pair) is small next to the products saved, per kernel size. Measured with
# benchmarks/winograd.py against the direct kernels, one core of an AMD EPYC Zen 4
# (benchmarks/reference/winograd.txt and an ad-hoc run for the narrowest): 3x3 16->16
# 1.08x (0.93x on 2 threads), 32->32 1.89x, 64->64 2.34x; 5x5 by F(4x4, 5x5) 8->16
# 0.96x, 16->8 1.48x, 16->16 1.63x, 16->32 2.26x, 32->32 2.82x, 64->64 3.59x (F(2x2, 5x5):
# 0.48x, 0.84x, 0.95x, 1.19x, 1.47x, 1.89x).
MIN_CHANNELS = {3: (32, 32), 5: (16, 8)}
# A task's transformed patches and products take about this many bytes (its thread's
# share of the core's L2 cache), whatever the channel counts.
_GROUP_BYTES = 384 * 1024


def eligible(kernel_hw, stride, dilation, c, k):
    """Whether a convolution of this geometry runs by Winograd at prediction."""
    kh, kw = kernel_hw
    if kh != kw or kh not in _TILES or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    min_c, min_k = MIN_CHANNELS[kh]
    return c >= min_c and k >= min_k


def output_tile(kernel_size):
    """Output pixels per tile side that a kernel size runs with (4 for 3x3 and 5x5)."""
    return _TILES[kernel_size]


def patch_size(kernel_size, tile):
    """The side of the input patch under a tile: alpha = tile + kernel size - 1."""
    return tile + kernel_size - 1


def data_grad_filter(w):
    """The filter (R, R, K, C) whose stride-1 convolution of dy is the data gradient of
    the convolution by w (R, R, C, K): w flipped along both kernel axes, C and K swapped
    (the convolution of dy padded by R - 1 - each of the forward's paddings)."""
    return np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))


def transformed_filter(w, block, dtype, tile=None, ws=None, name="winograd", n_threads=1):
    """w (R, R, C, K), R 3 or 5, as G w G^T, (alpha^2, K blocks, C, block), zero-padded
    in K, computed in double and rounded once to ``dtype`` (``_conv.winograd_filter``;
    :func:`transformed_filter_reference` is its NumPy form); ``tile`` (default
    :func:`output_tile`) picks the form. With a workspace ``ws`` (a training step, which
    makes it anew each time) the array is reused, under ``name``."""
    r, _, c, k = w.shape
    g = FORMS[r, tile or output_tile(r)][0]
    packed = empty(ws, name, (g.shape[0] ** 2, -(-k // block), c, block), dtype)
    _conv.winograd_filter(np.ascontiguousarray(w, dtype), g, packed, n_threads)
    return packed


def transformed_filter_reference(w, block, dtype, tile=None):
    """:func:`transformed_filter` in NumPy, for tests: two matrix products in double."""
    r, _, c, k = w.shape
    g = FORMS[r, tile or output_tile(r)][0]
    alpha = g.shape[0]
    gw = (g @ w.astype(np.float64).reshape(r, r * c * k)).reshape(alpha, r, c * k)
    u = np.matmul(g, gw).reshape(alpha * alpha, c, k)
    n_blocks = -(-k // block)
    padded = np.zeros((alpha * alpha, c, n_blocks * block))
    padded[..., :k] = u
    return padded.reshape(alpha * alpha, c, n_blocks, block).transpose(0, 2, 1, 3).astype(dtype)


def group_tiles(c, k_padded, itemsize, tile_pixels, alpha=6):
    """Tiles per task: a multiple of the forward kernel's pixels per tile, at least one."""
    per_tile = alpha * alpha * (c + k_padded) * itemsize
    tiles = max(1, _GROUP_BYTES // per_tile // tile_pixels) * tile_pixels
    return int(tiles)


def prepare(w, b, block, dtype, rows, ws=None, name="winograd", n_threads=1):
    """What :func:`run` takes for weights w (R, R, C, K) and bias b (or None): the
    transformed filter (in ``ws``'s arrays, if given: see :func:`transformed_filter`),
    the bias, tiles per task (a multiple of ``rows``, the product kernel's rows per call)
    and the output tile."""
    r, _, c, k = w.shape
    dtype = np.dtype(dtype)
    tile = output_tile(r)
    upack = transformed_filter(w, block, dtype, tile, ws, name, n_threads)
    group = group_tiles(c, upack.shape[1] * block, dtype.itemsize, rows, patch_size(r, tile))
    bias = np.zeros(k, dtype) if b is None else np.ascontiguousarray(b, dtype)
    return upack, bias, group, tile


_POOLS = {None: 0, "max": 1, "avg": 2}


def run(x, prepared, out, pad_top, pad_left, relu, isa, nv, block, n_threads, pool=None):
    """out = the convolution of x (N, H, W, C) by :func:`prepare`'s weights (then relu),
    and with ``pool`` ("max" or "avg") the 2x2 pooling with stride 2 after it, in one
    pass: ``out`` is then the pooled (N, Ho // 2, Wo // 2, K)."""
    upack, bias, group, tile = prepared
    alpha = int(round(upack.shape[0] ** 0.5))
    _conv.winograd_forward(x, upack, bias, out, pad_top, pad_left, relu, isa, nv, block,
                           group, n_threads, tile, alpha, _POOLS[pool])
    return out


def data_grad(plan, w, dy, dx, n_threads, ws=None):
    """dx = the data gradient of ``plan``'s convolution (a ConvPlan's, stride 1) by w for
    the output gradient dy: the convolution of dy by :func:`data_grad_filter` of w, by
    Winograd, on the plan's data-gradient vectors (its arrays from ``ws``, if given)."""
    prepared = prepare(data_grad_filter(w), None, plan.dx_block, plan.dtype,
                       _conv.winograd_rows(plan.dx_isa, plan.dx_nv), ws, "winograd_dx",
                       n_threads)
    return run(dy, prepared, dx, plan.kh - 1 - plan.pads[0], plan.kw - 1 - plan.pads[2],
               False, plan.dx_isa, plan.dx_nv, plan.dx_block, n_threads)


# The weight gradient's tiles per product call (a multiple of 16), and the bytes of
# transformed tiles made before their products are added (a span: at most this, or one
# chunk; it keeps them in the core's L2 cache). Against the bf16 direct kernel (one core
# of an AMD EPYC Zen 4, batch 64, 3x3 'same', ad-hoc runs): 32x32 32->32 0.98x, 16x16
# 32->64 0.92x, 64->64 1.22x, 32x32 64->64 1.20-1.28x, 16x16 64->128 1.3-1.5x, 128->128
# 1.4-1.8x, 8x8 128->256 0.9-1.2x: it pays from 64 input channels.
_WGRAD_CHUNK = 64
_WGRAD_SPAN_BYTES = 256 << 10
WGRAD_MIN_CHANNELS = 64


def weight_grad_eligible(plan):
    """Whether ``plan``'s weight gradient runs by :func:`weight_grad`: a 3x3 convolution
    trained by Winograd (mixed precision's) with at least WGRAD_MIN_CHANNELS inputs."""
    return plan.train_winograd and plan.kh == 3 and plan.c >= WGRAD_MIN_CHANNELS


def weight_grad(plan, x, dy, n_threads, out=None, ws=None):
    """dw (3, 3, C, K) of ``plan``'s 3x3 stride-1 convolution for the forward input x and
    output gradient dy, by Winograd F(3x3, 4x4): ``G^T [sum over tiles of (A g A^T) *
    (B^T d B)] G``, the sums in ``_conv.winograd_weight_grad``, G here, in double (in
    ``ws``'s arrays, if given); into ``out`` if given."""
    c, k, block = plan.c, plan.k, plan.fwd_block
    kp = -(-k // block) * block
    m = empty(ws, "winograd_m", (36, c, kp), plan.dtype)
    per_tile = 36 * (c + kp) * m.itemsize
    span = max(1, _WGRAD_SPAN_BYTES // per_tile // _WGRAD_CHUNK) * _WGRAD_CHUNK
    _conv.winograd_weight_grad(x, dy, m, plan.pads[0], plan.pads[2], plan.fwd_isa,
                               plan.fwd_nv, block, _WGRAD_CHUNK, span, n_threads)
    m64 = empty(ws, "winograd_m64", (6, 6, c, k), np.float64)
    np.copyto(m64.reshape(36, c, k), m[:, :, :k])
    gm = empty(ws, "winograd_gm", (3, 6, c * k), np.float64)
    np.matmul(G.T, m64.reshape(6, -1), out=gm.reshape(3, -1))
    dw = empty(ws, "winograd_dw", (3, 3, c * k), np.float64)
    np.matmul(G.T, gm, out=dw)
    if out is None:
        return dw.reshape(3, 3, c, k).astype(plan.dtype)
    np.copyto(out, dw.reshape(out.shape), casting="same_kind")
    return out
