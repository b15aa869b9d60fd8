"""CNNClassifier: labels of any type, softmax cross-entropy, class weights."""
import numpy as np
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels

from ..nn.losses import softmax_cross_entropy, softmax_inplace
from ._base import _BaseCNN
from ._targets import class_sample_weight


class CNNClassifier(ClassifierMixin, TransformerMixin, ClassNamePrefixFeaturesOutMixin,
                    _BaseCNN):
    """Convolutional neural network classifier, trained by mini-batch gradient descent.

    Images are NHWC arrays: ``X`` may be (n_samples, height, width) grayscale,
    (n_samples, height, width, channels), or 2-D (n_samples, height * width * channels)
    with ``image_shape``. Pixel values are used as given: scale them yourself (e.g.
    ``X / 255`` or a :class:`~sklearn.preprocessing.MinMaxScaler` in a pipeline).
    Labels may be of any type. Parameter names follow
    :class:`~sklearn.neural_network.MLPClassifier`.

    Parameters
    ----------
    layers : list of layer specs, default=None
        Hidden layers from :mod:`fastcnn.layers` (Conv2D, DepthwiseConv2D, MaxPool2D,
        AvgPool2D, L2Pool2D, GlobalAvgPool2D, GlobalMaxPool2D, SpatialPyramidPool2D, Dense,
        BatchNorm, Activation, Dropout, and Residual blocks of them); the softmax output
        layer is added. None builds a
        default sized to the input (see :func:`fastcnn.estimators.default_layers`).
    image_shape : tuple (H, W) or (H, W, C), default=None
        Shape of one image for 2-D X. None: square grayscale when n_features is a perfect
        square, else a 1 x n_features strip. Ignored (but checked) for 3-D/4-D X.
    solver : {"adam", "sgd", "rmsprop", "adagrad"}, default="adam"
        "sgd" uses ``momentum`` and ``nesterovs_momentum``; "adam" ``beta_1``, ``beta_2``
        and ``epsilon``; "rmsprop" ``beta_2`` (the squared-gradient decay) and ``epsilon``.
    learning_rate : {"constant", "invscaling", "adaptive", "step"}, default="constant"
        Learning-rate schedule (for every solver): "invscaling" divides by
        ``(t + 1) ** power_t`` (t = samples seen); "adaptive" divides by 5 each time
        training stalls for ``n_iter_no_change`` epochs; "step" multiplies by ``lr_decay``
        every ``lr_step`` epochs.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    lr_decay : float in (0, 1], default=0.5
    lr_step : int, default=10
    batch_size : int, default=64
        Clipped to the number of samples.
    max_iter : int, default=35
        Maximum number of epochs (passes over the training data).
    alpha : float, default=0.0
        L2 penalty on the weights (MLPClassifier's scaling).
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and stop when
        its accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs; the
        best weights are kept.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    shuffle : bool, default=True
        Reshuffle the training data every epoch.
    augment : fastcnn.augment.Augment, default=None
        Random shifts, horizontal flips and small rotations applied afresh to every
        training batch (``Augment(shift=2, flip=True, rotation=10)``); never to the
        validation data or at prediction. Drawn from ``random_state``. None: no
        augmentation.
    random_state : int, RandomState instance or None, default=None
        Weight initialisation, shuffling, the validation split, dropout masks and the
        augmentation draws: an int gives the same fitted model every time.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    verbose : int, default=0
        1: one line per epoch (loss, validation score, seconds, images/s); 2: also a
        progress bar within each epoch.
    n_threads : int, default=None
        Threads for the compiled kernels: None uses every usable core (honouring
        OMP_NUM_THREADS and threadpoolctl limits), -1 the same, -2 one fewer, and so on.
        Results do not depend on it.
    dtype : {"float32", "float64", "bfloat16"}, default="float32"
        Precision of the weights and of the computation. "bfloat16" is mixed precision
        (CPUs with AVX512_BF16 only): the convolution and dense layers multiply bf16
        operands and add in float32, while weights, gradients, optimizer state, loss and
        BatchNorm stay float32; outputs are float32.
    class_weight : None, "balanced" or dict {label: weight}, default=None
        Weights of the classes in the loss, multiplying ``sample_weight``. "balanced"
        weighs each class by ``n_samples / (n_classes * count)`` in ``y`` (with
        ``partial_fit``: in each call's ``y``); a dict names some labels (the others
        weigh 1).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X had string column names.
    image_shape_ : tuple (H, W, C)
    layers_ : list of layer specs
        The hidden layers used (the default ones when ``layers=None``).
    network_ : fastcnn.nn.network.Network
    n_outputs_ : int
    loss_ : float
        Mean training loss of the last epoch (cross-entropy plus the L2 term), weighted
        by ``sample_weight`` and ``class_weight``.
    loss_curve_ : list of float
    best_loss_ : float or None
    validation_scores_ : list of float or None
        Validation accuracy per epoch, with early stopping.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fastcnn import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(image_shape=(8, 8), max_iter=2, random_state=0)
    >>> clf.fit(X[:200] / 16, y[:200]).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **_BaseCNN._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(
        self,
        layers=None,
        image_shape=None,
        *,
        solver="adam",
        learning_rate="constant",
        learning_rate_init=1e-3,
        power_t=0.5,
        lr_decay=0.5,
        lr_step=10,
        batch_size=64,
        max_iter=35,
        alpha=0.0,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        augment=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        n_threads=None,
        dtype="float32",
        class_weight=None,
    ):
        super().__init__(
            layers,
            image_shape,
            solver=solver,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            lr_decay=lr_decay,
            lr_step=lr_step,
            batch_size=batch_size,
            max_iter=max_iter,
            alpha=alpha,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            shuffle=shuffle,
            augment=augment,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            n_threads=n_threads,
            dtype=dtype,
        )
        self.class_weight = class_weight

    def _encode_targets(self, y, incremental, first_pass, classes):
        check_classification_targets(y)
        if incremental and first_pass:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = unique_labels(classes)
        elif incremental:
            if classes is not None and not np.array_equal(unique_labels(classes),
                                                          self.classes_):
                raise ValueError(
                    f"classes={classes!r} is not the same as on the first call to "
                    f"partial_fit, which was {self.classes_!r}"
                )
        else:
            found = unique_labels(y)
            if not first_pass and not np.array_equal(found, self.classes_):
                raise ValueError(
                    "warm_start can only be used where y has the same classes as in the "
                    f"previous call to fit: previously got {self.classes_}, y has {found}"
                )
            self.classes_ = found
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]}"
            )
        encoded = np.searchsorted(self.classes_, y)
        encoded = np.minimum(encoded, len(self.classes_) - 1)
        unknown = self.classes_[encoded] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels not in classes {self.classes_}: "
                f"{np.unique(np.asarray(y)[unknown])}"
            )
        return encoded.astype(np.int64)

    def _class_sample_weight(self, y):
        return class_sample_weight(self.class_weight, y, self.classes_)

    def _loss(self, output, y, sample_weight, n_threads):
        return softmax_cross_entropy(output, y, sample_weight, n_threads=n_threads)

    def _score_outputs(self, y, out, sample_weight):
        return accuracy_score(y, np.argmax(out, axis=1), sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to images X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n, H, W) or (n, H, W, C)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample: every batch's loss is the weighted mean
            over its samples. Samples of weight 0 take no part in training. Multiplied
            by the weights ``class_weight`` gives.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights.

        The buffers the network reuses from batch to batch stay allocated for the next
        call (a loop over partial_fit reuses them); :meth:`fit`, pickling and
        :func:`~sklearn.base.clone` release them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n, H, W) or (n, H, W, C)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole problem; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, classes=classes,
                         sample_weight=sample_weight)

    def predict(self, X):
        """Predicted class labels for X."""
        logits = self._network_output(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_proba(self, X):
        """Class probabilities for X, shape (n_samples, n_classes), float64."""
        return softmax_inplace(self._network_output(X).astype(np.float64), self.n_threads)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return self._set_transformer_tags(tags)
