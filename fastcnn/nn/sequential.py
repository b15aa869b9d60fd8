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

    @property
    def name(self):
        return "Sequential"

    def describe(self):
        return None

    def flops(self):
        return sum(child.flops() for child in self.children)

    def forward(self, x, run, ws=None, n_children=None):
        """The output of the first ``n_children`` children (all by default).

        ``ws=None`` asks for a fresh output array: the last child then gets no workspace.
        """
        children = self.children if n_children is None else self.children[:n_children]
        for child in children[:-1]:
            x = run.forward(child, x)
        last = children[-1]
        if ws is None:
            y = last.forward(x, run, None)
            if run.taps is not None and last in run.taps:
                run.taps[last] = y.copy()
            return y
        return run.forward(last, x)

    def backward(self, dy, run, ws=None):
        for child in reversed(self.children):
            dy = child.backward(dy, run, run.workspace(child))
        return dy
