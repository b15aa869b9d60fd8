"""summary(): the table of layers, output shapes, parameter counts and FLOPs per image."""
import pickle
import re

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from fastcnn import CNNClassifier, CNNRegressor
from fastcnn.layers import AvgPool2D, Conv2D, Dense, Dropout, GlobalAvgPool2D, MaxPool2D
from fastcnn.nn.network import Network

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _rows(table):
    """{layer number: (output shape, parameters, FLOPs)} parsed from the table."""
    rows = {}
    for line in table.splitlines():
        match = re.match(r"^(\d+)\s+.*?\s{2,}(\S+)\s+([\d,]+)\s+([\d,]+)$", line)
        if match:
            number, shape, params, flops = match.groups()
            rows[int(number)] = (shape, int(params.replace(",", "")),
                                 int(flops.replace(",", "")))
    return rows


def _totals(table):
    match = re.search(r"Total: ([\d,]+) parameters .* ([\d,]+) FLOPs per image", table)
    return tuple(int(g.replace(",", "")) for g in match.groups())


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor])
def test_summary_needs_a_fitted_estimator(Estimator):
    with pytest.raises(NotFittedError):
        Estimator().summary()


def test_summary_counts_parameters_and_flops():
    rng = np.random.RandomState(0)
    X = rng.rand(20, 8, 8).astype(np.float32)
    y = np.arange(20) % 3
    clf = CNNClassifier([Conv2D(4, 3), Dropout(0.1), Dense(16)], max_iter=1,
                        random_state=0).fit(X, y)
    table = clf.summary()
    assert isinstance(table, str)
    assert table.splitlines()[0] == "CNNClassifier: 8x8x1 images -> 3 classes, float32"
    assert "Input" in table and "8x8x1" in table
    assert "Conv2D(filters=4, kernel_size=3)" in table
    assert "Dense(units=3, activation='linear')  (output)" in table
    rows = _rows(table)
    # conv: 6x6 outputs x 4 filters x 3x3x1 taps, 2 FLOPs per multiply-add
    assert rows[1] == ("6x6x4", 4 * 9 + 4, 2 * 36 * 4 * 9)
    assert rows[2] == ("6x6x4", 0, 0)
    assert rows[3] == ("16", 144 * 16 + 16, 2 * 144 * 16)
    assert rows[4] == ("3", 16 * 3 + 3, 2 * 16 * 3)
    assert _totals(table) == (clf.network_.n_params, sum(r[2] for r in rows.values()))
    assert "FLOPs/image" in table and "Parameters" in table and "Output shape" in table


def test_summary_pooling_strides_and_padding():
    net = Network([Conv2D(3, 3, stride=2, padding="same"), MaxPool2D(2),
                   Conv2D(5, (1, 2), dilation=(2, 1)), AvgPool2D((2, 1), stride=1),
                   GlobalAvgPool2D(), Dense(2, "linear")], (7, 7, 2))
    shapes = [layer.output_shape for layer in net.layers]
    assert shapes == [(4, 4, 3), (2, 2, 3), (2, 1, 5), (1, 1, 5), (5,), (2,)]
    flops = [layer.flops() for layer in net.layers]
    assert flops == [
        2 * 16 * 3 * 9 * 2,     # 'same' stride 2: 4x4 outputs, 3 filters, 3x3x2 taps
        2 * 2 * 3 * 4,          # one per element of each 2x2 window
        2 * 2 * 1 * 5 * 2 * 3,  # dilation changes where taps read, not how many
        1 * 1 * 5 * 2,
        5,
        2 * 5 * 2,
    ]
    table = net.summary()
    assert _totals(table) == (net.n_params, sum(flops))
    assert [v[2] for _, v in sorted(_rows(table).items())] == flops


def test_summary_of_a_regressor_and_after_pickling():
    rng = np.random.RandomState(0)
    X = rng.rand(16, 6, 6, 3).astype(np.float32)
    reg = CNNRegressor([Conv2D(2, 3), GlobalAvgPool2D()], max_iter=1, dtype="float64",
                       random_state=0).fit(X, X.mean(axis=(1, 2)))
    table = reg.summary()
    assert table.splitlines()[0] == "CNNRegressor: 6x6x3 images -> 3 outputs, float64"
    assert "as float64" in table
    assert pickle.loads(pickle.dumps(reg)).summary() == table
    one = CNNRegressor([Conv2D(2, 3), GlobalAvgPool2D()], max_iter=1, random_state=0).fit(
        X, X.mean(axis=(1, 2, 3)))
    assert "-> 1 output," in one.summary()
