"""scikit-learn's estimator checks, every one of them, on both estimators.

No check is marked as an expected failure: the estimators declare their tags honestly
(transformers that preserve their own dtype, multi-output regression) and pass the rest.
"""
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastcnn import CNNClassifier, CNNRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([CNNClassifier(), CNNRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
