"""dtype="bfloat16": mixed-precision training and prediction through the estimators."""
import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import BatchNorm, Conv2D, Dense, MaxPool2D, Residual
from fastcnn.nn import Network
from fastcnn.ops import _bf16

needs_bf16 = pytest.mark.skipif(not _bf16.available(),
                                reason="this CPU has no AVX512_BF16 instructions")

LAYERS = [Conv2D(16, 3, padding="same"), Conv2D(16, 3, padding="same"), MaxPool2D(2),
          Residual([Conv2D(16, 3, padding="same"), BatchNorm()]), Dense(32)]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8, 1)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def _fit(dtype, digits, **kwargs):
    X_train, _, y_train, _ = digits
    params = dict(layers=LAYERS, max_iter=8, random_state=0, n_iter_no_change=100,
                  batch_size=64)
    params.update(kwargs)
    return CNNClassifier(dtype=dtype, **params).fit(X_train, y_train)


@needs_bf16
def test_learning_curve_matches_float32(digits):
    """The same hyper-parameters learn the same: the loss curves agree within noise and
    so do the accuracies."""
    _, X_test, _, y_test = digits
    fp32 = _fit("float32", digits)
    bf16 = _fit("bfloat16", digits)
    curve32, curve16 = np.array(fp32.loss_curve_), np.array(bf16.loss_curve_)
    assert curve16[-1] < 0.25 * curve16[0]   # it learns
    np.testing.assert_allclose(curve16, curve32, rtol=0.15)
    assert abs(bf16.score(X_test, y_test) - fp32.score(X_test, y_test)) <= 0.02
    # and it is not float32 under another name
    assert not np.array_equal(curve16, curve32)


@needs_bf16
def test_winograd_layers_learn_as_float32_does(digits):
    """Layers wide enough for float32 Winograd in mixed precision (forward pass and data
    gradient from 32 channels, weight gradient from 64 inputs: asserted) learn the same
    curve as float32's, with the same bits on 1 and 2 threads."""
    from fastcnn.ops import _winograd

    layers = [Conv2D(32, 3, padding="same"), Conv2D(64, 3, padding="same"),
              Conv2D(64, 3, padding="same"), MaxPool2D(2), Dense(32)]
    fp32 = _fit("float32", digits, layers=layers, max_iter=4)
    bf16 = _fit("bfloat16", digits, layers=layers, max_iter=4, n_threads=1)
    plans = [layer._plan for layer in bf16.network_.layers[:3]]
    assert [p.train_winograd for p in plans] == [False, True, True]
    assert [_winograd.weight_grad_eligible(p) for p in plans] == [False, False, True]
    curve32, curve16 = np.array(fp32.loss_curve_), np.array(bf16.loss_curve_)
    assert curve16[-1] < 0.25 * curve16[0]
    np.testing.assert_allclose(curve16, curve32, rtol=0.15)
    _, X_test, _, y_test = digits
    assert abs(bf16.score(X_test, y_test) - fp32.score(X_test, y_test)) <= 0.02
    two = _fit("bfloat16", digits, layers=layers, max_iter=4, n_threads=2)
    for a, b in zip(bf16.get_weights(), two.get_weights()):
        assert np.array_equal(a, b)


@needs_bf16
def test_storage_and_outputs_are_float32(digits):
    _, X_test, _, _ = digits
    clf = _fit("bfloat16", digits, max_iter=1)
    assert clf.network_.dtype == np.float32 and clf.network_.dtype_name == "bfloat16"
    assert all(w.dtype == np.float32 for w in clf.get_weights())
    proba = clf.predict_proba(X_test)
    assert proba.dtype == np.float64   # as for float32 models
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert clf.transform(X_test).dtype == np.float32
    assert "bfloat16" in clf.summary()


@needs_bf16
def test_bitwise_identical_for_any_thread_count(digits):
    one = _fit("bfloat16", digits, max_iter=2, n_threads=1)
    two = _fit("bfloat16", digits, max_iter=2, n_threads=2)
    for a, b in zip(one.get_weights(), two.get_weights()):
        assert np.array_equal(a, b)
    _, X_test, _, _ = digits
    assert np.array_equal(one.predict_proba(X_test), two.predict_proba(X_test))


