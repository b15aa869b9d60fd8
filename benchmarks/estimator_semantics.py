"""Sample weights, class weights and target scaling, measured on scikit-learn's digits.

Prints three experiments (default estimators, fixed seeds, a fixed train/test split):

1. Zero weights: labels corrupted on a block of training images. The model trained on the
   noisy labels, the model with weight 0 on the corrupted block and the model trained with
   that block dropped: test accuracy of each, and whether the last two predict the same.
2. A rare class: class 1 cut down to 8 of the training images. Recall of class 1 on the
   test images without and with ``class_weight="balanced"``.
3. Regression targets of any scale: the mean pixel of each image (a linear function of
   the input, std about 0.03), the same moved to around 5000 with spread 1000, and two
   outputs of scales 0.03 and 3 in one fit. Test R^2 of CNNRegressor on each, beside the
   same estimator inside a TransformedTargetRegressor(StandardScaler()).

    python benchmarks/estimator_semantics.py
"""
import argparse
import platform
import time
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastcnn import CNNClassifier, CNNRegressor


def digits_split(seed):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def zero_weights(seed, corrupt_fraction):
    X_train, X_test, y_train, y_test = digits_split(seed)
    rng = np.random.RandomState(seed)
    n_bad = int(corrupt_fraction * len(y_train))
    y_noisy = y_train.copy()
    # a block of samples whose labels are replaced by random wrong ones
    y_noisy[:n_bad] = (y_train[:n_bad] + rng.randint(1, 10, size=n_bad)) % 10
    weights = np.ones(len(y_train))
    weights[:n_bad] = 0.0
    noisy = CNNClassifier(random_state=seed).fit(X_train, y_noisy)
    weighted = CNNClassifier(random_state=seed).fit(X_train, y_noisy, sample_weight=weights)
    dropped = CNNClassifier(random_state=seed).fit(X_train[n_bad:], y_train[n_bad:])
    same = np.array_equal(weighted.predict_proba(X_test), dropped.predict_proba(X_test))
    print(f"1. zero weights ({n_bad} of {len(y_train)} training labels corrupted):")
    for name, model in (("noisy labels, all weights 1", noisy),
                        ("weight 0 on the corrupted block", weighted),
                        ("corrupted block dropped", dropped)):
        print(f"   {name:34s} test accuracy {accuracy_score(y_test, model.predict(X_test)):.4f}")
    print(f"   weighted and dropped models predict identical probabilities: {same}")


def rare_class(seed, n_rare, rare_label=1):
    X_train, X_test, y_train, y_test = digits_split(seed)
    rng = np.random.RandomState(seed)
    rare = np.flatnonzero(y_train == rare_label)
    keep = np.concatenate([np.flatnonzero(y_train != rare_label),
                           rng.choice(rare, n_rare, replace=False)])
    X_train, y_train = X_train[keep], y_train[keep]
    print(f"2. rare class: {n_rare} images of class {rare_label} among {len(y_train)} "
          "training images; recall on the test images:")
    for class_weight in (None, "balanced"):
        model = CNNClassifier(random_state=seed, class_weight=class_weight)
        model.fit(X_train, y_train)
        pred = model.predict(X_test)
        recall = recall_score(y_test, pred, labels=[rare_label], average=None)[0]
        print(f"   class_weight={class_weight!r:11s} recall {recall:.3f}, "
              f"accuracy {accuracy_score(y_test, pred):.4f}")


def regression(seed):
    X_train, X_test, _, _ = digits_split(seed)
    mean_pixel = lambda X: X.mean(axis=(1, 2))  # noqa: E731
    top_rows = lambda X: X[:, :4].sum(axis=(1, 2))  # noqa: E731
    targets = {
        "mean pixel (std ~0.03)": mean_pixel,
        "5000 + 1000 * standardised mean pixel": lambda X: 5000 + 1000 * (
            mean_pixel(X) - mean_pixel(X_train).mean()) / mean_pixel(X_train).std(),
        "two outputs, std ~0.03 and ~3": lambda X: np.column_stack(
            [mean_pixel(X), 1.5 * top_rows(X)]),
    }
    print("3. regression, test R^2 (per output where there are two):")
    for name, target in targets.items():
        y_train, y_test = target(X_train), target(X_test)
        spread = np.atleast_1d(y_train.std(axis=0))
        plain = CNNRegressor(random_state=seed).fit(X_train, y_train)
        scaled = TransformedTargetRegressor(CNNRegressor(random_state=seed),
                                            transformer=StandardScaler())
        scaled.fit(X_train, y_train)
        r2 = [r2_score(y_test, m.predict(X_test), multioutput="raw_values")
              for m in (plain, scaled)]
        print(f"   {name} (std {', '.join(f'{s:.3g}' for s in spread)}):")
        print(f"      CNNRegressor                       R^2 {_fmt(r2[0])}")
        print(f"      TransformedTargetRegressor(scaler) R^2 {_fmt(r2[1])}")
        print(f"      target_mean_ {_fmt(plain.target_mean_)}, target_scale_ "
              f"{_fmt(plain.target_scale_)}, final loss_ {plain.loss_:.4f} "
              "(standardised units)")


def _fmt(values):
    return ", ".join(f"{v:.4f}" for v in np.atleast_1d(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corrupt-fraction", type=float, default=0.3)
    parser.add_argument("--n-rare", type=int, default=8)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"seed {args.seed}")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        zero_weights(args.seed, args.corrupt_fraction)
        rare_class(args.seed, args.n_rare)
        regression(args.seed)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
