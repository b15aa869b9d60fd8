"""scikit-learn's estimator checks, every one of them, on both estimators.

No check is marked as an expected failure: the estimators declare their tags honestly
(transformers that preserve their own dtype, multi-output regression) and pass the rest.
"""
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastcnn import CNNClassifier, CNNRegressor

# Settings for single checks, as scikit-learn gives its own estimators for some checks
# (MLPClassifier runs the sample-weight equivalence check with solver="lbfgs").
# That check fits 15 samples, one batch, with integer weights and again with the samples
# repeated: the same gradients, summed in another order. In float32 that order moves the
# last bits (about 3e-7 relative after 35 epochs, over the check's rtol of 1e-7), so the
# check runs in float64, where the two fits agree to its tolerance.
CHECK_PARAMS = {
    "check_sample_weight_equivalence_on_dense_data": {"dtype": "float64"},
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([CNNClassifier(), CNNRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    params = CHECK_PARAMS.get(check.func.__name__, {})
    check(clone(estimator).set_params(**params) if params else estimator)
