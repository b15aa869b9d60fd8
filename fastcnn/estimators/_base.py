"""What CNNClassifier and CNNRegressor share: parameters, pickling, fit orchestration,
prediction and the summary.

The estimators validate their input and parameters (:mod:`._input`), encode the targets
and weights (:mod:`._targets`), build a :class:`~fastcnn.nn.network.Network` from the
layer specs (plus the output layer) and hand it to the epoch loop (:mod:`._training`);
the network and its layers do the arithmetic.
"""
import copy
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from ..augment import Augment
from ..layers import Dense
from ..nn import Network, layer_spec_problem, optimizers, spec_types
from ..nn.network import storage_dtype
from ..nn.optimizers import SCHEDULES, SOLVERS, make_optimizer
from ..ops import _bf16
from ..ops.threads import effective_n_threads
from ._blas import single_threaded_blas
from ._defaults import default_layers
from ._input import trusted_images, validate_input
from ._targets import check_sample_weight, combine
from ._training import run_epochs

# Images per forward pass at prediction time: bounds memory for large X, and keeps each
# layer's arrays in cache between one layer and the next (larger batches measured slower).
_PREDICT_BATCH = 64


class _BaseCNN(BaseEstimator):
    """What the classifier and the regressor share: parameters, input checks, training."""

    def __getstate__(self):
        # Pickles hold the weights, not training workspaces: the random generator is
        # rebuilt by every fit and partial_fit, and the optimizer's state (moments,
        # velocities) by the next fit. After partial_fit it is kept: a stream of
        # partial_fit calls goes on from a pickle exactly as without one (dask-ml's
        # Incremental pickles the model whenever a block runs on another worker).
        # A copy: for a class outside sklearn, BaseEstimator returns the instance's own
        # __dict__, which must not change.
        state = dict(super().__getstate__())
        state.pop("_random_state", None)
        if not state.get("_incremental", False):
            state.pop("_optimizer", None)
        # The network and the optimizer go in as plain values (specs, shapes, arrays,
        # builtins), rebuilt on load: no runtime objects, so that skops.io can load a
        # model trusting only the spec and estimator types (fastcnn.persistence).
        if isinstance(state.get("network_"), Network):
            state["network_"] = _network_state(state["network_"])
        if state.get("_optimizer") is not None:
            state["_optimizer"] = _optimizer_state(state["_optimizer"])
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
        if isinstance(state.get("network_"), dict):
            state["network_"] = _network_from_state(state["network_"])
        if isinstance(state.get("_optimizer"), dict):
            state["_optimizer"] = _optimizer_from_state(state["_optimizer"])
        super().__setstate__(state)

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
        "dtype": [StrOptions({"float32", "float64", "bfloat16"})],
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
                    "non-empty list of fastcnn.layers specs "
                    f"({', '.join(t.__name__ for t in spec_types())}) with valid settings. "
                    "Got "
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

    def _validate_input(self, X, y="no_validation", reset=True, dtype=None):
        """X as images (n, H, W, C) of the network's dtype; y checked (not encoded)."""
        return validate_input(self, X, y, reset, dtype)

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
        if self.dtype == "bfloat16":
            _bf16.require()
        dtype = storage_dtype(self.dtype) if first_pass else self.network_.dtype
        if not first_pass and self.dtype != self.network_.dtype_name:
            raise ValueError(
                f"dtype={self.dtype!r} but the fitted network is {self.network_.dtype_name}; "
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
            with single_threaded_blas():
                run_epochs(self, X, y, sample_weight, (X_val, y_val, w_val), incremental,
                           early_stopping, n_threads, augment_rng)
        finally:
            # partial_fit keeps the buffers reused from batch to batch for its next call
            # (a loop over partial_fit would otherwise fault them in afresh every call:
            # 3-4% of a VGG-small epoch); fit, pickling and cloning release them.
            self.network_.clear_cache(keep_buffers=incremental)
            self.network_.weights_changed()
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

    def _validation_score(self, X, y, sample_weight, n_threads):
        out = np.concatenate([
            self.network_.forward(X[batch], n_threads=n_threads)
            for batch in gen_batches(X.shape[0], _PREDICT_BATCH)
        ])
        return self._score_outputs(y, out, sample_weight)

    # ------------------------------------------------------------------ inference

    def _network_output(self, X, features=False):
        """Output (or last hidden features) of the network for X, in prediction mode,
        through the network's inference plan."""
        network = getattr(self, "network_", None)
        if network is None:
            check_is_fitted(self, "network_")
        images = trusted_images(self, X, network.dtype)
        if images is None:
            images, _ = self._validate_input(X, reset=False, dtype=network.dtype)
        plan = network.prediction_plan(features)
        out = np.empty((images.shape[0], plan.output_width), dtype=network.dtype)
        return plan.run(images, out, effective_n_threads(self.n_threads))

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

    def get_weights(self):
        """The fitted network's arrays, as a list of numpy arrays in network order.

        Per layer, its parameters then its buffers: Conv2D W (R, S, C/groups, K) and b
        (K,); DepthwiseConv2D W (R, S, C, M) and b (C*M,); Dense W (n_in, n_out), with n_in
        in the NHWC order an image is flattened in, and b (n_out,); BatchNorm gamma, beta,
        running_mean, running_var. A block's layers come in order, then its projection
        shortcut; the output layer is last. The arrays are copies.

        Returns
        -------
        weights : list of ndarray
        """
        check_is_fitted(self, "network_")
        return self.network_.get_weights()

    def set_weights(self, weights):
        """Replace the fitted network's arrays with ``weights`` (as :meth:`get_weights`
        returns them).

        The count, each array's shape and that every value is a finite real number are
        checked before anything changes; values are cast to the network's dtype.

        Parameters
        ----------
        weights : list of array-like

        Returns
        -------
        self : object
        """
        check_is_fitted(self, "network_")
        self.network_.set_weights(weights)
        return self

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
        title = (f"{type(self).__name__}: {shape} images -> {outputs}, "
                 f"{self.network_.dtype_name}")
        return self.network_.summary(title=title, output_layer=True)

    def _set_transformer_tags(self, tags):
        # transform returns the model's dtype: an input of that dtype keeps it.
        valid = isinstance(self.dtype, str) and self.dtype in ("float32", "float64", "bfloat16")
        tags.transformer_tags.preserves_dtype = [str(storage_dtype(self.dtype))] if valid else []
        return tags



# ---------------------------------------------------------------------- persisted state

def _network_state(network):
    """A fitted network as plain values: its specs, input shape, dtype, every parameter
    and buffer (network order, as :meth:`Network.get_state`) and its generator's state."""
    return {
        "specs": list(network.specs),
        "input_shape": list(network.input_shape),
        "dtype": network.dtype_name,
        "arrays": network.get_state(),
        "rng_state": network.rng.bit_generator.state,
    }


def _network_from_state(state):
    """The network that :func:`_network_state` describes, rebuilt from its specs."""
    # a bfloat16 model loaded on a CPU without bf16 predicts on float32 kernels
    network = Network(state["specs"], tuple(state["input_shape"]), dtype=state["dtype"],
                      bf16_fallback=True)
    slots = [a for layer in network.root.walk() for a in layer.params + layer.buffers]
    arrays = state["arrays"]
    if len(arrays) != len(slots) or any(
            np.shape(a) != s.shape for a, s in zip(arrays, slots)):
        raise ValueError("the saved network's arrays do not match its layer specs; the "
                         "file is damaged or was not written by fastcnn")
    network.set_state(arrays)
    kind = getattr(np.random, str(state["rng_state"]["bit_generator"]), None)
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        raise ValueError("the saved network's random generator is not a numpy one")
    bit_generator = kind()
    bit_generator.state = state["rng_state"]
    network.rng = np.random.Generator(bit_generator)
    return network


def _optimizer_state(optimizer):
    """An optimizer as plain values: its class name and its attributes (floats, ints,
    strings, lists of arrays)."""
    return {"optimizer": type(optimizer).__name__, "attrs": dict(optimizer.__dict__)}


def _optimizer_from_state(state):
    cls = getattr(optimizers, state["optimizer"], None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers._Optimizer)):
        raise ValueError(f"unknown optimizer {state['optimizer']!r} in a saved model")
    optimizer = cls.__new__(cls)
    optimizer.__dict__.update(state["attrs"])
    return optimizer
