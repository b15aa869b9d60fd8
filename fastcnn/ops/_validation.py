"""Argument checks shared by the ``fastcnn.functional`` wrappers.

Everything a compiled kernel relies on (ndim, dtype, contiguity, sizes, index ranges) is
checked here, in Python, before any ``nogil`` code runs.
"""
import numpy as np

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
