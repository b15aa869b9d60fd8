"""Hyper-parameter search on a Dask cluster: GridSearchCV under joblib's "dask" backend.

A LocalCluster of two worker processes on the loopback interface stands in for a real
cluster: the estimators are pickled to the workers, fitted there, and their scores come
back. The search must find what the same search finds in this process.
"""
import pickle
import warnings

import numpy as np
import pytest
from dask.distributed import get_task_stream
from joblib import parallel_backend
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from fastcnn import CNNClassifier
from fastcnn.augment import Augment
from fastcnn.layers import Conv2D, Dense

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:100] / 16.0).astype(np.float32), y[:100]


def _search():
    # One kernel thread: what is tested is the distribution of the fits (and results do
    # not depend on the thread count anyway).
    clf = CNNClassifier([Conv2D(4, 3), Dense(16)], image_shape=(8, 8), max_iter=2,
                        batch_size=25, random_state=0, n_threads=1)
    grid = {"learning_rate_init": [1e-3, 1e-2],
            "augment": [None, Augment(shift=1)]}
    return GridSearchCV(clf, grid, cv=2)


def test_grid_search_on_dask_matches_local_search(dask_client, digits):
    X, y = digits
    local = _search().set_params(n_jobs=1).fit(X, y)
    with get_task_stream(dask_client) as tasks, parallel_backend("dask"):
        distributed = _search().set_params(n_jobs=-1).fit(X, y)

    # The fits really ran on the workers, on both of them.
    workers = {task["worker"] for task in tasks.data}
    assert len(workers) == 2, workers
    assert distributed.best_params_ == local.best_params_
    assert_array_equal(distributed.cv_results_["mean_test_score"],
                       local.cv_results_["mean_test_score"])
    assert_array_equal(distributed.predict(X), local.predict(X))


def test_fitted_model_pickles_and_predicts_on_a_worker(dask_client, digits):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = CNNClassifier([Conv2D(4, 3), Dense(16)], image_shape=(8, 8), max_iter=2,
                              random_state=0, n_threads=1).fit(X, y)
    # Fitted here, predicted in another process from the pickle; then fitted there too.
    remote = dask_client.submit(model.predict, X).result(timeout=30)
    assert_array_equal(remote, model.predict(X))
    refit = dask_client.submit(lambda m: m.fit(X, y), pickle.loads(pickle.dumps(model)))
    assert_array_equal(refit.result(timeout=30).predict(X), model.predict(X))