@needs_bf16
def test_network_forward_and_backward_are_close_to_float32():
    specs = [Conv2D(24, 3, padding="same"), MaxPool2D(2), Conv2D(40, 3, stride=2),
             Dense(48), Dense(10, activation="linear")]
    rng = np.random.default_rng(0)
    x = rng.random((6, 12, 12, 3), dtype=np.float32)
    nets = {d: Network(specs, (12, 12, 3), d).initialize(0) for d in ("float32", "bfloat16")}
    outs = {d: net.forward(x, training=True) for d, net in nets.items()}
    scale = np.abs(outs["float32"]).max()
    np.testing.assert_allclose(outs["bfloat16"], outs["float32"], atol=0.03 * scale)
    assert not np.array_equal(outs["bfloat16"], outs["float32"])
    dy = rng.standard_normal(outs["float32"].shape).astype(np.float32)
    for d, net in nets.items():
        net.backward(dy)
    # (a relu or a max-pool choice may flip between the two, so compare whole gradients)
    for g16, g32 in zip(nets["bfloat16"].grads, nets["float32"].grads):
        assert np.linalg.norm(g16 - g32) <= 0.05 * np.linalg.norm(g32)


@needs_bf16
def test_persistence_keeps_mixed_precision(digits, tmp_path):
    _, X_test, _, _ = digits
    clf = _fit("bfloat16", digits, max_iter=1)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.network_.dtype_name == "bfloat16"
    assert np.array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    skops = pytest.importorskip("skops.io")
    from fastcnn.persistence import load, save
    save(clf, tmp_path / "bf16.skops")
    again = load(tmp_path / "bf16.skops")
    assert again.network_.dtype_name == "bfloat16"
    assert np.array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    assert skops is not None


@needs_bf16
def test_onnx_export_has_float32_weights(digits):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from fastcnn import export

    _, X_test, _, _ = digits
    clf = _fit("bfloat16", digits, max_iter=2)
    X = X_test.astype(np.float32)
    model = export.to_onnx(clf, X[:1], options={"zipmap": False})
    onnx.checker.check_model(model)
    assert all(init.data_type == onnx.TensorProto.FLOAT
               for init in model.graph.initializer if init.dims and len(init.dims) > 1)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {session.get_inputs()[0].name: X})
    # ONNX Runtime computes in float32 where the model multiplied bf16 operands
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=0.03)
    assert np.mean(labels == clf.predict(X)) >= 0.98


@needs_bf16
def test_regressor_in_bfloat16(digits):
    X_train, X_test, y_train, y_test = digits
    scores, dtypes = {}, {}
    for dtype in ("float32", "bfloat16"):
        reg = CNNRegressor(layers=[Conv2D(16, 3, padding="same"), Dense(32)], dtype=dtype,
                           max_iter=10, random_state=0).fit(X_train, y_train * 100.0)
        scores[dtype] = reg.score(X_test, y_test * 100.0)
        dtypes[dtype] = reg.predict(X_test).dtype
    assert scores["bfloat16"] > 0.8
    assert abs(scores["bfloat16"] - scores["float32"]) < 0.02
    assert dtypes["bfloat16"] == dtypes["float32"]


@needs_bf16
def test_warm_start_keeps_the_first_dtype(digits):
    X_train, _, y_train, _ = digits
    clf = _fit("bfloat16", digits, max_iter=1, warm_start=True)
    clf.set_params(dtype="float32")
    with pytest.raises(ValueError, match="bfloat16"):
        clf.fit(X_train, y_train)


def test_missing_instructions_are_a_clear_error(digits, monkeypatch):
    monkeypatch.setattr(_bf16, "available", lambda: False)
    X_train, _, y_train, _ = digits
    with pytest.raises(RuntimeError, match=r"AVX512_BF16.*dtype='float32'"):
        CNNClassifier(dtype="bfloat16", max_iter=1).fit(X_train[:50], y_train[:50])
    import fastcnn
    assert "bf16 no" in fastcnn.config_summary()


