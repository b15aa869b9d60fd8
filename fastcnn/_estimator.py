"""The scikit-learn front: CNNClassifier and CNNRegressor.

The estimators validate their input and parameters, encode labels, build a
:class:`~fastcnn.network.Network` from the layer specs (plus the output layer) and run the
mini-batch training loop with early stopping; the network and its layers do the arithmetic.
"""
import copy
import math
import sys
import threading
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from threadpoolctl import ThreadpoolController

from ._ext._openmp import effective_n_threads
from ._sample_weights import (
    check_sample_weight,
    class_sample_weight,
    combine,
    is_dask_collection,
    target_scale,
)
from ._version import __version__
from .augment import Augment
from .layers import Conv2D, Dense, Dropout, MaxPool2D, layer_spec_problem
from .losses import add_l2_gradient, l2_penalty, softmax_cross_entropy, squared_error
from .network import Network
from .optimizers import SCHEDULES, SOLVERS, make_optimizer

# Images per forward pass at prediction time: bounds memory for large X, and keeps each
# layer's arrays in cache between one layer and the next (larger batches measured slower).
_PREDICT_BATCH = 64

class _SingleThreadedBlas:
    """A context in which BLAS runs on one thread.

    The dense layers' matmuls are small next to the convolutions, and multithreaded BLAS
    competes with the OpenMP kernels' threads (which spin a while after each parallel
    region): on 2 cores training ran 6x slower. scikit-learn's KMeans does the same.
    The limit is process-wide, so concurrent fits and predictions share one: the first to
    enter sets it and the last to leave restores the original.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._controller = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._limiter.restore_original_limits()
                self._limiter = None
        return False


_single_threaded_blas_context = _SingleThreadedBlas()


def _single_threaded_blas():
    return _single_threaded_blas_context


def default_layers(image_shape):
    """The hidden layers ``layers=None`` builds for one image of shape (H, W, C).

    Images of at least 6x6 get up to three blocks of two 3x3 'same' convolutions, 2x2 max
    pooling and dropout (40 filters, doubling per block up to 128), each halving the image
    while it is at least 6 pixels high and wide, then a dense layer of 128 with dropout. On
    the 8x8 digits that is one block: about 0.99 accuracy in a few seconds. Smaller inputs
    (scikit-learn's conformance data, 1 x F strips of tabular features) get one small
    convolution and a small dense layer, so that they train in milliseconds.

    Examples
    --------
    >>> default_layers((8, 8, 1))
    [Conv2D(filters=40, kernel_size=3, padding='same'), Conv2D(filters=40, kernel_size=3, padding='same'), MaxPool2D(), Dropout(rate=0.25), Dense(units=128), Dropout(rate=0.5)]
    >>> default_layers((1, 4, 1))
    [Conv2D(filters=16, kernel_size=3, padding='same'), Dense(units=32)]
    """
    h, w, _ = image_shape
    side = min(h, w)
    if side < 6:
        return [Conv2D(16, 3, padding="same"), Dense(32)]
    layers = []
    filters = 40
    for _ in range(3):
        if side < 6:
            break
        layers += [Conv2D(filters, 3, padding="same"), Conv2D(filters, 3, padding="same"),
                   MaxPool2D(2), Dropout(0.25)]
        side //= 2
        filters = min(2 * filters, 128)
    return layers + [Dense(128), Dropout(0.5)]


def _as_array_if_images(X):
    """(X, ndim): X converted to an ndarray where that is needed to learn its ndim.

    DataFrames and sparse matrices are left alone (ndim None) so that validate_data sees
    their column names or rejects them with its own message.
    """
    if sp.issparse(X) or hasattr(X, "iloc") or hasattr(X, "__dataframe__"):
        return X, None
    _reject_dask_images(X)
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError):  # ragged or odd input: validate_data reports it
            return X, None
    return X, X.ndim


_DASK_IMAGES = (
    "dask-ml passes only 2-D arrays on block by block: give it X as a 2-D dask array of "
    "flattened images, X.reshape(n_samples, height * width * channels), and set "
    "image_shape=(height, width, channels) on the estimator"
)


def _reject_dask_images(X):
    # dask-ml's Incremental hands a block of a 3-D/4-D array on as its graph key (a tuple
    # of a name and block indices), not as data.
    if isinstance(X, tuple) and X and isinstance(X[0], str):
        raise ValueError(f"X is a dask graph key {X!r}, not data. {_DASK_IMAGES}")
    if is_dask_collection(X) and getattr(X, "ndim", 2) > 2:
        raise ValueError(f"X is a {X.ndim}-D dask array. {_DASK_IMAGES}")


def _image_str(shape):
    """(H, W, C) as 'HxWxC'."""
    return "x".join(str(s) for s in shape)


class _BaseCNN(BaseEstimator):
    def __getstate__(self):
        # Pickles hold the weights, not training workspaces: the random generator is
        # rebuilt by every fit and partial_fit, and the optimizer's state (moments,
        # velocities) by the next fit. After partial_fit it is kept: a stream of
        # partial_fit calls goes on from a pickle exactly as without one (dask-ml's
        # Incremental pickles the model whenever a block runs on another worker).
        state = super().__getstate__()
        state.pop("_random_state", None)
        if not state.get("_incremental", False):
            state.pop("_optimizer", None)
        state["_fastcnn_version"] = __version__
        return state

    def __setstate__(self, state):
        version = state.pop("_fastcnn_version", None)
        if version != __version__:
            warnings.warn(
                f"Trying to unpickle {type(self).__name__} from fastcnn version "
                f"{version or 'unknown'} when using version {__version__}. This might lead "
                "to breaking code or invalid results; refit the model with this version.",
                UserWarning,
                stacklevel=2,
            )
        super().__setstate__(state)
    """What the classifier and the regressor share: parameters, input checks, training."""

    _parameter_constraints = {
        "layers": [None, list],
        "image_shape": [None, tuple, list],
        "solver": [StrOptions(set(SOLVERS))],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "lr_step": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "augment": [None, Augment],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "n_threads": [
            None,
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
        ],
        "dtype": [StrOptions({"float32", "float64"})],
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
    ):
        self.layers = layers
        self.image_shape = image_shape
        self.solver = solver
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.augment = augment
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.n_threads = n_threads
        self.dtype = dtype

    # ------------------------------------------------------------------ validation

    def _validate_params(self):
        super()._validate_params()
        # The constraints check that layers is a list; here, that it holds valid specs.
        if self.layers is not None:
            problem = layer_spec_problem(self.layers)
            if problem:
                raise InvalidParameterError(
                    f"The 'layers' parameter of {type(self).__name__} must be None or a "
                    "non-empty list of fastcnn.layers specs (Conv2D, MaxPool2D, AvgPool2D, "
                    f"GlobalAvgPool2D, Dense, Dropout) with valid settings. Got "
                    f"{self.layers!r} instead: {problem}."
                )
        if self.augment is not None:
            problem = self.augment._problem()
            if problem:
                raise InvalidParameterError(
                    f"The 'augment' parameter of {type(self).__name__} must be None or a "
                    f"fastcnn.augment.Augment with valid settings. Got {self.augment!r} "
                    f"instead: {problem}."
                )

    def _check_image_shape(self):
        shape = self.image_shape
        values = list(shape)
        if len(values) not in (2, 3) or not all(
            isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in values
        ):
            raise ValueError(
                f"image_shape must be (height, width) or (height, width, channels) with "
                f"positive ints, got {shape!r}"
            )
        if len(values) == 2:
            values.append(1)
        return tuple(int(v) for v in values)

    def _validate_input(self, X, y="no_validation", reset=True, dtype=None):
        """X as images (n, H, W, C) of the network's dtype; y checked (not encoded).

        X may be (n, H, W), (n, H, W, C) or 2-D (n, H*W*C); 2-D input is reshaped using
        ``image_shape`` (or the shape inferred at fit).
        """
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        X, ndim = _as_array_if_images(X)
        input_image = None
        if ndim is not None and ndim > 2:
            if ndim > 4:
                raise ValueError(
                    f"X must be 2-D (n_samples, n_features), 3-D (n_samples, height, width) "
                    f"or 4-D (n_samples, height, width, channels); got shape {X.shape}"
                )
            input_image = X.shape[1:] + ((1,) if ndim == 3 else ())
            if not reset:
                self._check_fitted_image(input_image, ndim)
            X = X.reshape(X.shape[0], math.prod(X.shape[1:]))
        elif not reset and ndim == 2:
            self._check_fitted_width(X.shape[1])
        kwargs = dict(reset=reset, dtype=dtype, order="C")
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, **kwargs)
        elif is_classifier(self):
            X, y = validate_data(self, X, y, **kwargs)
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, **kwargs)
        n_features = X.shape[1]

        if reset:
            if self.image_shape is not None:
                image_shape = self._check_image_shape()
                if math.prod(image_shape) != n_features:
                    raise ValueError(
                        f"image_shape={tuple(self.image_shape)} holds "
                        f"{math.prod(image_shape)} values per image but X has {n_features} "
                        "features per sample; pass image_shape with height * width * "
                        "channels == n_features, or None to infer it"
                    )
                if input_image is not None and input_image != image_shape:
                    raise ValueError(
                        f"X holds {_image_str(input_image)} images but image_shape="
                        f"{tuple(self.image_shape)} says {_image_str(image_shape)}; drop "
                        "image_shape for image-shaped X"
                    )
            elif input_image is not None:
                image_shape = input_image
            else:
                side = math.isqrt(n_features)
                image_shape = (side, side, 1) if side * side == n_features else (
                    1, n_features, 1)
            self.image_shape_ = image_shape
        images = X.reshape((X.shape[0],) + tuple(self.image_shape_))
        return images, y

    def _check_fitted_image(self, input_image, ndim):
        """Image-shaped X at predict (or partial_fit) against the fitted image shape."""
        fitted = getattr(self, "image_shape_", None)
        if fitted is None or tuple(input_image) == tuple(fitted):
            return
        given = _image_str(input_image)
        if ndim == 3:
            given = f"{_image_str(input_image[:2])} grayscale images ({given})"
        else:
            given += " images"
        raise ValueError(
            f"X holds {given}, but {type(self).__name__} was fitted on "
            f"{_image_str(fitted)} images; pass images of shape (n_samples, "
            f"{', '.join(map(str, fitted))}), or 2-D rows of {math.prod(fitted)} values"
        )

    def _check_fitted_width(self, n_features):
        """2-D X at predict: scikit-learn's message, plus the image shape it stands for."""
        expected = getattr(self, "n_features_in_", None)
        if expected is None or n_features == expected:
            return
        raise ValueError(
            f"X has {n_features} features, but {type(self).__name__} is expecting "
            f"{expected} features as input ({_image_str(self.image_shape_)} images, "
            "flattened)"
        )

    # ------------------------------------------------------------------ training

    def _fit(self, X, y, incremental=False, classes=None, sample_weight=None):
        # An error part-way (MemoryError in a kernel, bad data found late) leaves the
        # estimator as it was before this call.
        saved = copy.deepcopy(self.__dict__)
        try:
            return self._fit_unguarded(X, y, incremental, classes, sample_weight)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit_unguarded(self, X, y, incremental, classes, sample_weight):
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        dtype = self.dtype if first_pass else self.network_.dtype
        if not first_pass and np.dtype(self.dtype) != self.network_.dtype:
            raise ValueError(
                f"dtype={self.dtype!r} but the fitted network is {self.network_.dtype}; "
                "warm_start and partial_fit continue in the dtype of the first fit "
                "(set warm_start=False to refit)"
            )
        X, y = self._validate_input(X, y, reset=first_pass, dtype=dtype)
        sample_weight = check_sample_weight(sample_weight, X)
        y = self._encode_targets(y, incremental, first_pass, classes)
        sample_weight = combine(sample_weight, self._class_sample_weight(y))
        if sample_weight is not None:
            # Samples of weight zero take no part in any update: training goes exactly as
            # if they had been left out, batches filled with samples that count.
            kept = np.flatnonzero(sample_weight)
            if kept.size < sample_weight.size:
                X, y, sample_weight = X[kept], y[kept], sample_weight[kept]
            if np.all(sample_weight == 1.0):
                sample_weight = None    # the same model, by the unweighted code path
        y = self._scale_targets(y, sample_weight, first_pass)
        self._random_state = check_random_state(self.random_state)
        n_threads = effective_n_threads(self.n_threads)

        early_stopping = self.early_stopping and not incremental
        w_val = None
        if early_stopping:
            stratify = y if is_classifier(self) else None
            split = train_test_split(
                X, y, *([] if sample_weight is None else [sample_weight]),
                random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify,
            )
            X, X_val, y, y_val = split[:4]
            if sample_weight is not None:
                sample_weight, w_val = split[4:]
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or "
                    "the size of your dataset."
                )
        else:
            X_val = y_val = None

        if first_pass:
            self._initialize(y)
        if first_pass or not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = make_optimizer(
                self.solver, self.network_.params,
                learning_rate_init=self.learning_rate_init, learning_rate=self.learning_rate,
                power_t=self.power_t, lr_decay=self.lr_decay, lr_step=self.lr_step,
                momentum=self.momentum, nesterovs_momentum=self.nesterovs_momentum,
                beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
            )
        if not incremental:
            self._no_improvement_count = 0
            if early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                if first_pass or self.best_loss_ is None:
                    self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        elif self.best_loss_ is None:
            # partial_fit after a fit with early stopping, which tracked no best loss.
            self.best_loss_ = np.inf
        # Drawn only when augmenting, so that augment=None trains exactly as before.
        augment_rng = None
        if self.augment is not None and not self.augment.is_identity:
            augment_rng = np.random.default_rng(
                self._random_state.randint(np.iinfo(np.int32).max))
        try:
            with _single_threaded_blas():
                self._train(X, y, sample_weight, (X_val, y_val, w_val), incremental,
                            early_stopping, n_threads, augment_rng)
        finally:
            self.network_.clear_cache()
        self._incremental = incremental
        return self

    def _initialize(self, y):
        self.n_outputs_ = y.shape[1] if y.ndim == 2 else len(self.classes_)
        hidden = list(self.layers) if self.layers is not None else default_layers(
            self.image_shape_)
        specs = hidden + [Dense(self.n_outputs_, activation="linear")]
        self.network_ = Network(specs, self.image_shape_, dtype=self.dtype)
        self.network_.initialize(self._random_state)
        self.layers_ = hidden
        self._n_features_out = int(np.prod(self.network_.layers[-1].input_shape))
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.best_loss_ = np.inf

    def _class_sample_weight(self, y):
        """Per-sample weights that the estimator's own settings give (class_weight)."""
        return None

    def _scale_targets(self, y, sample_weight, first_pass):
        """The targets in the units the network learns (the regressor standardises)."""
        return y

    def _train(self, X, y, sample_weight, validation, incremental, early_stopping, n_threads,
               augment_rng=None):
        network, optimizer = self.network_, self._optimizer
        params, grads = network.params, network.grads
        weights, weight_grads = network.weights, network.weight_grads
        n_samples = X.shape[0]
        total_weight = n_samples if sample_weight is None else float(sample_weight.sum())
        batch_size = min(self.batch_size, n_samples)
        n_batches = -(-n_samples // batch_size)
        alpha = float(self.alpha)
        if early_stopping:
            self._best_state = network.get_state()
        # Shuffled batches are gathered into one reused array: a fresh one per batch can
        # be fresh pages to fault in each time, as costly as a small network's arithmetic.
        gathered = np.empty((batch_size,) + X.shape[1:], dtype=X.dtype)
        for epoch in range(self.max_iter):
            start = time.perf_counter()
            order = self._random_state.permutation(n_samples) if self.shuffle else None
            accumulated_loss = 0.0
            # The weights after the last completed epoch: what a divergence or Ctrl-C
            # falls back to.
            epoch_state = network.get_state()
            stop = None
            try:
                for b, batch in enumerate(gen_batches(n_samples, batch_size)):
                    if order is None:
                        rows = batch
                        X_batch = X[batch]
                    else:
                        rows = order[batch]
                        X_batch = np.take(X, rows, axis=0, out=gathered[:len(rows)])
                    y_batch = y[rows]
                    # The batch's loss is the weighted mean over its samples, and the L2
                    # term is scaled by the batch's total weight (as in MLPClassifier).
                    if sample_weight is None:
                        w_batch, batch_weight = None, X_batch.shape[0]
                    else:
                        w_batch = sample_weight[rows]
                        batch_weight = float(w_batch.sum())
                    if augment_rng is not None:
                        X_batch = self.augment.apply(X_batch, augment_rng)
                    output = network.forward(X_batch, training=True, n_threads=n_threads)
                    loss, d_output = self._loss(output, y_batch, w_batch, n_threads)
                    if alpha:
                        loss += l2_penalty(weights, alpha, batch_weight)
                    if not np.isfinite(loss):
                        stop = (f"{type(self).__name__}: the training loss became "
                                f"{loss} in epoch {self.n_iter_ + 1}; training stopped and "
                                "the weights of the last finite epoch were kept. Lower "
                                f"learning_rate_init (now {self.learning_rate_init}) or "
                                "scale the input.")
                        break
                    network.backward(d_output, n_threads=n_threads)
                    if alpha:
                        add_l2_gradient(weights, weight_grads, alpha, batch_weight)
                    optimizer.update(params, grads, n_threads)
                    accumulated_loss += loss * batch_weight
                    if self.verbose >= 2:
                        self._print_progress(b + 1, n_batches)
            except KeyboardInterrupt:
                stop = (f"{type(self).__name__}: training interrupted in epoch "
                        f"{self.n_iter_ + 1}; the model keeps the weights of the last "
                        f"completed epoch ({self.n_iter_}).")
            if stop is not None:
                network.set_state(epoch_state)
                warnings.warn(stop, RuntimeWarning, stacklevel=4)
                break
            seconds = time.perf_counter() - start  # training only, not validation
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = accumulated_loss / total_weight
            self.loss_curve_.append(self.loss_)
            self._update_no_improvement_count(early_stopping, validation, n_threads)
            optimizer.iteration_ends(self.n_iter_, self.t_)
            if self.verbose:
                self._print_epoch(seconds, n_samples, early_stopping)

            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    msg = (f"Validation score did not improve more than tol={self.tol:f} "
                           f"for {self.n_iter_no_change} consecutive epochs.")
                else:
                    msg = (f"Training loss did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                if optimizer.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if epoch + 1 == self.max_iter:
                warnings.warn(
                    f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached "
                    "and the optimization hasn't converged yet; increase max_iter.",
                    ConvergenceWarning,
                )
        if early_stopping:
            network.set_state(self._best_state)
            del self._best_state

    def _update_no_improvement_count(self, early_stopping, validation, n_threads):
        if early_stopping:
            score = self._validation_score(*validation, n_threads)
            self.validation_scores_.append(score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self.network_.get_state()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _validation_score(self, X, y, sample_weight, n_threads):
        out = np.concatenate([
            self.network_.forward(X[batch], n_threads=n_threads)
            for batch in gen_batches(X.shape[0], _PREDICT_BATCH)
        ])
        return self._score_outputs(y, out, sample_weight)

    def _print_progress(self, done, total):
        width = 30
        filled = width * done // total
        bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
        sys.stdout.write(f"\r  [{bar}] {done}/{total} batches")
        if done == total:
            sys.stdout.write("\r" + " " * (width + 30) + "\r")
        sys.stdout.flush()

    def _print_epoch(self, seconds, n_samples, early_stopping):
        line = f"Epoch {self.n_iter_}: loss {self.loss_:.6f}"
        if early_stopping:
            line += f", validation score {self.validation_scores_[-1]:.4f}"
        rate = n_samples / seconds if seconds > 0 else float("inf")
        line += f", {seconds:.2f} s, {rate:.0f} images/s"
        print(line, flush=True)

    # ------------------------------------------------------------------ inference

    def _network_output(self, X, features=False):
        """Output (or last hidden features) of the network for X, in prediction mode."""
        check_is_fitted(self, "network_")
        images, _ = self._validate_input(X, reset=False, dtype=self.network_.dtype)
        n_threads = effective_n_threads(self.n_threads)
        n = images.shape[0]
        width = self._n_features_out if features else self.n_outputs_
        out = np.empty((n, width), dtype=self.network_.dtype)
        try:
            with _single_threaded_blas():
                for batch in gen_batches(n, _PREDICT_BATCH):
                    if features:
                        out[batch] = self.network_.features(images[batch],
                                                            n_threads=n_threads)
                    else:
                        out[batch] = self.network_.forward(images[batch], n_threads=n_threads)
        finally:
            self.network_.release_buffers()
        return out

    def transform(self, X):
        """The last hidden layer's features (the output layer's input), 2-D.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n, H, W) or (n, H, W, C)

        Returns
        -------
        features : ndarray of shape (n_samples, n_hidden_features), of the model's dtype
        """
        return self._network_output(X, features=True)

    def summary(self):
        """A table of the fitted network: layers, output shapes, parameters and FLOPs.

        One row per layer (the input, the hidden layers, then the output layer the
        estimator adds), with totals. FLOPs are those of one image's forward pass: two
        per multiply-add in Conv2D and Dense layers, one per window element in pooling
        layers, none for Dropout; biases and activations are not counted.

        Returns
        -------
        table : str
            The table as text; ``print(model.summary())`` shows it.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator has not been fitted yet.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from fastcnn import CNNClassifier
        >>> from fastcnn.layers import Conv2D, Dense
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = CNNClassifier([Conv2D(8, 3), Dense(16)], image_shape=(8, 8), max_iter=1,
        ...                     random_state=0).fit(X[:100] / 16, y[:100])
        >>> print(clf.summary())
        CNNClassifier: 8x8x1 images -> 10 classes, float32
        #  Layer                                           Output shape  Parameters  FLOPs/image
        ----------------------------------------------------------------------------------------
           Input                                           8x8x1
        1  Conv2D(filters=8, kernel_size=3)                6x6x8                 80        5,184
        2  Dense(units=16)                                 16                 4,624        9,216
        3  Dense(units=10, activation='linear')  (output)  10                   170          320
        ----------------------------------------------------------------------------------------
        Total: 4,874 parameters (19.0 KiB as float32), 14,720 FLOPs per image (14.72 kFLOPs)
        """
        check_is_fitted(self, "network_")
        shape = "x".join(map(str, self.image_shape_))
        if is_classifier(self):
            outputs = f"{len(self.classes_)} classes"
        else:
            outputs = f"{self.n_outputs_} output{'s' * (self.n_outputs_ != 1)}"
        title = f"{type(self).__name__}: {shape} images -> {outputs}, {self.network_.dtype}"
        return self.network_.summary(title=title, output_layer=True)

    def _set_transformer_tags(self, tags):
        # transform returns the model's dtype: an input of that dtype keeps it.
        valid = isinstance(self.dtype, str) and self.dtype in ("float32", "float64")
        tags.transformer_tags.preserves_dtype = [self.dtype] if valid else []
        return tags


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
        Hidden layers from :mod:`fastcnn.layers` (Conv2D, MaxPool2D, AvgPool2D,
        GlobalAvgPool2D, Dense, Dropout); the softmax output layer is added. None builds a
        default sized to the input (see :func:`fastcnn._estimator.default_layers`).
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
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and of the computation.
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
    network_ : fastcnn.network.Network
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
        logits = self._network_output(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return self._set_transformer_tags(tags)


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
        dtype = np.dtype(self.dtype) if first_pass else self.network_.dtype
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
