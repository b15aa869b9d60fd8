"""bfloat16 operands for the convolution kernels: rounding, packing, availability.

bf16 values are held as uint16 arrays of their bits (NumPy has no bf16 type). The
kernels take the reduction's values in pairs (see ``_conv_bf16_kernels.h``): activations
with an even channel count, and weights packed per block of 16 or 32 outputs as rows of
(output, pair) values.
"""
import numpy as np

from .._ext import _conv
from .workspace import empty

LANES = 16


def available():
    """Whether this CPU runs the bf16 kernels (AVX-512 with AVX512_BF16)."""
    return _conv.bf16_available()


def require():
    """Raise a clear error where the bf16 kernels cannot run."""
    if not available():
        raise RuntimeError(
            "dtype='bfloat16' needs a CPU with the AVX512_BF16 instructions (AMD Zen 4 and "
            "later, Intel Cooper Lake and later), which this one lacks; use "
            "dtype='float32' instead"
        )


def round_to_bf16(a):
    """float32 ``a`` rounded to the nearest bf16 (ties to even), as float32: the values the
    kernels compute with. NaN stays NaN; subnormal values become zero of their sign, as
    the conversion instruction makes them. (A NumPy reference, for tests.)"""
    a = np.ascontiguousarray(a, dtype=np.float32)
    flushed = np.where(np.abs(a) < np.finfo(np.float32).tiny, np.copysign(np.float32(0), a), a)
    bits = flushed.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    out = rounded.view(np.float32).reshape(a.shape)
    return np.where(np.isnan(a), np.float32(np.nan), out)


def to_bf16(x, ws, name, n_threads):
    """(N, H, W, C) float32 images as bf16 bits with an even channel count (a zero channel
    added to odd C), from a workspace array."""
    n, h, w, c = x.shape
    out = empty(ws, name, (n, h, w, c + c % 2), np.uint16)
    _conv.to_bf16(x, out, n_threads)
    return out


def bits(a):
    """float32 array -> its bf16 bits (same shape), rounded to nearest even."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    out = np.empty(a.shape, np.uint16)
    if a.size:
        _conv.to_bf16(a.reshape(1, 1, 1, -1), out.reshape(1, 1, 1, -1), 1)
    return out


def nv_for(n_out):
    """Vectors of 16 outputs per register tile: one for up to 16 outputs, else two."""
    return 1 if n_out <= LANES else 2


def pack(w, block, taps=None, transpose=False, ws=None, name="packed_bf16", n_threads=1):
    """Weights (T, A, B) as the kernels' bf16 pairs, (output blocks, taps, pairs,
    2 * block), zero-padded: A the reduction and B the outputs, or with ``transpose`` the
    other way round; ``taps`` (default all) picks and orders the taps."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    t, a, b = w.shape
    taps = np.arange(t, dtype=np.intc) if taps is None else np.asarray(taps, np.intc)
    reduction, outputs = (b, a) if transpose else (a, b)
    shape = (-(-outputs // block), len(taps), -(-reduction // 2), 2 * block)
    packed = empty(ws, name, shape, np.uint16)
    _conv.pack_weights_bf16(w, taps, packed, transpose, n_threads)
    return packed


def pack_reference(w, block, transpose=False):
    """:func:`pack` in NumPy, for tests."""
    if transpose:
        w = w.transpose(0, 2, 1)
    t, a, b = w.shape
    a2 = a + a % 2
    n_blocks = -(-b // block)
    padded = np.zeros((t, a2, n_blocks * block), np.float32)
    padded[:, :a, :b] = w
    packed = bits(padded).reshape(t, a2 // 2, 2, n_blocks, block).transpose(3, 0, 1, 4, 2)
    return np.ascontiguousarray(packed).reshape(n_blocks, t, a2 // 2, 2 * block)
