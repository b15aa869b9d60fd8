"""The sequential block: child layers (or blocks) run one after another."""
from . import _spec
from .layer import Layer


class Sequential(Layer):
    """A block running its children in order: each one's output is the next one's input.

    Built from a list of specs for one input shape. Only the first child's input is the
    block's input, so only it inherits ``need_dx``: the others' input gradients feed the
    children before them. Children may be blocks themselves.
    """

    def __init__(self, spec, input_shape, dtype, need_dx, numbering):
        super().__init__(spec, input_shape, dtype, need_dx, None)
        shape = self.input_shape
        for i, child_spec in enumerate(spec):
            child = _spec.build(child_spec, shape, dtype, need_dx if i == 0 else True,
                                numbering)
            self.children.append(child)
            shape = child.output_shape
        self.output_shape = shape
        # a relu layer after a layer that can apply it in its own passes (BatchNorm)
        for before, after in zip(self.children, self.children[1:]):
            if before.can_fuse_relu and after.pointwise_activation == "relu":
                before.fused_relu = True
                after.absorbed = True
            # a relu's backward pass done by the max pooling after it (one pass fewer)
            if before.defers_relu and after.takes_relu:
                before.relu_deferred = True
                after.relu_taken = True

    @property
    def name(self):
        return "Sequential"

    def describe(self):
        return None

    def flops(self):
        return sum(child.flops() for child in self.children)

    @property
    def changes_dy(self):
        # dy goes to the last child, and on through children that return it as it is
        for child in reversed(self.children):
            if child.changes_dy:
                return True
            if not child.returns_dy:
                return False
        return False

    @property
    def returns_dy(self):
        return all(child.returns_dy for child in self.children)

    def forward(self, x, run, ws=None, n_children=None):
        """The output of the first ``n_children`` children (all by default).

        ``ws=None`` asks for a fresh output array: the last child then gets no workspace.
        At prediction a layer followed by a per-channel affine map (BatchNorm) and, if
        there is one, an activation layer runs the three as one (:func:`_fold`).
        """
        children = self.children if n_children is None else self.children[:n_children]
        i = 0
        while i < len(children):
            child = children[i]
            fold = None if run.training or run.taps is not None else _fold(children, i)
            step = 1 if fold is None else fold[0]
            last = i + step == len(children)
            child_ws = None if last and ws is None else run.workspace(child)
            if fold is None:
                x = child.forward(x, run, child_ws)
                if run.taps is not None and child in run.taps:
                    run.taps[child] = x.copy()
            else:
                x = child.forward_folded(x, run, child_ws, *fold[1:])
            i += step
        return x

    def prediction_steps(self, n_children=None, winograd=False, first=0):
        """The prediction steps of the children from ``first`` to before ``n_children``
        (all by default), folded as :meth:`forward` folds them, and with a 2x2 pooling
        run inside the step of the layer before it where that layer can."""
        children = self.children[first:n_children]
        steps, i = [], 0
        while i < len(children):
            fold = _fold(children, i)
            used, folded = (1, ()) if fold is None else (fold[0], fold[1:])
            step = None
            pool = children[i + used].pool_2x2 if i + used < len(children) else None
            if pool is not None:
                step = children[i].pooled_prediction_step(pool, winograd, *folded)
            if step is None:
                step = children[i].prediction_step(winograd, *folded)
            else:
                used += 1
            if step is not None:    # (None: the identity at prediction)
                steps.append(step)
            i += used
        return steps

    def prediction_step(self, winograd=False):
        steps = self.prediction_steps(winograd=winograd)

        def step(x, ws, n_threads):
            for i, child_step in enumerate(steps):
                x = child_step(x, ws.child(i), n_threads)
            return x
        return step

    def backward(self, dy, run, ws=None):
        for child in reversed(self.children):
            dy = child.backward(dy, run, run.workspace(child))
        return dy


def _fold(children, i):
    """(children used, scale, shift, activation) when ``children[i]`` can take the affine
    map of ``children[i + 1]`` (and the activation of ``children[i + 2]``) into its own
    weights at prediction, else None."""
    if not children[i].folds_affine or i + 1 >= len(children):
        return None
    affine = children[i + 1].prediction_affine()
    if affine is None:
        return None
    scale, shift = affine
    if children[i + 1].fused_relu:      # with the relu layer it absorbed, if any
        absorbed = i + 2 < len(children) and children[i + 2].absorbed
        return 3 if absorbed else 2, scale, shift, "relu"
    if i + 2 < len(children) and children[i + 2].pointwise_activation is not None:
        return 3, scale, shift, children[i + 2].pointwise_activation
    return 2, scale, shift, "linear"
