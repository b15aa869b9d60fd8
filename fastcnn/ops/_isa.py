"""The SIMD paths of the compiled kernels: what this CPU has, which one a call uses, and
how wide a layer's register tiles are at each."""
from .._ext import _conv


def cpu_isa():
    """The best SIMD path this CPU has: 0 baseline, 1 AVX2+FMA, 2 AVX-512."""
    return _conv.cpu_isa()


def isa_name(isa):
    return _conv.ISA_NAMES[isa]


def resolve_isa(isa):
    """The SIMD path to use: the CPU's best, or ``isa`` if the CPU supports it."""
    best = _conv.cpu_isa()
    if isa is None:
        return best
    if isa not in (0, 1, 2):
        raise ValueError(f"isa must be None, 0 (baseline), 1 (AVX2) or 2 (AVX-512), got {isa!r}")
    if isa > best:
        raise ValueError(
            f"isa={isa} ({_conv.ISA_NAMES[isa]}) is not supported by this CPU; "
            f"the best it has is {best} ({_conv.ISA_NAMES[best]})"
        )
    return isa


def vector_plan(isa, itemsize, n_out):
    """Instruction set and vectors per tile row for ``n_out`` output channels.

    Wide layers use two full vectors per tile row; narrow ones step down to a narrower
    vector so that little of each vector is padding.
    """
    if n_out > _conv.vector_length(isa, itemsize):
        return isa, 2
    while isa > 0 and n_out <= _conv.vector_length(isa - 1, itemsize):
        isa -= 1
    return isa, 1
