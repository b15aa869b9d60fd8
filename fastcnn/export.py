"""ONNX export of fitted estimators through skl2onnx.

Importing this module registers converters for :class:`~fastcnn.CNNClassifier` and
:class:`~fastcnn.CNNRegressor` with skl2onnx, so that ``skl2onnx.to_onnx`` converts a
fitted estimator, or a Pipeline ending in one. The graph takes the estimator's input as
given (flat rows or images), reshapes it to NHWC images and then to NCHW for ONNX's
convolutions; it computes in float32 whatever the network's dtype. The classifier has
skl2onnx's usual ``label`` and ``probabilities`` outputs and honours the ``zipmap`` option.

Needs the optional dependencies ``onnx`` and ``skl2onnx`` (``pip install fastcnn[onnx]``;
``onnxruntime`` runs the result).

Examples
--------
>>> import fastcnn.export                      # doctest: +SKIP
>>> onx = fastcnn.export.to_onnx(clf, X[:1], options={"zipmap": False})  # doctest: +SKIP
"""
import numpy as np
from sklearn.utils.validation import check_is_fitted

try:
    from onnx import TensorProto
    from skl2onnx import to_onnx as _skl2onnx_to_onnx
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastcnn.export needs onnx and skl2onnx: pip install 'fastcnn[onnx]' (onnxruntime "
        "runs the exported models)"
    ) from exc

from .estimators.classifier import CNNClassifier
from .estimators.regressor import CNNRegressor
from .nn.activation import ActivationLayer
from .nn.batchnorm import BatchNormLayer
from .nn.conv import Conv2DLayer
from .nn.dense import DenseLayer
from .nn.depthwise import DepthwiseConv2DLayer
from .nn.dropout import DropoutLayer
from .nn.pool import (
    AvgPool2DLayer,
    GlobalAvgPool2DLayer,
    GlobalMaxPool2DLayer,
    L2Pool2DLayer,
    MaxPool2DLayer,
    SpatialPyramidPool2DLayer,
)
from .nn.residual import ResidualBlock
from .nn.sequential import Sequential, _fold

__all__ = ["to_onnx"]

_ONNX_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def to_onnx(model, X_sample, **kwargs):
    """The ONNX model of a fitted estimator or Pipeline (``skl2onnx.to_onnx`` with this
    module's converters registered).

    Parameters
    ----------
    model : CNNClassifier, CNNRegressor or Pipeline ending in one, fitted
    X_sample : array-like
        A few rows of input as the model takes it (flat rows or images): it gives the
        input's type and shape. float32 input gives a float32 graph input.
    **kwargs
        Passed to ``skl2onnx.to_onnx`` (``options``, ``target_opset``, ...).

    Returns
    -------
    onnx.ModelProto
    """
    check_is_fitted(model)
    return _skl2onnx_to_onnx(model, X_sample, **kwargs)


