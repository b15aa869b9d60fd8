"""The compiled inference program: the whole prediction pass in one call, with the bits of
the plan's steps run one by one from Python."""
import threading

import numpy as np
import pytest
from fastcnn._ext._conv import OP_KINDS, Program
from test_inference_plan import perturbed

from fastcnn.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    L2Pool2D,
    MaxPool2D,
    Residual,
)
from fastcnn.nn.inference import InferencePlan
from fastcnn.nn.network import Network
from fastcnn.ops.threads import grain, parallel_grain

# networks whose every step the program runs: (layers, input shape)
COMPILED = {
    # a single-channel first layer with its max pooling, LeNet's shape of thing
    "single channel": ([Conv2D(6, 5), MaxPool2D(), Conv2D(16, 5), MaxPool2D(), Dense(20),
                        Dense(3, activation=None)], (20, 21, 1)),
    # 'same' padding, folded BatchNorm and relu, stride 2, dilation, odd sizes, avg pooling
    "geometry": ([Conv2D(5, 3, padding="same", activation=None), BatchNorm(),
                  Activation("relu"), Conv2D(7, 3, stride=2, padding="same"),
                  Conv2D(6, 3, dilation=2, activation=None), AvgPool2D(),
                  Conv2D(9, 1), GlobalAvgPool2D(), Dense(4, activation=None)], (17, 15, 3)),
    # pooled direct convolutions with max and average, and one not pooled
    "pooled": ([Conv2D(8, 3, padding="same"), MaxPool2D(), Conv2D(6, 3, activation=None),
                BatchNorm(), Activation("relu"), AvgPool2D(), Conv2D(5, 2),
                Dense(3, activation=None)], (13, 14, 2)),
    # Winograd 3x3 pooled and not, 5x5 pooled and not (where the plan uses it)
    "winograd": ([Conv2D(32, 3, padding="same"), Conv2D(32, 3, padding="same"), MaxPool2D(),
                  Conv2D(16, 5, padding="same"), AvgPool2D(), Conv2D(16, 5, padding="same"),
                  GlobalAvgPool2D(), Dense(3, activation=None)], (12, 12, 32)),
    # dense layers: packed and walked block by block (big), read in place in input-channel
    # slices (big, whole blocks of outputs), packed, and a linear output layer
    "dense": ([Dense(500), Dense(768), Dense(37), Dense(5, activation=None)], (16, 16, 4)),
    # a single-channel first layer without pooling, overlapping and uneven poolings
    "pools": ([Conv2D(5, 3, padding="same"), Conv2D(6, 3, activation=None), BatchNorm(),
               MaxPool2D(3, stride=2), Conv2D(4, 3, padding="same"), AvgPool2D(2, stride=1),
               MaxPool2D((2, 1)), Dense(3, activation=None)], (15, 14, 1)),
    # a big 3x3 convolution whose weights are read in place
    "big weights": ([Conv2D(256, 3), GlobalAvgPool2D(), Dense(3, activation=None)],
                    (5, 6, 128)),
}
# networks with a step the program does not run: the plan runs them step by step
STEP_BY_STEP = {
    "global max": [Conv2D(4, 3), GlobalMaxPool2D(), Dense(3, activation=None)],
    "residual": [Conv2D(4, 3, padding="same"),
                 Residual([Conv2D(4, 3, padding="same")]), Dense(3, activation=None)],
    "depthwise": [DepthwiseConv2D(3), Dense(3, activation=None)],
    "sigmoid dense": [Conv2D(4, 3), Dense(6, activation="sigmoid"), Dense(3)],
    "tanh conv": [Conv2D(4, 3, activation="tanh"), Dense(3, activation=None)],
    "l2 pool": [Conv2D(4, 3), L2Pool2D(2), Dense(3, activation=None)],
}


def _net(specs, shape, dtype):
    net = Network(specs, shape, dtype=dtype).initialize(np.random.RandomState(0))
    return perturbed(net, np.random.default_rng(1), scale=0.1)


def _step_by_step(plan, x, n_threads):
    """The plan's output with its steps run one by one, from Python."""
    program, plan.program = plan.program, None
    try:
        return plan.run(x, np.empty((len(x), plan.output_width), plan.dtype), n_threads)
    finally:
        plan.program = program


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(COMPILED))
@pytest.mark.parametrize("winograd", [False, True])
def test_program_is_bitwise_the_steps(name, dtype, winograd):
    specs, shape = COMPILED[name]
    net = _net(specs, shape, dtype)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9,) + shape).astype(dtype)
    x[0, 1, 2, 0] = np.nan
    x[1, 0, 0, 0] = np.inf
    plan = InferencePlan(net, winograd=winograd)
    assert plan.program is not None
    expected = net.forward(x)
    for chunk, flat_chunk in ((2, 4), (3, 3), (16, 64)):
        plan.chunk, plan.flat_chunk = chunk, flat_chunk
        with parallel_grain(1):
            for n_threads in (1, 2, 3):
                for n in (1, 5, 9):
                    out = np.full((n, plan.output_width), -7.0, dtype)
                    plan.run(x[:n], out, n_threads)
                    np.testing.assert_array_equal(out, _step_by_step(plan, x[:n], n_threads))
                    if not winograd:
                        np.testing.assert_array_equal(out, expected[:n])
    if winograd:    # the Winograd convolutions to rounding
        tolerance = 2e-5 if dtype == "float32" else 1e-12
        rows = np.isfinite(expected).all(axis=1)
        np.testing.assert_allclose(out[rows], expected[rows], rtol=tolerance,
                                   atol=tolerance * np.abs(expected[rows]).max())


