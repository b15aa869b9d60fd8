"""Pictures of a fitted network: learning curves, convolution filters and feature maps.

matplotlib is an optional dependency (``pip install "fastcnn[plot]"``), imported only when a
function here is called. Each function draws on the Axes it is given (or on a new figure's
Axes) and returns that Axes, so plots compose with the rest of a matplotlib figure::

    import matplotlib.pyplot as plt
    from fastcnn.plotting import plot_feature_maps, plot_filters, plot_learning_curve

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    plot_learning_curve(clf, ax=axes[0])
    plot_filters(clf, ax=axes[1])
    plot_feature_maps(clf, X[0], ax=axes[2])
    fig.savefig("network.png")

The functions accept a fitted :class:`~fastcnn.CNNClassifier` or
:class:`~fastcnn.CNNRegressor`, a :class:`~sklearn.pipeline.Pipeline` ending in one, or a
fitted search (:class:`~sklearn.model_selection.GridSearchCV`), whose ``best_estimator_``
is drawn.
"""
import math

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

from .layers import Conv2D

__all__ = ["plot_feature_maps", "plot_filters", "plot_learning_curve"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "fastcnn.plotting needs matplotlib, which is not installed; install it with "
            'pip install "fastcnn[plot]"'
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    else:
        _pyplot()
    return ax


def _fitted_cnn(estimator):
    """The fitted fastcnn estimator inside ``estimator`` (a search, a pipeline, or itself)."""
    if hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    if not hasattr(estimator, "summary") or not hasattr(estimator, "_network_output"):
        raise TypeError(
            f"expected a fitted fastcnn CNNClassifier or CNNRegressor (or a Pipeline or "
            f"search ending in one), got {type(estimator).__name__}"
        )
    check_is_fitted(estimator, "network_")
    return estimator


def _conv_layer_index(network, layer):
    """Position in ``network.layers`` of its ``layer``-th Conv2D layer (0-based)."""
    conv = [i for i, rt in enumerate(network.layers) if isinstance(rt.spec, Conv2D)]
    if not conv:
        raise ValueError("the network has no Conv2D layer to draw")
    if not (isinstance(layer, (int, np.integer)) and -len(conv) <= layer < len(conv)):
        raise ValueError(
            f"layer={layer!r} is not a Conv2D layer index: the network has {len(conv)} "
            f"Conv2D layer(s), so use 0 to {len(conv) - 1}"
        )
    return conv[layer]


def _tile(tiles, n_cols=None):
    """Tiles (n, h, w[, 3]) laid out in a grid one NaN pixel apart, as one image."""
    n, h, w = tiles.shape[:3]
    n_cols = n_cols or math.ceil(math.sqrt(n))
    n_rows = math.ceil(n / n_cols)
    grid = np.full((n_rows * (h + 1) - 1, n_cols * (w + 1) - 1) + tiles.shape[3:], np.nan)
    for i in range(n):
        r, c = divmod(i, n_cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[i]
    return grid


def _show_grid(ax, grid, cmap, vmin=None, vmax=None, separator="white"):
    """imshow a grid from :func:`_tile`, its NaN separators drawn in ``separator``."""
    plt = _pyplot()
    from matplotlib.colors import to_rgb

    cmap = plt.get_cmap(cmap).with_extremes(bad=separator)
    if grid.ndim == 3:  # RGB: imshow draws the colours as given
        grid = np.where(np.isnan(grid), np.asarray(to_rgb(separator)), grid)
    image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def plot_learning_curve(estimator, ax=None):
    """Plot the training loss per epoch, and the validation score when there is one.

    Parameters
    ----------
    estimator : fitted CNNClassifier or CNNRegressor
        Or a Pipeline ending in one, or a fitted search (its ``best_estimator_``).
        ``loss_curve_`` is drawn; ``validation_scores_`` (from ``early_stopping=True``)
        is drawn on a twin y-axis on the right.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes of the loss curve. The validation scores, when drawn, are on
        ``ax.twinx()``-made Axes of the same figure, which the legend covers too.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "fastcnn[plot]"``).
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.

    Examples
    --------
    >>> from fastcnn.plotting import plot_learning_curve
    >>> ax = plot_learning_curve(clf)  # doctest: +SKIP
    >>> ax.figure.savefig("learning_curve.png")  # doctest: +SKIP
    """
    model = _fitted_cnn(estimator)
    ax = _axes(ax)
    epochs = np.arange(1, len(model.loss_curve_) + 1)
    lines = ax.plot(epochs, model.loss_curve_, color="tab:blue", marker=".",
                    label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    scores = getattr(model, "validation_scores_", None)
    if scores:
        twin = ax.twinx()
        name = "validation accuracy" if is_classifier(model) else "validation R²"
        lines += twin.plot(np.arange(1, len(scores) + 1), scores, color="tab:orange",
                           marker=".", label=name)
        twin.set_ylabel(name)
    ax.legend(lines, [line.get_label() for line in lines], loc="best")
    ax.set_title(f"{type(model).__name__} learning curve")
    return ax


def plot_filters(estimator, layer=0, ax=None, cmap="gray"):
    """Draw the filters of a convolution layer as a grid of small images.

    Each filter is scaled to its own range (darkest = most negative weight). Filters
    over 3 input channels (an RGB first layer) are drawn in colour; others in ``cmap``,
    averaged over their input channels when there are several.

    Parameters
    ----------
    estimator : fitted CNNClassifier or CNNRegressor
        Or a Pipeline ending in one, or a fitted search (its ``best_estimator_``).
    layer : int, default=0
        Which Conv2D layer, counting only Conv2D layers from 0: 0 is the first
        convolution (the one whose filters look at the image), -1 the last.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.
    cmap : str or matplotlib colormap, default="gray"

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "fastcnn[plot]"``).
    ValueError
        If the network has no such Conv2D layer.

    Examples
    --------
    >>> from fastcnn.plotting import plot_filters
    >>> ax = plot_filters(clf, layer=0)  # doctest: +SKIP
    >>> ax.figure.savefig("filters.png")  # doctest: +SKIP
    """
    model = _fitted_cnn(estimator)
    index = _conv_layer_index(model.network_, layer)
    ax = _axes(ax)
    weight = np.asarray(model.network_.layers[index].weight, dtype=np.float64)  # (R,S,C,K)
    filters = weight.transpose(3, 0, 1, 2)  # (K, R, S, C)
    if filters.shape[3] != 3:
        filters = filters.mean(axis=3)
    low = filters.min(axis=tuple(range(1, filters.ndim)), keepdims=True)
    high = filters.max(axis=tuple(range(1, filters.ndim)), keepdims=True)
    scaled = (filters - low) / np.where(high > low, high - low, 1.0)
    # Filters span black to white: a coloured separator keeps them apart.
    _show_grid(ax, _tile(scaled), cmap, vmin=0.0, vmax=1.0, separator="lightsteelblue")
    ax.set_title(f"{model.network_.layers[index].name}: {weight.shape[3]} filters "
                 f"{weight.shape[0]}x{weight.shape[1]}")
    return ax


def plot_feature_maps(estimator, image, layer=0, ax=None, cmap="viridis"):
    """Draw the feature maps (output channels) of one image after a convolution layer.

    The image goes through the network's layers up to and including the chosen Conv2D
    layer (with its activation), in prediction mode. All maps share one colour scale,
    so channels that stay dark are ones this image barely excites.

    Parameters
    ----------
    estimator : fitted CNNClassifier or CNNRegressor
        Or a Pipeline ending in one, or a fitted search (its ``best_estimator_``). With a
        Pipeline, ``image`` must already be what the network receives (the earlier steps
        are not applied).
    image : array-like of shape (H, W), (H, W, C) or (H * W * C,)
        One image, as in the estimator's ``X`` (same scaling).
    layer : int, default=0
        Which Conv2D layer, counting only Conv2D layers from 0 (-1: the last).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None makes a new figure.
    cmap : str or matplotlib colormap, default="viridis"

    Returns
    -------
    ax : matplotlib.axes.Axes
        With a colour bar for the activation values.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "fastcnn[plot]"``).
    ValueError
        If the network has no such Conv2D layer or the image has the wrong shape.

    Examples
    --------
    >>> from fastcnn.plotting import plot_feature_maps
    >>> ax = plot_feature_maps(clf, X[0], layer=0)  # doctest: +SKIP
    >>> ax.figure.savefig("feature_maps.png")  # doctest: +SKIP
    """
    model = _fitted_cnn(estimator)
    network = model.network_
    index = _conv_layer_index(network, layer)
    image = np.asarray(image)
    n_values = math.prod(model.image_shape_)
    if image.size != n_values:
        raise ValueError(
            f"image has shape {image.shape} ({image.size} values) but the network takes "
            f"images of shape {model.image_shape_}; pass one image, e.g. X[0]"
        )
    batch, _ = model._validate_input(image.reshape(1, n_values), reset=False,
                                     dtype=network.dtype)
    maps = network.output_of(network.layers[index], batch, n_threads=1)[0]
    maps = np.asarray(maps, dtype=np.float64).transpose(2, 0, 1)  # (K, Ho, Wo)
    ax = _axes(ax)
    shown = _show_grid(ax, _tile(maps), cmap, vmin=maps.min(), vmax=maps.max())
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"{network.layers[index].name}: {maps.shape[0]} feature maps "
                 f"{maps.shape[1]}x{maps.shape[2]}")
    return ax
