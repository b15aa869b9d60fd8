"""dask-ml: Incremental trains through partial_fit block by block, ParallelPostFit predicts
blockwise, on a LocalCluster of two worker processes (loopback only).

dask-ml passes 2-D blocks only: images go in flattened, with ``image_shape``. Dask arrays
of images (3-D/4-D) are rejected with a message that says so.
"""

import numpy as np
import pytest

dask_ml = pytest.importorskip("dask_ml")
da = pytest.importorskip("dask.array")
from dask_ml.wrappers import Incremental, ParallelPostFit  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from fastcnn import CNNClassifier, CNNRegressor  # noqa: E402
from fastcnn.layers import Conv2D, Dense  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CHUNK = 100


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16.0).astype(np.float32), y[:400]


def model(**params):
    return CNNClassifier([Conv2D(4, 3), Dense(16)], image_shape=(8, 8), random_state=0,
                         learning_rate_init=3e-3, n_threads=1, **params)


def test_incremental_trains_block_by_block(dask_client, digits):
    X, y = digits
    dX = da.from_array(X, chunks=(CHUNK, 64))
    dy = da.from_array(y, chunks=CHUNK)
    inc = Incremental(model(), shuffle_blocks=False).fit(dX, dy, classes=np.arange(10))
    # one partial_fit (one pass) per block, in block order: as the same calls made here
    local = model()
    for start in range(0, len(y), CHUNK):
        local.partial_fit(X[start:start + CHUNK], y[start:start + CHUNK],
                          classes=np.arange(10))
    assert inc.estimator_.n_iter_ == len(y) // CHUNK
    assert inc.estimator_.t_ == len(y)
    np.testing.assert_array_equal(inc.estimator_.predict_proba(X), local.predict_proba(X))
    # and the wrapper predicts blockwise too
    assert inc.score(dX, dy) == pytest.approx(local.score(X, y))


def test_parallel_post_fit_predicts_blockwise(dask_client, digits):
    X, y = digits
    fitted = model(max_iter=3).fit(X, y)
    wrapped = ParallelPostFit(fitted)
    dX = da.from_array(X, chunks=(CHUNK, 64))
    np.testing.assert_array_equal(wrapped.predict(dX).compute(), fitted.predict(X))
    np.testing.assert_array_equal(wrapped.predict_proba(dX).compute(),
                                  fitted.predict_proba(X))
    reg = CNNRegressor([Dense(8)], image_shape=(8, 8), max_iter=2, random_state=0,
                       n_threads=1).fit(X, y * 100.0)
    np.testing.assert_array_equal(ParallelPostFit(reg).predict(dX).compute(), reg.predict(X))


def test_image_shaped_dask_arrays_rejected(dask_client, digits):
    X, y = digits
    images = da.from_array(X.reshape(-1, 8, 8, 1), chunks=(CHUNK, 8, 8, 1))
    dy = da.from_array(y, chunks=CHUNK)
    with pytest.raises(ValueError, match=r"dask-ml passes only 2-D arrays on block by "
                                         r"block.*set image_shape"):
        Incremental(model()).fit(images, dy, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"X is a 4-D dask array\. dask-ml passes only 2-D"):
        model().fit(images, y)
    with pytest.raises(ValueError, match=r"X is a 3-D dask array"):
        model(max_iter=1).fit(X, y).predict(images[..., 0])


def test_dask_sample_weight_explained(dask_client, digits):
    X, y = digits
    dX = da.from_array(X, chunks=(CHUNK, 64))
    dy = da.from_array(y, chunks=CHUNK)
    dw = da.ones(len(y), chunks=CHUNK)
    with pytest.raises(ValueError, match="sample_weight is a dask collection.*not split by "
                                         "block"):
        Incremental(model()).fit(dX, dy, classes=np.arange(10), sample_weight=dw)
