"""Activations, softmax and softmax cross-entropy: validated wrappers over
``fastcnn._ext._activations``.

Re-exported by :mod:`fastcnn.functional`. The elementwise functions take arrays of any
shape; results have the input's float dtype (integer input becomes float32) and are
bitwise the same for any ``n_threads``.
"""
import numpy as np

from .._ext import _activations
from ._validation import as_float_array, check_same_dtype, result_dtype, row_shares
from .threads import resolve_threads
from .workspace import empty

__all__ = [
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_cross_entropy",
]


def _as_float_any_shape(value, name, dtype=None):
    shape = np.shape(value)
    # np.ascontiguousarray turns a 0-d array into a 1-d one: restore the shape.
    return as_float_array(value, name, len(shape), dtype).reshape(shape)


def _elementwise(kernel, x, n_threads):
    x = _as_float_any_shape(x, "x")
    n_threads = resolve_threads(n_threads, x.size)
    y = np.empty_like(x)
    kernel(x.reshape(-1), y.reshape(-1), n_threads)
    return y


def _elementwise_backward(kernel, dy, y, n_threads):
    check_same_dtype(dy=dy, y=y)
    dtype = result_dtype(dy, y)
    dy = _as_float_any_shape(dy, "dy", dtype)
    y = _as_float_any_shape(y, "y", dtype)
    if dy.shape != y.shape:
        raise ValueError(
            f"dy and y (the forward output) must have the same shape, got dy {dy.shape} "
            f"and y {y.shape}"
        )
    n_threads = resolve_threads(n_threads, dy.size)
    dx = np.empty_like(dy)
    kernel(dy.reshape(-1), y.reshape(-1), dx.reshape(-1), n_threads)
    return dx


def relu(x, n_threads=None):
    """Rectified linear unit, ``max(x, 0)``, elementwise; NaN stays NaN.

    Parameters
    ----------
    x : array-like of any shape
    n_threads : int or None
        None uses all usable cores; the result does not depend on it.

    Returns
    -------
    y : ndarray of x's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import relu
    >>> relu(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    return _elementwise(_activations.relu_forward, x, n_threads)


def relu_backward(dy, y, n_threads=None):
    """Gradient of :func:`relu`: ``dy`` where the forward output ``y > 0``, else 0.

    Parameters
    ----------
    dy : array-like
        Gradient of the loss with respect to the output.
    y : array-like of dy's shape
        The output of the forward pass, ``relu(x)``.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of dy's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import relu_backward
    >>> relu_backward(np.array([5.0, 5.0]), np.array([0.0, 3.0]))
    array([0., 5.])
    """
    return _elementwise_backward(_activations.relu_backward, dy, y, n_threads)


def sigmoid(x, n_threads=None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, elementwise, without overflow for large |x|.

    Parameters
    ----------
    x : array-like of any shape
    n_threads : int or None

    Returns
    -------
    y : ndarray of x's shape and float dtype, in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    return _elementwise(_activations.sigmoid_forward, x, n_threads)


def sigmoid_backward(dy, y, n_threads=None):
    """Gradient of :func:`sigmoid` from its output: ``dy * y * (1 - y)``.

    Parameters
    ----------
    dy : array-like
        Gradient of the loss with respect to the output.
    y : array-like of dy's shape
        The output of the forward pass, ``sigmoid(x)``.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of dy's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import sigmoid_backward
    >>> sigmoid_backward(np.array([1.0]), np.array([0.5]))
    array([0.25])
    """
    return _elementwise_backward(_activations.sigmoid_backward, dy, y, n_threads)


def tanh(x, n_threads=None):
    """Hyperbolic tangent, elementwise.

    Parameters
    ----------
    x : array-like of any shape
    n_threads : int or None

    Returns
    -------
    y : ndarray of x's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import tanh
    >>> tanh(np.array([0.0, 100.0]))
    array([0., 1.])
    """
    return _elementwise(_activations.tanh_forward, x, n_threads)


def tanh_backward(dy, y, n_threads=None):
    """Gradient of :func:`tanh` from its output: ``dy * (1 - y * y)``.

    Parameters
    ----------
    dy : array-like
        Gradient of the loss with respect to the output.
    y : array-like of dy's shape
        The output of the forward pass, ``tanh(x)``.
    n_threads : int or None

    Returns
    -------
    dx : ndarray of dy's shape and float dtype

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import tanh_backward
    >>> tanh_backward(np.array([2.0]), np.array([0.5]))
    array([1.5])
    """
    return _elementwise_backward(_activations.tanh_backward, dy, y, n_threads)


def _as_logits(logits):
    logits = as_float_array(logits, "logits", 2)
    if logits.shape[1] < 1:
        raise ValueError(
            f"logits must have at least one column (one per class), got shape {logits.shape}"
        )
    return logits


def softmax(logits, n_threads=None):
    """Softmax over the rows of a 2-D array, shifted by each row's maximum (no overflow).

    Parameters
    ----------
    logits : array-like of shape (n, k)
    n_threads : int or None

    Returns
    -------
    p : ndarray of shape (n, k), dtype of logits; each row sums to 1

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import softmax
    >>> softmax(np.array([[0.0, 0.0], [1000.0, 1000.0]]))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    logits = _as_logits(logits)
    n_threads = resolve_threads(n_threads, logits.size * 4)
    out = np.empty_like(logits)
    _activations.softmax_forward(logits, out, n_threads)
    return out


