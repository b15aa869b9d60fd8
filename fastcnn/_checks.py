"""Argument checks shared by the ``fastcnn.functional`` wrappers.

Everything a compiled kernel relies on (ndim, dtype, contiguity, sizes, index ranges) is
checked here, in Python, before any ``nogil`` code runs.
"""
import numbers

import numpy as np

from ._ext._openmp import effective_n_threads

FLOAT_DTYPES = (np.float32, np.float64)


def result_dtype(*arrays):
    """The float dtype the kernels run in for these inputs: float64 if any is float64."""
    for a in arrays:
        if a is not None and np.asarray(a).dtype == np.float64:
            return np.float64
    return np.float32


def as_float_array(value, name, ndim, dtype=None):
    """``value`` as a C-contiguous float32/float64 array of ``ndim`` dimensions.

    Integer, boolean-free real input is cast to float (float64 input stays float64,
    everything else becomes float32 unless ``dtype`` says otherwise); non-contiguous,
    Fortran-ordered and read-only arrays are copied. Complex, object, string and boolean
    arrays are rejected with a TypeError.
    """
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} must be an array of real numbers, got dtype {array.dtype}; "
            "convert it with np.asarray(..., dtype=np.float32)"
        )
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got an array of shape {array.shape}")
    if dtype is None:
        dtype = np.float64 if array.dtype == np.float64 else np.float32
    return np.ascontiguousarray(array, dtype=dtype)


def row_shares(sample_weight, n):
    """Each row's share of the total weight (float64, summing to 1), validated."""
    w = as_float_array(sample_weight, "sample_weight", 1, np.float64)
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must have one entry per row, shape ({n},), got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must hold finite, non-negative values")
    total = w.sum()
    if n and total <= 0:
        raise ValueError("sample_weight must not be all zero: no row would count")
    return w / total if n else w


def check_same_dtype(**arrays):
    """Mixed float32/float64 inputs are an error: the caller picks one precision."""
    dtypes = {name: np.asarray(a).dtype for name, a in arrays.items() if a is not None}
    floats = {name: dt for name, dt in dtypes.items() if dt.kind == "f"}
    if len(set(floats.values())) > 1:
        listing = ", ".join(f"{name} is {dt}" for name, dt in floats.items())
        raise TypeError(
            f"mixed float dtypes ({listing}); cast them to one dtype, "
            "e.g. w.astype(x.dtype)"
        )


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def int_pair(value, name):
    """An int or a pair of ints, each >= 1, as a (vertical, horizontal) tuple."""
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return positive_int(value[0], name), positive_int(value[1], name)
    v = positive_int(value, name)
    return v, v


def padding_amounts(padding, in_hw, kernel_hw, stride_hw, dilation_hw):
    """(top, bottom, left, right) from an int, a pair, a 4-tuple, "valid" or "same".

    "same" follows TensorFlow for any stride: output = ceil(input / stride), the odd
    extra row or column of padding at the bottom / right.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode != "same":
            raise ValueError(
                f"padding must be 'valid', 'same', an int, a pair or a 4-tuple, got {padding!r}"
            )
        pads = []
        for size, k, s, d in zip(in_hw, kernel_hw, stride_hw, dilation_hw):
            extent = (k - 1) * d + 1
            out = -(-size // s)
            total = max((out - 1) * s + extent - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads[0] + pads[1]
    if isinstance(padding, (tuple, list, np.ndarray)):
        values = list(padding)
        if len(values) == 2:
            values = [values[0], values[0], values[1], values[1]]
        elif len(values) != 4:
            raise ValueError(
                "padding must be an int, a (vertical, horizontal) pair or a "
                f"(top, bottom, left, right) 4-tuple, got {padding!r}"
            )
    else:
        values = [padding] * 4
    checked = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"padding values must be ints, got {padding!r}")
        if v < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        checked.append(int(v))
    return tuple(checked)


def output_size(size, pad_before, pad_after, kernel, stride, dilation):
    """Floor-mode output size of a sliding window (convolution or pooling)."""
    extent = (kernel - 1) * dilation + 1
    return (size + pad_before + pad_after - extent) // stride + 1


# Work below this many units per thread runs on fewer threads (PyTorch's grain size):
# a parallel region costs microseconds to start and join, and far more when the cores are
# busy with other processes and the OpenMP team has to wait for one to be scheduled.
PARALLEL_GRAIN = 32768


def resolve_threads(n_threads, work=None):
    """Threads for a kernel call: ``n_threads`` resolved, then capped so that each
    thread gets at least PARALLEL_GRAIN units of ``work`` (elements, or vector
    multiply-adds for the convolutions). Results never depend on the count."""
    n_threads = effective_n_threads(n_threads)
    if work is not None:
        n_threads = max(1, min(n_threads, int(work) // PARALLEL_GRAIN))
    return n_threads
