"""The network: layer specs, runtime layers, blocks, optimisers and losses.

One module per layer family (:mod:`.conv`, :mod:`.pool`, :mod:`.dense`, :mod:`.dropout`,
:mod:`.residual`), each holding its spec, its runtime layer (registered for the spec), the
layer's initialisation and FLOPs. :mod:`._spec` is the spec protocol and the registry,
:mod:`.layer` what runtime layers share, :mod:`.sequential` the block that runs layers in
order, :mod:`.network` the whole network. All arithmetic goes through
:mod:`fastcnn.ops`.
"""
from ._spec import Spec, layer_spec_problem, spec_types
from .activation import Activation
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dense import Dense
from .depthwise import DepthwiseConv2D
from .dropout import Dropout
from .network import Network
from .pool import (
    AvgPool2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    SpatialPyramidPool2D,
)
from .residual import Residual

__all__ = [
    "Activation",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "L2Pool2D",
    "MaxPool2D",
    "Network",
    "Residual",
    "SpatialPyramidPool2D",
    "Spec",
    "layer_spec_problem",
    "spec_types",
]
