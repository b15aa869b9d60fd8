"""Losses of a network's output: the mean loss and its gradient w.r.t. the output.

The gradient already includes the ``1 / n_samples`` of the mean (or the ``w_i / sum(w)``
of a weighted mean), so it can go straight into the network's backward pass.

Examples
--------
>>> import numpy as np
>>> from fastcnn.ops.loss import squared_error
>>> loss, grad = squared_error(np.array([[1.0], [3.0]]), np.array([[0.0], [3.0]]))
>>> loss, grad.ravel()
(0.25, array([0.5, 0. ]))
"""
import numpy as np

from ._validation import row_shares
from .activation import softmax_cross_entropy

__all__ = ["softmax_cross_entropy", "squared_error"]


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
