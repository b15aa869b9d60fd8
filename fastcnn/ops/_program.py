"""Prediction steps described as data, for the compiled inference program.

A prediction step (a function ``step(x, ws, n_threads)``, see
:class:`~fastcnn.nn.inference.InferencePlan`) whose whole work is one call of a forward
kernel that ``_conv.Program`` knows carries that call as :func:`with_op`'s ``op``: a
dict of its kernel's arguments and prepared arrays. A plan whose steps all carry one runs
them in one call, in C; the step function itself stays, for plans with other steps.
"""
import numpy as np

from .._ext import _conv


def with_op(step, op):
    """``step``, marked as the kernel call ``op`` describes (None: none)."""
    step.op = op
    return step


def conv_op(plan, kind, arrays, relu, pooled=False, **fields):
    """The op of a forward kernel over the convolution of ``plan`` (a ConvPlan), with
    these prepared ``arrays`` (weights, bias), relu, and (``pooled``) the 2x2 pooling with
    stride 2 after it; ``fields``: the kernel's other arguments."""
    (sh, sw), (dh, dw) = plan.stride, plan.dilation
    top, bottom, left, right = plan.pads
    hp, wp = (plan.ho // 2, plan.wo // 2) if pooled else (plan.ho, plan.wo)
    op = dict(kind=kind, arrays=arrays, in_len=plan.h * plan.w * plan.c,
                out_len=hp * wp * plan.k,
                work=plan.ho * plan.wo * plan.kh * plan.kw * plan.c * plan.k,
                H=plan.h, W=plan.w, C=plan.c, Ho=plan.ho, Wo=plan.wo, K=plan.k, Hp=hp, Wp=wp,
                kernel_h=plan.kh, kernel_w=plan.kw, stride_h=sh, stride_w=sw, pad_top=top,
                pad_bottom=bottom, pad_left=left, pad_right=right, dilation_h=dh,
                dilation_w=dw, relu=bool(relu), isa=plan.fwd_isa, nv=plan.fwd_nv,
                block=plan.fwd_block)
    op.update(fields)
    return op


def direct_op(plan, wpack, bias, relu, weights_outer, rows=False):
    """The op of ``conv2d_forward`` (``rows``: of a dense layer, the batch one image's
    row)."""
    blocks = wpack.shape[0] if wpack.shape[3] == plan.fwd_block else (
        wpack.shape[3] // plan.fwd_block)
    return conv_op(plan, "conv", (wpack, bias), relu, n_kblocks=blocks,
                   w_last=wpack.shape[3], weights_outer=bool(weights_outer), rows=rows)


def slices_op(plan, w, bias, relu, width, n_slices, row):
    """The op of ConvPlan._forward_in_slices (a 1x1 convolution with big weights w,
    in place) over slices of ``width`` input channels, each pixel's slice copied into a row
    of ``row`` values."""
    return conv_op(plan, "conv_slices", (w, bias), relu, w_last=plan.k, weights_outer=True,
                   n_kblocks=plan.k // plan.fwd_block, slice_width=width, n_slices=n_slices,
                   slice_row=row)


def unpacked_op(plan, prepared, w, b, relu, rows=False):
    """The op of ``plan.compile_forward`` (a ConvPlan's) for weights that its ``prepare``
    did not pack: Winograd's, a single input channel's row patterns, or read in place (in
    slices or whole); None for bf16 operands. ``rows``: as :func:`direct_op`'s."""
    if "winograd" in prepared:
        return winograd_op(plan, prepared["winograd"], relu)
    if "row_patterns" in prepared:     # expanded rows, then the row-vectorised kernel
        return conv_op(plan, "c1", prepared["row_patterns"], relu, isa=plan.isa,
                       expanded_row=plan.expanded_row_len, pattern_len=plan.row_vector_values)
    if prepared:                        # bf16 operands
        return None
    w = np.ascontiguousarray(w, dtype=plan.dtype).reshape(1, plan.kh * plan.kw, plan.c, plan.k)
    if plan.in_slices(w):
        return slices_op(plan, w, plan._bias(b, None), relu, *plan.slices())
    return direct_op(plan, w, plan._bias(b, None), relu, True, rows)


def winograd_op(plan, prepared, relu, pool=None):
    """The op of ``winograd_forward`` with :func:`fastcnn.ops._winograd.prepare`'s
    ``prepared``, pooled (``pool`` "max" or "avg") or not."""
    upack, bias, group, tile = prepared
    alpha = int(round(upack.shape[0] ** 0.5))
    op = conv_op(plan, "winograd", (upack, bias), relu, pooled=pool is not None,
                 n_kblocks=upack.shape[1], group=group, tile=tile, alpha=alpha,
                 pool={None: 0, "max": 1, "avg": 2}[pool])
    if pool is not None:    # the rows and columns under the pooled ones
        op.update(Ho=2 * op["Hp"], Wo=2 * op["Wp"])
    return op


def pool_op(plan, input_shape):
    """The op of ``plan.predict`` (a max or average PoolPlan's) on (H, W, C) images."""
    h, w, c = input_shape
    ho, wo, _ = plan.output_shape
    return dict(kind="pool", in_len=h * w * c, out_len=ho * wo * c, work=16 * plan.work, H=h,
                W=w, C=c, Ho=ho, Wo=wo, kernel_h=plan.pool[0], kernel_w=plan.pool[1],
                stride_h=plan.stride[0], stride_w=plan.stride[1], average=plan.mode == "avg",
                isa=_conv.cpu_isa())


def global_avg_op(input_shape):
    """The op of the global average pooling of (H, W, C) images."""
    h, w, c = input_shape
    return dict(kind="global_avg", in_len=h * w * c, out_len=c, work=16 * h * w * c, H=h,
                W=w, C=c, isa=_conv.cpu_isa())
