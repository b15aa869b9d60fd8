"""A grouped convolution, run as one :class:`~fastcnn.ops._conv_plan.ConvPlan` per group.

With ``groups`` g, the C input and K output channels split into g consecutive equal
blocks and block j of the output sees only block j of the input: weights (R, S, C / g, K),
output channels ``[j * K / g, (j + 1) * K / g)`` from input channels
``[j * C / g, (j + 1) * C / g)`` (PyTorch's and TensorFlow's ``groups``). Every group has
the same geometry, so one plan serves them all: each group's channels are gathered into
contiguous arrays, run through the plan and written to their slice of the result. One
channel per group works too (a depthwise convolution); the depthwise kernels of
:mod:`fastcnn.ops.depthwise` are the fast way to run that.
"""
import numpy as np

from ._conv_plan import ConvPlan
from .workspace import child, empty


class GroupedConvPlan:
    """One grouped convolution geometry: image (H, W, C), weights (R, S, C / groups, K),
    groups, stride, padding (top, bottom, left, right), dilation, dtype and SIMD path."""

    def __init__(self, image_shape, weight_shape, groups, stride, pads, dilation, dtype,
                 isa=None):
        h, w, c = image_shape
        kh, kw, cg, k = weight_shape
        self.groups = groups
        self.c, self.k = c, k
        self.cg, self.kg = cg, k // groups
        self.dtype = np.dtype(dtype)
        self.plan = ConvPlan((h, w, cg), (kh, kw, cg, self.kg), stride, pads, dilation, dtype,
                             isa)
        self.ho, self.wo = self.plan.ho, self.plan.wo

    def expand(self, x, n_threads, ws=None):
        """None: each group's plan makes its own expanded rows where it needs them."""
        return None

    def _inputs(self, j):
        return slice(j * self.cg, (j + 1) * self.cg)

    def _outputs(self, j):
        return slice(j * self.kg, (j + 1) * self.kg)

    @staticmethod
    def _gather(ws, name, source, channels):
        """source[..., channels] as a contiguous array of ws."""
        part = empty(ws, name, source.shape[:-1] + (channels.stop - channels.start,),
                     source.dtype)
        part[...] = source[..., channels]
        return part

    def prepare(self, w, b, winograd=False):
        """Each group's weights and bias cut out, and what its plan makes of them, once
        (keyword arguments for :meth:`forward`; see :meth:`ConvPlan.prepare
        <fastcnn.ops._conv_plan.ConvPlan.prepare>`)."""
        groups = []
        for j in range(self.groups):
            wj = np.ascontiguousarray(w[..., self._outputs(j)])
            bj = None if b is None else np.ascontiguousarray(b[self._outputs(j)])
            groups.append((wj, bj, self.plan.prepare(wj, bj, winograd)))
        return {"prepared_groups": groups}

    def compile_forward(self, w, b, relu, winograd=False):
        """``run(x, ws, n_threads) -> out`` with the groups' weights prepared once (see
        :meth:`ConvPlan.compile_forward <fastcnn.ops._conv_plan.ConvPlan.compile_forward>`)."""
        prepared = self.prepare(w, b, winograd)

        def run(x, ws, n_threads):
            return self.forward(x, w, b, relu, n_threads, ws, **prepared)
        return run

    def forward(self, x, w, b, relu, n_threads, ws=None, out=None, expanded=None,
                prepared_groups=None):
        """conv(x, w) + b (then relu), group by group, as (N, Ho, Wo, K); arguments as in
        :meth:`ConvPlan.forward <fastcnn.ops._conv_plan.ConvPlan.forward>` (``expanded``
        is not used); ``prepared_groups`` comes from :meth:`prepare`."""
        n = x.shape[0]
        if out is None:
            out = empty(ws, "out", (n, self.ho, self.wo, self.k), self.dtype)
        if out.size == 0:
            return out
        for j in range(self.groups):
            gws = child(ws, j)
            xj = self._gather(gws, "x", x, self._inputs(j))
            if prepared_groups is None:
                wj = self._gather(gws, "w", w, self._outputs(j))
                bj = None if b is None else np.ascontiguousarray(b[self._outputs(j)])
                kwargs = {}
            else:
                wj, bj, kwargs = prepared_groups[j]
            out[..., self._outputs(j)] = self.plan.forward(xj, wj, bj, relu, n_threads, gws,
                                                           **kwargs)
        return out

    def backward(self, x, w, dy, need_dx, n_threads, ws=None, relu_y=None, dw_out=None,
                 expanded=None):
        """(dx or None, dw, db), group by group; arguments as in :meth:`ConvPlan.backward
        <fastcnn.ops._conv_plan.ConvPlan.backward>`, except that dy is not changed (each
        group works on a copy of its channels)."""
        n = x.shape[0]
        dx = empty(ws, "dx", x.shape, self.dtype) if need_dx else None
        dw = dw_out if dw_out is not None else np.empty(w.shape, dtype=self.dtype)
        db = np.empty(self.k, dtype=self.dtype)
        for j in range(self.groups):
            gws = child(ws, j)
            inputs, outputs = self._inputs(j), self._outputs(j)
            xj = self._gather(gws, "x", x, inputs)
            wj = self._gather(gws, "w", w, outputs)
            dyj = self._gather(gws, "dy", dy, outputs)
            yj = None if relu_y is None else self._gather(gws, "relu_y", relu_y, outputs)
            dxj, dwj, dbj = self.plan.backward(xj, wj, dyj, need_dx and n > 0, n_threads, gws,
                                               relu_y=yj)
            if need_dx and n > 0:
                dx[..., inputs] = dxj
            dw[..., outputs] = dwj
            db[outputs] = dbj
        return dx, dw, db