def test_the_compiled_networks_use_every_kind_of_op():
    kinds = set()
    for specs, shape in COMPILED.values():
        for winograd in (False, True):
            plan = InferencePlan(_net(specs, shape, "float32"), winograd=winograd)
            kinds.update(step.op["kind"] for step in plan.image_steps + plan.flat_steps)
    assert kinds == set(OP_KINDS)


@pytest.mark.parametrize("name", list(STEP_BY_STEP))
def test_other_steps_run_one_by_one(name):
    net = _net(STEP_BY_STEP[name], (9, 8, 3), "float32")
    x = np.random.default_rng(3).standard_normal((7, 9, 8, 3)).astype(np.float32)
    plan = InferencePlan(net, winograd=False)
    assert plan.program is None
    plan.chunk, plan.flat_chunk = 2, 4
    out = np.empty((7, plan.output_width), np.float32)
    np.testing.assert_array_equal(plan.run(x, out, 2), net.forward(x))


def test_the_default_network_runs_as_one_program():
    from scipy.special import softmax
    from sklearn.datasets import load_digits

    from fastcnn import CNNClassifier
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8, 1)
    clf = CNNClassifier(max_iter=1, random_state=0).fit(X[:200], y[:200])
    plan = clf.network_.prediction_plan()
    assert plan.program is not None
    x = np.ascontiguousarray(X[200:300], dtype=plan.dtype)
    out = np.empty((100, 10), plan.dtype)
    np.testing.assert_array_equal(plan.run(x, out, 2), _step_by_step(plan, x, 2))
    np.testing.assert_allclose(clf.predict_proba(X[200:300]),
                               softmax(clf.network_.forward(x), axis=1), rtol=1e-5, atol=1e-6)


def test_features_and_a_network_of_dense_layers_only():
    net = _net(COMPILED["dense"][0], (16, 16, 4), "float32")
    x = np.random.default_rng(4).standard_normal((6, 16, 16, 4)).astype(np.float32)
    for features in (False, True):
        plan = InferencePlan(net, features)
        assert plan.program is not None and not plan.image_steps
        out = np.empty((6, plan.output_width), np.float32)
        plan.run(x, out, 2)
        run = net.features if features else net.forward
        np.testing.assert_array_equal(out, run(x))


def test_concurrent_runs_give_the_serial_results():
    specs, shape = COMPILED["pooled"]
    net = _net(specs, shape, "float32")
    x = np.random.default_rng(5).standard_normal((40,) + shape).astype(np.float32)
    plan = InferencePlan(net)
    plan.chunk, plan.flat_chunk = 4, 8
    serial = plan.run(x, np.empty((40, 3), np.float32), 1).copy()
    results = [None] * 4

    def predict(i):
        out = np.empty((40, 3), np.float32)
        for _ in range(20):
            plan.run(x, out, 1)
        results[i] = out

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in results:
        np.testing.assert_array_equal(out, serial)


def _program_and_buffer():
    specs, shape = COMPILED["pooled"]
    plan = InferencePlan(_net(specs, shape, "float32"))
    ops = [step.op for step in plan.image_steps + plan.flat_steps]
    program = Program(ops, len(plan.image_steps), np.dtype(np.float32))
    return plan, ops, program, np.empty(program.buffer_len(2, 4), np.float32)


def test_program_refuses_what_it_cannot_run():
    plan, ops, program, buffer = _program_and_buffer()
    n_in = plan.image_steps[0].op["in_len"]
    x, out = np.zeros((3, n_in), np.float32), np.zeros((3, 3), np.float32)
    program.run(x, out, buffer, 2, 4, 1, grain())
    with pytest.raises(ValueError, match="wrong size"):
        program.run(x[:, :-1].copy(), out, buffer, 2, 4, 1, grain())
    with pytest.raises(ValueError, match="wrong size"):
        program.run(x, out[:2], buffer, 2, 4, 1, grain())
    with pytest.raises(ValueError, match="wrong size"):
        program.run(x, out, buffer[:-1], 2, 4, 1, grain())
    with pytest.raises(ValueError, match="runs float32"):
        program.run(x.astype(np.float64), out.astype(np.float64), buffer.astype(np.float64),
                    2, 4, 1, grain())
    with pytest.raises(ValueError, match="at least"):
        program.run(x, out, buffer, 0, 4, 1, grain())
    with pytest.raises(ValueError, match="at least"):
        program.run(x, out, buffer, 4, 2, 1, grain())
    # an empty batch writes nothing
    program.run(x[:0], out[:0], buffer, 2, 4, 1, grain())


def test_program_refuses_ops_that_do_not_fit():
    plan, ops, _, _ = _program_and_buffer()
    f32 = np.dtype(np.float32)
    with pytest.raises(ValueError, match="image ops"):
        Program(ops, len(ops) + 1, f32)
    with pytest.raises(ValueError, match="image ops"):
        Program([], 0, f32)
    with pytest.raises(ValueError, match="float32 or float64"):
        Program(ops, 1, np.dtype(np.float16))
    with pytest.raises(ValueError, match="C-contiguous float64"):
        Program(ops, 1, np.dtype(np.float64))
    with pytest.raises(ValueError, match="kind"):
        Program([dict(ops[0], kind="fft")] + ops[1:], 1, f32)
    with pytest.raises(ValueError, match="no kernel takes"):
        Program([dict(ops[0], colour=3)] + ops[1:], 1, f32)
    with pytest.raises(ValueError, match="reads"):
        Program(ops[1:] + ops[:1], 1, f32)
