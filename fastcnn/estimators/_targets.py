"""Sample weights, class weights and the regressor's target scaling.

What the estimators do to ``y`` and ``sample_weight`` before training: weights are
validated (with scikit-learn's own checks), class weights become per-sample weights and
multiply them, and regression targets are standardised per output.
"""
from numbers import Real

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import _check_sample_weight


def is_dask_collection(value):
    return hasattr(value, "__dask_graph__")


def check_sample_weight(sample_weight, X):
    """``sample_weight`` as a float64 array of one finite, non-negative weight per sample
    (None stays None).

    Wrong lengths, negative or non-finite values and all-zero weights are a ValueError.
    """
    if sample_weight is None:
        return None
    if is_dask_collection(sample_weight):
        raise ValueError(
            "sample_weight is a dask collection. dask-ml's Incremental passes fit "
            "arguments to every block's partial_fit whole, not split by block, so per-sample "
            "weights cannot follow the blocks: use class_weight, or call partial_fit on "
            "each block with that block's weights as a NumPy array"
        )
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


def check_class_weight(class_weight, classes):
    """Problems with a class_weight dict: labels not among ``classes``, bad weights."""
    known = set(classes.tolist())
    unknown = [label for label in class_weight if label not in known]
    if unknown:
        raise ValueError(
            f"class_weight has labels {unknown} that are not classes of y (classes: "
            f"{classes.tolist()}); give weights only for labels that occur"
        )
    for label, weight in class_weight.items():
        if isinstance(weight, bool) or not isinstance(weight, Real) or not (
                np.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"class_weight[{label!r}] is {weight!r}; class weights must be finite "
                "numbers >= 0"
            )


def class_sample_weight(class_weight, y, classes):
    """Per-sample weights from ``class_weight`` for labels ``y`` (indices into classes).

    ``"balanced"`` weighs the classes of this ``y`` by ``n_samples / (n_classes *
    count)`` (scikit-learn's ``compute_sample_weight``); a dict maps labels to weights,
    classes it does not name weigh 1.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        return compute_sample_weight(class_weight, y)
    check_class_weight(class_weight, classes)
    per_class = np.array([float(class_weight.get(label, 1.0)) for label in classes.tolist()])
    return per_class[y]


def combine(sample_weight, other):
    """The product of two optional weight arrays (None: all ones)."""
    if sample_weight is None:
        return other
    if other is None:
        return sample_weight
    return sample_weight * other


def target_scale(y, sample_weight=None):
    """Per-output (mean, scale) of 2-D targets, weighted; constant outputs get scale 1."""
    mean = np.average(y, axis=0, weights=sample_weight)
    var = np.average((y - mean) ** 2, axis=0, weights=sample_weight)
    scale = np.sqrt(var)
    # an output (near-)constant to its own precision is left unscaled
    tiny = scale <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
    scale[tiny] = 1.0
    return mean, scale