class _Graph:
    """Adds nodes and initializers to a skl2onnx container under unique names."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container
        self.opset = container.target_opset

    def name(self, hint):
        return self.scope.get_unique_variable_name(hint)

    def const(self, value, hint="c"):
        value = np.asarray(value)
        kind = TensorProto.INT64 if value.dtype.kind in "iu" else TensorProto.FLOAT
        value = value.astype(np.int64 if kind == TensorProto.INT64 else np.float32)
        name = self.name(hint)
        self.container.add_initializer(name, kind, list(value.shape), value.ravel().tolist())
        return name

    def node(self, op, inputs, output=None, **attrs):
        output = output or self.name(op.lower())
        self.container.add_node(op, inputs, [output],
                                name=self.scope.get_unique_operator_name(op), **attrs)
        return output

    def reduce(self, op, x, axes):
        if self.opset >= 18:
            return self.node(op, [x, self.const(axes, "axes")], keepdims=0)
        return self.node(op, [x], axes=list(axes), keepdims=0)


class _Tensor:
    """A tensor of the graph: its name and whether it is an NCHW image (else flat)."""

    def __init__(self, name, image):
        self.name, self.image = name, image


def _activate(g, x, activation):
    if activation == "linear":
        return x
    return g.node(_ONNX_ACTIVATIONS[activation], [x])


def _flat(g, t):
    """(N, features) in the NHWC order the runtime flattens images in."""
    if not t.image:
        return t.name
    nhwc = g.node("Transpose", [t.name], perm=[0, 2, 3, 1])
    return g.node("Flatten", [nhwc], axis=1)


def _conv(g, t, layer, weight, bias, activation):
    if isinstance(layer, DepthwiseConv2DLayer):
        r, s, c, m = weight.shape
        w = weight.transpose(2, 3, 0, 1).reshape(c * m, 1, r, s)
        group = c
    else:
        w = weight.transpose(3, 2, 0, 1)
        group = layer.spec.groups
    top, bottom, left, right = (int(p) for p in layer.padding)
    y = g.node("Conv", [t.name, g.const(w, "W"), g.const(bias, "B")],
               kernel_shape=list(w.shape[2:]), strides=[int(s) for s in layer.stride],
               dilations=[int(d) for d in layer.dilation],
               pads=[top, left, bottom, right], group=int(group))
    return _Tensor(_activate(g, y, activation), True)


def _dense(g, t, weight, bias, activation):
    y = g.node("Gemm", [_flat(g, t), g.const(weight, "W"), g.const(bias, "B")])
    return _Tensor(_activate(g, y, activation), False)


def _weighted(g, t, layer, fold):
    """A Conv2D, DepthwiseConv2D or Dense layer, with a folded affine map if any."""
    weight = np.asarray(layer.weight, np.float64)
    bias = np.asarray(layer.bias, np.float64)
    activation = layer.activation
    if fold is not None:
        _, scale, shift, activation = fold
        scale = np.asarray(scale, np.float64)
        shift = np.asarray(shift, np.float64)
        weight = weight * (np.reshape(scale, weight.shape[2:])
                           if isinstance(layer, DepthwiseConv2DLayer) else scale)
        bias = bias * scale + shift
    if isinstance(layer, DenseLayer):
        return _dense(g, t, weight, bias, activation)
    return _conv(g, t, layer, weight, bias, activation)


def _pool(g, t, layer):
    kernel = [int(k) for k in layer.pool_size]
    strides = [int(s) for s in layer.stride]
    if isinstance(layer, L2Pool2DLayer):
        return g.node("LpPool", [t.name], kernel_shape=kernel, strides=strides, p=2)
    op = "AveragePool" if isinstance(layer, AvgPool2DLayer) else "MaxPool"
    return g.node(op, [t.name], kernel_shape=kernel, strides=strides)


def _pyramid(g, t, layer):
    """Each bin (PyTorch's adaptive bins, so possibly overlapping) as a Slice and a
    reduction, all bins concatenated bin by bin, channels within each bin."""
    op = "ReduceMax" if layer.spec.mode == "max" else "ReduceMean"
    axes = g.const([2, 3], "axes")
    outputs = []
    for top, bottom, left, right in layer._plan.bins:
        part = g.node("Slice", [t.name, g.const([top, left], "starts"),
                                g.const([bottom, right], "ends"), axes])
        outputs.append(g.reduce(op, part, [2, 3]))
    if len(outputs) == 1:
        return outputs[0]
    return g.node("Concat", outputs, axis=1)


def _layer(g, t, layer):
    """One runtime layer (not a block) at prediction."""
    if isinstance(layer, (Conv2DLayer, DepthwiseConv2DLayer, DenseLayer)):
        return _weighted(g, t, layer, None)
    if isinstance(layer, ActivationLayer):
        if layer.absorbed:          # the BatchNorm before it applies it
            return t
        return _Tensor(_activate(g, t.name, layer.kind), t.image)
    if isinstance(layer, DropoutLayer):
        return t
    if isinstance(layer, BatchNormLayer):
        arrays = [np.asarray(a, np.float64) for a in
                  (layer.gamma, layer.beta, layer.running_mean, layer.running_var)]
        y = g.node("BatchNormalization", [t.name] + [g.const(a, "bn") for a in arrays],
                   epsilon=float(layer.epsilon))
        return _Tensor(_activate(g, y, "relu") if layer.fused_relu else y, t.image)
    if isinstance(layer, (MaxPool2DLayer, L2Pool2DLayer)):   # AvgPool2D included
        return _Tensor(_pool(g, t, layer), True)
    if isinstance(layer, GlobalAvgPool2DLayer):              # GlobalMaxPool2D included
        op = "GlobalMaxPool" if isinstance(layer, GlobalMaxPool2DLayer) else "GlobalAveragePool"
        return _Tensor(g.node("Flatten", [g.node(op, [t.name])], axis=1), False)
    if isinstance(layer, SpatialPyramidPool2DLayer):
        return _Tensor(_pyramid(g, t, layer), False)
    raise NotImplementedError(f"fastcnn.export: no ONNX export for {type(layer).__name__}")


def _block(g, t, block):
    """A block or a layer, at prediction (BatchNorms folded as the network folds them)."""
    if isinstance(block, Sequential):
        children = block.children
        i = 0
        while i < len(children):
            fold = _fold(children, i)
            if fold is None:
                t = _block(g, t, children[i])
                i += 1
            else:
                t = _weighted(g, t, children[i], fold)
                i += fold[0]
        return t
    if isinstance(block, ResidualBlock):
        body = _block(g, t, block.body)
        shortcut = t if block.projection is None else _block(g, t, block.projection)
        y = g.node("Add", [body.name, shortcut.name])
        return _Tensor(_activate(g, y, block.activation), body.image)
    return _layer(g, t, block)


def _network_output(scope, operator, container):
    """The network's output (N, n_outputs), float32, from the operator's input."""
    g = _Graph(scope, container)
    model = operator.raw_operator
    x = operator.inputs[0].full_name
    if operator.inputs[0].type.to_onnx_type().tensor_type.elem_type != TensorProto.FLOAT:
        x = g.node("Cast", [x], to=TensorProto.FLOAT)
    h, w, c = (int(s) for s in model.image_shape_)
    nhwc = g.node("Reshape", [x, g.const([-1, h, w, c], "shape")])
    t = _Tensor(g.node("Transpose", [nhwc], perm=[0, 3, 1, 2]), True)
    t = _block(g, t, model.network_.root)
    return g, _flat(g, t)


def _nocl(operator):
    """skl2onnx's ``nocl`` option: labels as class indices."""
    options = operator.scope_inst.get_options(operator.raw_operator, {"nocl": False})
    return bool(options["nocl"])


def _fitted(operator):
    """The operator's estimator, after checking it is fitted and its input has one image's
    values per row."""
    model = operator.raw_operator
    check_is_fitted(model, "network_")
    shape = operator.inputs[0].type.shape
    expected = [int(s) for s in model.image_shape_]
    given = list(shape[1:])
    if all(isinstance(s, int) for s in given) and int(np.prod(given)) != int(np.prod(expected)):
        raise ValueError(
            f"fastcnn.export: the sample input has rows of shape {tuple(given)} but "
            f"{type(model).__name__} was fitted on {'x'.join(map(str, expected))} images: "
            "pass rows of the data the model was fitted on")
    return model


def _classifier_shapes(operator):
    n = operator.inputs[0].get_first_dimension()
    classes = _fitted(operator).classes_
    if classes.dtype.kind not in "OUSiub":
        raise NotImplementedError(
            "fastcnn.export: class labels must be ints or strings to export, got dtype "
            f"{classes.dtype}; fit with integer or string labels")
    strings = classes.dtype.kind in "OUS" and not _nocl(operator)
    label = (StringTensorType if strings else Int64TensorType)([n])
    operator.outputs[0].type = label
    operator.outputs[1].type = FloatTensorType([n, len(classes)])


def _regressor_shapes(operator):
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, _fitted(operator).n_outputs_])


