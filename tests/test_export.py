"""ONNX export (fastcnn.export): onnxruntime reproduces predict / predict_proba.

onnx, skl2onnx and onnxruntime are optional dependencies: the module skips without them.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    Residual,
    SpatialPyramidPool2D,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
export = pytest.importorskip("fastcnn.export")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# 8x8 inputs: 'same' padding with stride 2 on an even size pads asymmetrically
NETWORKS = {
    "conv-bn-residual": [
        Conv2D(6, 3, stride=2, padding="same", activation=None), BatchNorm(),
        Activation("relu"),
        Residual([Conv2D(8, 3, padding="same", groups=2, activation=None), BatchNorm(),
                  Activation("relu"), Conv2D(8, 3, padding="same", activation=None),
                  BatchNorm()], shortcut="projection"),
        Residual([Conv2D(8, 3, padding="same", activation="tanh")], activation="sigmoid"),
        SpatialPyramidPool2D((1, 2, 3), mode="max"),
        Dense(10),
    ],
    "depthwise-pools": [
        DepthwiseConv2D(3, padding="same", dilation=2, depth_multiplier=2),
        BatchNorm(), Activation("relu"),
        Conv2D(5, 2, padding=(1, 0, 0, 1), dilation=(1, 2), activation="sigmoid"),
        MaxPool2D(3, stride=1), AvgPool2D(2), L2Pool2D(2, stride=1),
        GlobalAvgPool2D(), BatchNorm(), Dense(6, activation="tanh"), Dropout(0.2),
    ],
    "unfolded-batchnorm": [
        BatchNorm(), Activation("relu"), Conv2D(4, 3, stride=(2, 1), activation="tanh"),
        BatchNorm(), L2Pool2D(2), SpatialPyramidPool2D((2, 3), mode="avg"),
        Dense(8, activation=None), BatchNorm(), Activation("sigmoid"),
    ],
    "global-max": [Conv2D(4, 3, padding="same", groups=1), GlobalMaxPool2D()],
}


def _data(n=80, shape=(8, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n,) + shape).astype(np.float32)
    return X[:60], X[60:], rng


def _run(onx, X):
    onnx.checker.check_model(onx, full_check=True)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_layer_type_matches(name):
    X, X_test, rng = _data()
    y = rng.integers(0, 3, len(X))
    clf = CNNClassifier(NETWORKS[name], max_iter=3, batch_size=16, random_state=0).fit(X, y)
    label, proba = _run(export.to_onnx(clf, X[:1], options={"zipmap": False}), X_test)
    assert_allclose(proba, clf.predict_proba(X_test), atol=1e-4)
    assert np.array_equal(label, clf.predict(X_test))


def test_float64_network_and_opset_17():
    X, X_test, rng = _data()
    y = rng.integers(0, 2, len(X))
    clf = CNNClassifier(NETWORKS["conv-bn-residual"], dtype="float64", max_iter=2,
                        random_state=0).fit(X, y)
    label, proba = _run(export.to_onnx(clf, X[:1], options={"zipmap": False},
                                       target_opset=17), X_test)
    assert_allclose(proba, clf.predict_proba(X_test), atol=1e-4)
    assert np.array_equal(label, clf.predict(X_test))


@pytest.mark.parametrize("labels", [np.array([3, 7, 11]), np.array(["cat", "dog", "eel"])])
@pytest.mark.parametrize("zipmap", [True, False, "columns"])
def test_classifier_labels_and_zipmap(labels, zipmap):
    X, X_test, rng = _data(shape=(6, 6, 1))
    y = labels[rng.integers(0, 3, len(X))]
    clf = CNNClassifier([Conv2D(4, 3), Dense(8)], max_iter=3, random_state=0).fit(X, y)
    outputs = _run(export.to_onnx(clf, X[:1], options={"zipmap": zipmap}), X_test)
    expected = clf.predict_proba(X_test)
    if zipmap is True:
        label, proba = outputs
        proba = np.array([[row[c] for c in clf.classes_] for row in proba])
    elif zipmap == "columns":
        label, proba = outputs[0], np.column_stack(outputs[1:])
    else:
        label, proba = outputs
    assert_allclose(proba, expected, atol=1e-4)
    assert label.dtype.kind == clf.classes_.dtype.kind or (
        label.dtype == object and clf.classes_.dtype.kind == "U")
    assert list(label) == list(clf.predict(X_test))


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor(n_outputs):
    X, X_test, rng = _data(shape=(7, 7, 2))
    y = rng.normal(5.0, 3.0, (len(X), n_outputs))
    y = y.ravel() if n_outputs == 1 else y
    reg = CNNRegressor([Conv2D(4, 3, padding="same", stride=2), BatchNorm(), Dense(8)],
                       max_iter=3, random_state=0).fit(X, y)
    (out,) = _run(export.to_onnx(reg, X[:1]), X_test)
    assert out.shape == (len(X_test), n_outputs)
    assert_allclose(out.reshape(reg.predict(X_test).shape), reg.predict(X_test),
                    atol=1e-4, rtol=1e-5)


def test_pipeline_on_flat_rows():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X * 3.0).astype(np.float32)         # MinMaxScaler has something to undo
    pipe = make_pipeline(MinMaxScaler(), CNNClassifier(
        [Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(32)], image_shape=(8, 8),
        max_iter=5, batch_size=32, learning_rate_init=3e-3, random_state=0))
    pipe.fit(X[:1000], y[:1000])
    X_test = X[1500:]
    assert pipe.score(X_test, y[1500:]) > 0.8
    label, proba = _run(export.to_onnx(pipe, X[:1], options={"zipmap": False}), X_test)
    assert_allclose(proba, pipe.predict_proba(X_test), atol=1e-4)
    assert np.array_equal(label, pipe.predict(X_test))


def test_registered_for_skl2onnx_to_onnx():
    import skl2onnx
    X, X_test, rng = _data(shape=(5, 5, 1))
    clf = CNNClassifier([Dense(4)], max_iter=2, random_state=0).fit(
        X.reshape(len(X), -1), rng.integers(0, 2, len(X)))
    flat = X_test.reshape(len(X_test), -1)
    onx = skl2onnx.to_onnx(clf, flat[:1], options={id(clf): {"zipmap": False}})
    _, proba = _run(onx, flat)
    assert_allclose(proba, clf.predict_proba(flat), atol=1e-4)


def test_nocl_gives_class_indices():
    X, X_test, rng = _data(shape=(5, 5, 1))
    labels = np.array(["a", "b", "c"])
    clf = CNNClassifier([Dense(4)], max_iter=2, random_state=0).fit(
        X, labels[rng.integers(0, 3, len(X))])
    label, _ = _run(export.to_onnx(clf, X[:1], options={"zipmap": False, "nocl": True}),
                    X_test)
    assert np.array_equal(clf.classes_[label], clf.predict(X_test))


def test_pickled_model_exports():
    import pickle
    X, X_test, rng = _data(shape=(6, 6, 2))
    clf = CNNClassifier([Conv2D(4, 3), BatchNorm(), Dense(5)], max_iter=2,
                        random_state=0).fit(X, rng.integers(0, 2, len(X)))
    clf = pickle.loads(pickle.dumps(clf))
    _, proba = _run(export.to_onnx(clf, X[:1], options={"zipmap": False}), X_test)
    assert_allclose(proba, clf.predict_proba(X_test), atol=1e-4)


def test_bad_models_are_refused():
    from sklearn.exceptions import NotFittedError
    X, _, rng = _data(shape=(5, 5, 1))
    with pytest.raises(NotFittedError):
        export.to_onnx(CNNClassifier([Dense(4)]), X[:1])
    clf = CNNClassifier([Dense(4)], max_iter=1, random_state=0).fit(
        X, rng.integers(0, 2, len(X)).astype(float))
    with pytest.raises(NotImplementedError, match="ints or strings"):
        export.to_onnx(clf, X[:1])
    with pytest.raises(ValueError, match="5x5x1 images"):
        export.to_onnx(clf, X[:1, :4])
