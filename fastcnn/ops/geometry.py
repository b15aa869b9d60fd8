"""Window geometry, the one place it is computed: pairs, padding amounts, output sizes.

Shared by the convolution and pooling ops and by the layers that size their outputs when
a network is built.
"""
import numbers

import numpy as np


def pair(value):
    """An int or an (int, int) as a (vertical, horizontal) tuple, unchecked (for values a
    layer spec has already validated)."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


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


def conv_output_hw(in_hw, kernel_hw, stride, pads, dilation):
    """(Ho, Wo) of a convolution: floor mode, pads as (top, bottom, left, right)."""
    return (output_size(in_hw[0], pads[0], pads[1], kernel_hw[0], stride[0], dilation[0]),
            output_size(in_hw[1], pads[2], pads[3], kernel_hw[1], stride[1], dilation[1]))


def checked_conv_geometry(in_hw, kernel_hw, stride, padding, dilation):
    """(stride, pads, dilation, (ho, wo)) of a convolution, checked: the stride and dilation
    as validated pairs, the padding as (top, bottom, left, right), and a ValueError when
    the kernel does not fit the padded input."""
    (h, w), (kh, kw) = in_hw, kernel_hw
    stride = int_pair(stride, "stride")
    dilation = int_pair(dilation, "dilation")
    pads = padding_amounts(padding, (h, w), (kh, kw), stride, dilation)
    ho, wo = conv_output_hw((h, w), (kh, kw), stride, pads, dilation)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"kernel {kh}x{kw} (dilation {dilation[0]}x{dilation[1]}) does not fit the "
            f"{h}x{w} input padded by {pads} (top, bottom, left, right); use a smaller "
            "kernel or dilation, or more padding (e.g. padding='same')"
        )
    return stride, pads, dilation, (ho, wo)


def pool_output_hw(in_hw, pool_hw, stride):
    """(Ho, Wo) of an unpadded pooling window, floor mode."""
    return conv_output_hw(in_hw, pool_hw, stride, (0, 0, 0, 0), (1, 1))


def adaptive_bins(size, n_bins):
    """[start, end) of each of ``n_bins`` adaptive pooling bins along an axis of ``size``.

    PyTorch's rule: bin i covers ``floor(i * size / n_bins)`` to ``ceil((i + 1) * size /
    n_bins) - 1``. Neighbouring bins overlap where ``size`` is not a multiple of
    ``n_bins``, and repeat elements where ``size < n_bins``.
    """
    return [(i * size // n_bins, -(-(i + 1) * size // n_bins)) for i in range(n_bins)]


def pyramid_bins(in_hw, levels):
    """The bins of a spatial pyramid, in output order, as an int64 array of rows
    (top, bottom, left, right), ends exclusive: level by level, each level's l x l bins
    row by row."""
    rows = []
    for level in levels:
        cols = adaptive_bins(in_hw[1], level)
        for top, bottom in adaptive_bins(in_hw[0], level):
            rows.extend((top, bottom, left, right) for left, right in cols)
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def data_grad_phases(shape_hw, kernel_hw, stride, pads, dilation):
    """For each stride phase (row0, col0): the taps (r, s) that reach it and their dy offsets.

    Input row i = row0 + stride*j (padded row a = i + pad_top) receives output row
    oh = (a - r*dilation) / stride for each r where that is an integer, i.e. oh = j + e_r
    with e_r = (row0 + pad_top - r*dilation) / stride, the same for every j of the phase.
    """
    axes = []
    for size, kernel, s, pad, d in zip(shape_hw, kernel_hw, stride, pads, dilation):
        phases = []
        for first in range(min(s, size)):
            taps = [(r, (first + pad - r * d) // s) for r in range(kernel)
                    if (first + pad - r * d) % s == 0]
            phases.append((first, taps))
        axes.append(phases)
    for row0, row_taps in axes[0]:
        for col0, col_taps in axes[1]:
            # the dy column rising within a kernel row: one run, for the sliding tile
            col_taps = sorted(col_taps, key=lambda tap: tap[1])
            yield row0, col0, [(r, er, s, es) for r, er in row_taps for s, es in col_taps]
