"""``python -m fastcnn.demo``: a CNN beside scikit-learn's MLP and SVM on the digits data.

Five-fold stratified cross-validation (shuffled, ``random_state=0``) on scikit-learn's
8x8 digits, pixel values scaled to [0, 1] by dividing by 16. Prints one row per model:
mean and standard deviation of the test accuracy, and the mean fit time per fold.
"""
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from . import CNNClassifier, config_summary


def models():
    """The models compared, by the name the table shows."""
    return {
        "CNNClassifier(image_shape=(8, 8))": CNNClassifier(image_shape=(8, 8), random_state=0),
        "MLPClassifier()": MLPClassifier(random_state=0),
        "SVC()": SVC(),
    }


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    print(config_summary())
    print(f"digits: {X.shape[0]} images of 8x8, {len(set(y))} classes; "
          "5-fold stratified cross-validation (shuffle, random_state=0)\n")
    header = f"{'model':<36} {'accuracy':>9} {'std':>7} {'fit time / fold':>16}"
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for name, model in models().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = cross_validate(model, X, y, cv=cv)
        scores = result["test_score"]
        print(f"{name:<36} {scores.mean():>9.4f} {scores.std():>7.4f} "
              f"{result['fit_time'].mean():>14.2f} s", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