@needs_bf16
def test_a_bf16_model_loaded_without_bf16_predicts_in_float32(digits, monkeypatch, tmp_path):
    """Saved on a CPU with AVX512_BF16, loaded on one without: the model warns, predicts
    on the float32 kernels exactly as a float32 model with its weights does, and refuses
    to train, leaving itself as it was."""
    X_train, X_test, y_train, _ = digits
    clf = _fit("bfloat16", digits, max_iter=2)
    on_bf16 = clf.predict_proba(X_test)
    fp32 = _fit("float32", digits, max_iter=1)
    fp32.set_weights(clf.get_weights())
    saved = pickle.dumps(clf)
    if _has("skops"):
        from fastcnn.persistence import save
        save(clf, tmp_path / "bf16.skops")

    monkeypatch.setattr(_bf16, "available", lambda: False)
    with pytest.warns(UserWarning, match="without the AVX512_BF16.*float32 kernels"):
        loaded = pickle.loads(saved)
    assert loaded.network_.dtype_name == "bfloat16" and not loaded.network_.bf16_kernels
    proba = loaded.predict_proba(X_test)
    np.testing.assert_array_equal(proba, fp32.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), fp32.predict(X_test))
    np.testing.assert_allclose(proba, on_bf16, atol=0.03)
    assert not np.array_equal(proba, on_bf16)   # bf16's products were rounded
    for fit in (lambda: loaded.partial_fit(X_train[:64], y_train[:64]),
                lambda: loaded.set_params(warm_start=True).fit(X_train, y_train)):
        with pytest.raises(RuntimeError, match=r"AVX512_BF16.*dtype='float32'"):
            fit()
        np.testing.assert_array_equal(loaded.predict_proba(X_test), proba)
    if _has("skops"):
        from fastcnn.persistence import load
        with pytest.warns(UserWarning, match="AVX512_BF16"):
            again = load(tmp_path / "bf16.skops")
        np.testing.assert_array_equal(again.predict_proba(X_test), proba)
    # a network pickled on its own, too; training it is refused
    with pytest.warns(UserWarning, match="AVX512_BF16"):
        network = pickle.loads(pickle.dumps(clf.network_))
    with pytest.raises(RuntimeError, match="AVX512_BF16"):
        network.forward(X_test[:4].astype(np.float32), training=True)

    monkeypatch.undo()   # back on a CPU with bf16: the bf16 kernels again, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = pickle.loads(pickle.dumps(loaded))
    assert back.network_.bf16_kernels
    np.testing.assert_array_equal(back.predict_proba(X_test), on_bf16)


def test_a_bf16_marked_model_loads_on_any_cpu_without_bf16(digits, monkeypatch):
    """The same load on any CPU (on one without AVX512_BF16 as it is, elsewhere with the
    instructions hidden): a float32-trained model marked bfloat16, as its pickle would be
    after bf16 training, warns, predicts as the float32 model and refuses to train."""
    X_train, X_test, y_train, _ = digits
    clf = _fit("float32", digits, max_iter=1)
    expected = clf.predict_proba(X_test)
    clf.set_params(dtype="bfloat16")
    clf.network_.dtype_name = "bfloat16"
    saved = pickle.dumps(clf)
    if _bf16.available():
        monkeypatch.setattr(_bf16, "available", lambda: False)
    with pytest.warns(UserWarning, match="without the AVX512_BF16.*float32 kernels"):
        loaded = pickle.loads(saved)
    assert not loaded.network_.bf16_kernels
    np.testing.assert_array_equal(loaded.predict_proba(X_test), expected)
    with pytest.raises(RuntimeError, match=r"AVX512_BF16.*dtype='float32'"):
        loaded.partial_fit(X_train[:64], y_train[:64])
    np.testing.assert_array_equal(loaded.predict_proba(X_test), expected)
    if _has("skl2onnx") and _has("onnxruntime"):   # and it exports with float32 weights
        import onnx
        import onnxruntime as ort

        from fastcnn import export
        X = X_test.astype(np.float32)
        model = export.to_onnx(loaded, X[:1], options={"zipmap": False})
        assert all(init.data_type == onnx.TensorProto.FLOAT
                   for init in model.graph.initializer if len(init.dims) > 1)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        _, proba = session.run(None, {session.get_inputs()[0].name: X})
        np.testing.assert_allclose(proba, expected, atol=1e-5)


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_show_config_reports_bf16(capsys):
    import fastcnn
    fastcnn.show_config()
    out = capsys.readouterr().out
    assert "bfloat16:" in out
    assert ("available" in out) if _bf16.available() else ("unavailable" in out)


def test_networks_pickled_before_mixed_precision_still_load(digits):
    clf = _fit("float32", digits, max_iter=1)
    state = clf.network_.__getstate__()
    del state["dtype_name"]
    network = type(clf.network_).__new__(type(clf.network_))
    network.__setstate__(state)
    assert network.dtype_name == "float32"