def softmax_cross_entropy(logits, labels, sample_weight=None, n_threads=None):
    """Mean cross-entropy of ``softmax(logits)`` against integer labels, and its gradient.

    Computed from the log-sum-exp of each row, in double precision, so large logits do not
    overflow. The row losses are summed in row order: the result does not depend on
    ``n_threads``.

    Parameters
    ----------
    logits : array-like of shape (n, k)
    labels : array-like of ints, shape (n,)
        Class index of each row, in ``[0, k)``.
    sample_weight : array-like of shape (n,), default=None
        Non-negative weight of each row, not all zero: the mean becomes the weighted mean
        ``sum(w_i * loss_i) / sum(w)`` (MLPClassifier's normalisation). None weighs every
        row equally.
    n_threads : int or None

    Returns
    -------
    loss : float
        ``mean(-log(softmax(logits)[i, labels[i]]))`` (weighted by ``sample_weight``); 0.0
        for an empty batch.
    dlogits : ndarray of shape (n, k), dtype of logits
        Gradient of ``loss``: ``(softmax(logits) - onehot(labels)) / n``, or with weights
        ``w_i * (softmax(logits)[i] - onehot(labels[i])) / sum(w)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.functional import softmax_cross_entropy
    >>> loss, dlogits = softmax_cross_entropy(np.zeros((2, 2)), [0, 1])
    >>> round(loss, 6)
    0.693147
    >>> dlogits
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    >>> softmax_cross_entropy(np.zeros((2, 2)), [0, 1], sample_weight=[3, 1])[1]
    array([[-0.375,  0.375],
           [ 0.125, -0.125]])
    """
    logits = _as_logits(logits)
    n, k = logits.shape
    labels_arr = np.asarray(labels)
    if labels_arr.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels_arr.dtype}")
    if labels_arr.shape != (n,):
        raise ValueError(
            f"labels must be 1-D with one entry per row of logits, shape ({n},), "
            f"got shape {labels_arr.shape}"
        )
    if n:
        lo, hi = labels_arr.min(), labels_arr.max()
        if lo < 0 or hi >= k:
            raise ValueError(
                f"labels must be in [0, {k}) for logits with {k} columns, "
                f"got values in [{lo}, {hi}]"
            )
    row_weight = None if sample_weight is None else row_shares(sample_weight, n)
    labels_arr = np.ascontiguousarray(labels_arr, dtype=np.int64)
    n_threads = resolve_threads(n_threads, logits.size * 4)
    dlogits = np.empty_like(logits)
    row_loss = np.empty(n, dtype=np.float64)
    loss = _activations.softmax_cross_entropy_forward_backward(
        logits, labels_arr, dlogits, row_loss, row_weight, n_threads
    )
    return float(loss), dlogits



# The in-place forms a network's layers run on their own fresh arrays, which the network
# checked when it was built: per-call validation would cost more than the kernels at small
# sizes.
KINDS = ("relu", "sigmoid", "tanh")


def activate_inplace(z, kind, n_threads):
    """z = kind(z) for a C-contiguous float array z; other kinds leave z as it is."""
    if kind in KINDS:
        flat = z.reshape(-1)
        getattr(_activations, f"{kind}_forward")(flat, flat, resolve_threads(n_threads,
                                                                             flat.size))
    return z


def softmax_inplace(z, n_threads):
    """z = softmax(z) along its rows, for a C-contiguous 2-D float array."""
    _activations.softmax_forward(z, z, resolve_threads(n_threads, z.size))
    return z


def activation_backward_inplace(dy, y, kind, n_threads):
    """dy = dy * kind'(from the output y), for C-contiguous dy and y of one dtype."""
    if kind in KINDS:
        flat = dy.reshape(-1)
        getattr(_activations, f"{kind}_backward")(flat, y.reshape(-1), flat,
                                                   resolve_threads(n_threads, flat.size))
    return dy


def add_activate_into(a, b, kind, n_threads, out):
    """out = kind(a + b) for C-contiguous float arrays of one shape and dtype, relu in the
    same pass as the sum (out may be a or b)."""
    threads = resolve_threads(n_threads, out.size)
    _activations.add_forward(a.reshape(-1), b.reshape(-1), out.reshape(-1), kind == "relu",
                             threads)
    if kind != "relu":
        activate_inplace(out, kind, n_threads)
    return out


def activate_into(x, kind, n_threads, ws=None):
    """kind(x) for a C-contiguous float array x, into a workspace array (x is left as it
    is); the identity kinds return x itself."""
    if kind not in KINDS:
        return x
    y = empty(ws, "y", x.shape, x.dtype)
    getattr(_activations, f"{kind}_forward")(x.reshape(-1), y.reshape(-1),
                                             resolve_threads(n_threads, x.size))
    return y
