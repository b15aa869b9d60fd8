"""CNNRegressor: one or several outputs, squared error, standardised targets."""
import numpy as np
from sklearn.base import (
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.metrics import r2_score
from sklearn.utils.validation import column_or_1d

from ..nn.losses import squared_error
from ..nn.network import storage_dtype
from ._base import _BaseCNN
from ._targets import target_scale


class CNNRegressor(RegressorMixin, TransformerMixin, ClassNamePrefixFeaturesOutMixin,
                   _BaseCNN):
    """Convolutional neural network regressor (linear output, squared error).

    Same parameters and input conventions as :class:`CNNClassifier` (but for
    ``class_weight``); ``y`` may have one or several outputs. With early stopping the
    validation score is R^2.

    The network learns standardised targets: each output's mean and standard deviation
    in the first fit's ``y`` (weighted by ``sample_weight``; scale 1 for a constant
    output) are kept as ``target_mean_`` and ``target_scale_``, and :meth:`predict`
    maps back to the targets' units. So results do not depend on the targets' units or
    offset, and outputs of different scales fit alike; no
    :class:`~sklearn.compose.TransformedTargetRegressor` is needed. ``warm_start`` and
    ``partial_fit`` keep the first fit's scaling. ``X`` is used as given.

    Attributes
    ----------
    target_mean_, target_scale_ : ndarray of shape (n_outputs,)
        The standardisation of the targets.
    loss_ : float
        Mean training loss of the last epoch, in standardised units: half the squared
        error of the standardised targets, summed over outputs (plus the L2 term).
    loss_curve_ : list of float
        ``loss_`` of every epoch.

    The other attributes are those of :class:`CNNClassifier` (``n_outputs_`` in place
    of ``classes_``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn import CNNRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(64, 6, 6)
    >>> y = X.mean(axis=(1, 2))
    >>> CNNRegressor(max_iter=2, random_state=0).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    def _encode_targets(self, y, incremental, first_pass, classes):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first_pass and y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2.shape[1]} outputs but {type(self).__name__} was fitted with "
                f"{self.n_outputs_}"
            )
        return np.asarray(y2, dtype=np.float64)

    def _scale_targets(self, y, sample_weight, first_pass):
        # The network learns standardised targets, so that the loss, tol and the
        # optimiser's steps mean the same whatever the targets' units and offset.
        if first_pass:
            self.target_mean_, self.target_scale_ = target_scale(y, sample_weight)
        dtype = storage_dtype(self.dtype) if first_pass else self.network_.dtype
        return np.ascontiguousarray((y - self.target_mean_) / self.target_scale_, dtype=dtype)

    def _loss(self, output, y, sample_weight, n_threads):
        return squared_error(output, y, sample_weight, n_threads=n_threads)

    def _score_outputs(self, y, out, sample_weight):
        # R^2 of each output is the same in standardised units as in the targets' own.
        return r2_score(y, out, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to images X and targets y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n, H, W) or (n, H, W, C)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample: every batch's loss is the weighted mean
            over its samples, and the target scaling uses weighted means. Samples of
            weight 0 take no part in training.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights.

        The buffers the network reuses from batch to batch stay allocated for the next
        call (a loop over partial_fit reuses them); :meth:`fit`, pickling and
        :func:`~sklearn.base.clone` release them.

        The target scaling comes from the first call's targets and is kept after it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n, H, W) or (n, H, W, C)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets, float64, shape (n_samples,) or (n_samples, n_outputs)."""
        out = self._network_output(X).astype(np.float64)
        out *= self.target_scale_
        out += self.target_mean_
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return self._set_transformer_tags(tags)
