# Compiler directives (boundscheck, wraparound, cdivision, ...) come from setup.py so that
# FASTCNN_DEBUG=1 can turn the checks back on.
"""Direct 2-D convolution on NHWC arrays: forward, data gradient and weight gradient.

The arithmetic is done by the register-tiled micro-kernels of ``_conv_kernels.h``; this
module splits the work into independent tiles, describes each tile to the kernel (its
pixels' origins and a table of taps; the kernel reads zeros wherever a tap falls into
padding, so no padded copy of the input is made) and runs the tiles with ``prange``.
Every output element is computed by exactly one task in an order fixed by the data, so
results do not depend on the thread count.

The arrays arrive validated and packed by ``fastcnn.functional``; nothing here checks
shapes again.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport INT32_MAX
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from ._dispatch cimport fc_cpu_isa, resolve_isa
from ._openmp cimport per_thread

# One file per kernel family's drivers; they share this module's namespace, so that the
# plans in fastcnn.ops reach every kernel as _conv.NAME.
include "_conv_kernels.pxi"
include "_pool_kernels.pxi"

TILE_CHANNELS = FC_TILE_CHANNELS
ISA_NAMES = {0: "baseline (16-byte vectors)", 1: "AVX2+FMA", 2: "AVX-512"}


def cpu_isa():
    """The best SIMD level of this CPU: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return fc_cpu_isa()


def vector_length(int isa, int itemsize):
    """Elements per SIMD vector at ``isa`` for elements of ``itemsize`` bytes."""
    return fc_conv_forward_table_f32_for(isa).lanes * <int> sizeof(float) // itemsize


include "_conv_tiles.pxi"
include "_conv_forward.pxi"
include "_conv_backward_data.pxi"
include "_conv_backward_weights.pxi"
include "_conv_c1.pxi"
include "_conv_winograd.pxi"
include "_conv_winograd_wgrad.pxi"
include "_conv_bf16.pxi"
include "_conv_program.pxi"
