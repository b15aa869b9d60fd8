"""fastcnn.plotting with the Agg backend: the figures save to PNGs that are not blank."""
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import Conv2D, Dense, MaxPool2D
from fastcnn.plotting import (
    plot_feature_maps,
    plot_filters,
    plot_learning_curve,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:150] / 16.0).astype(np.float32), y[:150]


@pytest.fixture(scope="module")
def clf(digits):
    X, y = digits
    return CNNClassifier([Conv2D(6, 3, padding="same"), MaxPool2D(2), Conv2D(5, 3), Dense(16)],
                         image_shape=(8, 8), max_iter=4, early_stopping=True,
                         validation_fraction=0.2, random_state=0).fit(X, y)


def _assert_png_not_blank(ax, path):
    ax.figure.savefig(path)
    assert path.exists()
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.std() > 0


def test_learning_curve(clf, tmp_path):
    ax = plot_learning_curve(clf)
    assert isinstance(ax, Axes)
    loss_line = ax.get_lines()[0]
    assert_allclose(loss_line.get_ydata(), clf.loss_curve_)
    twin = [other for other in ax.figure.axes if other is not ax]
    assert len(twin) == 1
    assert_allclose(twin[0].get_lines()[0].get_ydata(), clf.validation_scores_)
    assert "validation accuracy" in twin[0].get_ylabel()
    _assert_png_not_blank(ax, tmp_path / "curve.png")


def test_learning_curve_without_validation_on_given_axes(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(30, 6, 6).astype(np.float32)
    reg = CNNRegressor([Conv2D(3, 3), Dense(4)], max_iter=3, random_state=0).fit(
        X, X.mean(axis=(1, 2)))
    fig, axes = plt.subplots(1, 2)
    assert plot_learning_curve(reg, ax=axes[1]) is axes[1]
    assert len(fig.axes) == 2  # no twin axes without validation scores
    _assert_png_not_blank(axes[1], tmp_path / "curve.png")


def test_filters(clf, tmp_path):
    ax = plot_filters(clf)
    assert isinstance(ax, Axes)
    grid = ax.images[0].get_array()
    # 6 filters of 3x3 in a 3x2 grid one pixel apart
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1)
    _assert_png_not_blank(ax, tmp_path / "filters.png")
    deeper = plot_filters(clf, layer=-1)
    assert deeper.images[0].get_array().shape == (2 * 4 - 1, 3 * 4 - 1)  # 5 filters
    with pytest.raises(ValueError, match="has 2 Conv2D layer"):
        plot_filters(clf, layer=2)


def test_rgb_filters_are_drawn_in_colour(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(20, 6, 6, 3).astype(np.float32)
    model = CNNClassifier([Conv2D(4, 3), Dense(4)], max_iter=1, random_state=0).fit(
        X, np.arange(20) % 2)
    ax = plot_filters(model)
    assert ax.images[0].get_array().shape == (7, 7, 3)
    _assert_png_not_blank(ax, tmp_path / "rgb.png")


def test_feature_maps_are_the_conv_prefix_output(clf, digits, tmp_path):
    X, _ = digits
    _, ax = plt.subplots()
    assert plot_feature_maps(clf, X[3].reshape(8, 8), ax=ax) is ax
    grid = np.asarray(ax.images[0].get_array())
    assert grid.shape == (2 * 9 - 1, 3 * 9 - 1)  # 6 maps of 8x8, 3 to a row
    maps = clf.network_.forward(X[3].reshape(1, 8, 8, 1), n_layers=1)[0]
    assert_allclose(grid[:8, :8], maps[:, :, 0], rtol=1e-6)
    assert_allclose(grid[9:17, 9:17], maps[:, :, 4], rtol=1e-6)
    _assert_png_not_blank(ax, tmp_path / "maps.png")

    # the second convolution: after pooling, 4x4 -> 2x2, 5 maps
    deeper = plot_feature_maps(clf, X[3], layer=1)
    assert np.asarray(deeper.images[0].get_array()).shape == (2 * 3 - 1, 3 * 3 - 1)
    with pytest.raises(ValueError, match="one image"):
        plot_feature_maps(clf, X[:2])


def test_searches_and_pipelines_are_unwrapped(digits):
    X, y = digits
    model = CNNClassifier([Conv2D(3, 3), Dense(8)], image_shape=(8, 8), max_iter=1,
                          random_state=0)
    search = GridSearchCV(model, {"batch_size": [32, 64]}, cv=2).fit(X, y)
    assert plot_filters(search).images
    pipe = make_pipeline(FunctionTransformer(), model).fit(X, y)
    assert plot_learning_curve(pipe).get_lines()
    assert plot_feature_maps(pipe, X[0]).images
    with pytest.raises(TypeError, match="fastcnn"):
        plot_filters(FunctionTransformer())


def test_unfitted_and_convolution_free_networks(digits):
    X, y = digits
    with pytest.raises(NotFittedError):
        plot_learning_curve(CNNClassifier())
    dense_only = CNNClassifier([Dense(8)], image_shape=(8, 8), max_iter=1,
                               random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="no Conv2D layer"):
        plot_filters(dense_only)


def test_missing_matplotlib_is_a_clear_import_error(clf, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[plot\]"'):
        plot_learning_curve(clf)


def test_convolutions_inside_residual_blocks_are_reached(digits):
    from fastcnn import functional as F
    from fastcnn.layers import Residual

    X, y = digits
    model = CNNClassifier([Conv2D(3, 3, padding="same"),
                           Residual([Conv2D(3, 3, padding="same"), Conv2D(3, 3, padding="same")]),
                           Dense(8)], image_shape=(8, 8), max_iter=2, random_state=0).fit(X, y)
    stem, inner = model.network_.layers[0], model.network_.layers[1]
    ax = plot_feature_maps(model, X[5], layer=1)
    grid = np.asarray(ax.images[0].get_array())
    x = X[5].reshape(1, 8, 8, 1)
    h = F.relu(F.conv2d(x, stem.weight, stem.bias, padding="same"))
    maps = F.relu(F.conv2d(h, inner.weight, inner.bias, padding="same"))[0]
    assert_allclose(grid[:8, :8], maps[:, :, 0], rtol=1e-5, atol=1e-6)
    assert "Conv2D #2" in ax.get_title()
    ax = plot_filters(model, layer=2)
    assert "Conv2D #3" in ax.get_title()
    with pytest.raises(ValueError, match="has 3 Conv2D layer"):
        plot_filters(model, layer=3)
