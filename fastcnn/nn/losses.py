"""The training losses: the data losses (:mod:`fastcnn.ops.loss`) and the L2 penalty;
and the softmax that turns a classifier's outputs into probabilities.

Each data loss returns ``(mean_loss, gradient w.r.t. the network output)``.
"""
import numpy as np

from ..ops.activation import softmax_inplace
from ..ops.loss import softmax_cross_entropy, squared_error

__all__ = ["add_l2_gradient", "l2_penalty", "softmax_cross_entropy", "softmax_inplace",
           "squared_error"]


def l2_penalty(weights, alpha, total_weight):
    """``alpha / 2 * sum ||W||^2 / total_weight`` (MLPClassifier's scaling of ``alpha``).

    ``total_weight`` is the batch's number of samples, or the sum of its sample weights.
    """
    if alpha == 0.0:
        return 0.0
    total = sum(float(np.dot(w.ravel(), w.ravel())) for w in weights)
    return 0.5 * alpha * total / total_weight


def add_l2_gradient(weights, weight_grads, alpha, total_weight):
    """Add the gradient of :func:`l2_penalty` to the weight gradients, in place."""
    if alpha == 0.0:
        return
    for w, g in zip(weights, weight_grads):
        g += w.dtype.type(alpha / total_weight) * w
