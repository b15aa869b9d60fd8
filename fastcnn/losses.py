"""Losses: each returns ``(mean_loss, gradient w.r.t. the network output)``.

The gradient already includes the ``1 / n_samples`` of the mean, so it can be passed to
``Network.backward`` as it is.

Examples
--------
>>> import numpy as np
>>> from fastcnn.losses import squared_error
>>> loss, grad = squared_error(np.array([[1.0], [3.0]]), np.array([[0.0], [3.0]]))
>>> loss, grad.ravel()
(0.25, array([0.5, 0. ]))
"""
import numpy as np

from . import functional as F
from ._checks import row_shares


def softmax_cross_entropy(logits, labels, sample_weight=None, n_threads=None):
    """Mean cross-entropy of softmax(logits) against integer class labels.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
    labels : ndarray of shape (n_samples,), int64 class indices
    sample_weight : ndarray of shape (n_samples,), default=None
        The mean becomes ``sum(w_i * loss_i) / sum(w)``.
    """
    loss, dlogits = F.softmax_cross_entropy(logits, labels, sample_weight=sample_weight,
                                            n_threads=n_threads)
    return float(loss), dlogits


def squared_error(output, target, sample_weight=None, n_threads=None):
    """Half the squared error, summed over outputs, averaged over samples.

    Parameters
    ----------
    output, target : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,), default=None
        The average becomes ``sum(w_i * loss_i) / sum(w)``.
    """
    diff = output - target
    if sample_weight is None:
        n = output.shape[0]
        loss = 0.5 * float(np.einsum("ij,ij->", diff, diff, dtype=np.float64)) / n
        diff /= output.dtype.type(n)
        return loss, diff
    shares = row_shares(sample_weight, output.shape[0])
    row_loss = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    loss = 0.5 * float(np.dot(row_loss, shares))
    diff *= shares.astype(diff.dtype)[:, None]
    return loss, diff


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