def _convert_classifier(scope, operator, container):
    g, logits = _network_output(scope, operator, container)
    g.node("Softmax", [logits], operator.outputs[1].full_name, axis=1)
    index = g.node("ArgMax", [logits], axis=1, keepdims=0)
    classes = operator.raw_operator.classes_
    if _nocl(operator):
        g.node("Identity", [index], operator.outputs[0].full_name)
        return
    if classes.dtype.kind in "OUS":
        name = g.name("classes")
        container.add_initializer(name, TensorProto.STRING, [len(classes)],
                                  [str(s).encode("utf-8") for s in classes])
    else:
        name = g.const(classes.astype(np.int64), "classes")
    g.node("Gather", [name, index], operator.outputs[0].full_name, axis=0)


def _convert_regressor(scope, operator, container):
    g, out = _network_output(scope, operator, container)
    model = operator.raw_operator
    scaled = g.node("Mul", [out, g.const(np.ravel(model.target_scale_), "scale")])
    g.node("Add", [scaled, g.const(np.ravel(model.target_mean_), "mean")],
           operator.outputs[0].full_name)


update_registered_converter(
    CNNClassifier, "FastcnnCNNClassifier", _classifier_shapes, _convert_classifier,
    options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
)
update_registered_converter(
    CNNRegressor, "FastcnnCNNRegressor", _regressor_shapes, _convert_regressor,
)
