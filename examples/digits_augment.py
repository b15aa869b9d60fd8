"""Data augmentation on scikit-learn's digits, with the model summary and learning curves.

Trains the default CNN on 500 of the 8x8 digits, without and with random shifts and small
rotations (``fastcnn.augment.Augment``; no flips: a mirrored digit is another symbol).
Each model is scored on the held-out digits as they are, and on a copy of them moved by up
to a pixel and turned by up to 10 degrees: the augmented models keep their accuracy there,
the plain one loses about half of it. Prints the network's summary and saves the learning
curves side by side as ``digits_augment_learning_curves.png``.

Run it as ``python examples/digits_augment.py [OUTPUT_DIR]`` (default: the current
directory). Needs ``pip install "fastcnn[plot]"``; takes well under a minute.
"""
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastcnn import CNNClassifier
from fastcnn.augment import Augment
from fastcnn.plotting import plot_learning_curve


def main(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8, 1)  # grayscale images in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=500, stratify=y,
                                                        random_state=0)
    # The test digits moved and turned a little: Augment.apply does that to any batch.
    X_moved = Augment(shift=1, rotation=10).apply(X_test, random_state=1)

    models = {
        "no augmentation": CNNClassifier(max_iter=40, random_state=0),
        "shift=1": CNNClassifier(max_iter=40, augment=Augment(shift=1), random_state=0),
        "shift=1, rotation=10": CNNClassifier(
            max_iter=40, augment=Augment(shift=1, rotation=10), random_state=0),
    }
    print(f"{'':>22}  test accuracy  on moved digits")
    for name, model in models.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        print(f"{name:>22}  {model.score(X_test, y_test):13.3f}  "
              f"{model.score(X_moved, y_test):15.3f}   ({time.perf_counter() - start:.1f} s)")
    print()
    print(models["shift=1, rotation=10"].summary())

    fig, axes = plt.subplots(1, len(models), figsize=(15, 4), sharey=True,
                             layout="constrained")
    for ax, (name, model) in zip(axes, models.items()):
        plot_learning_curve(model, ax=ax)
        ax.set_title(name)
    path = out_dir / "digits_augment_learning_curves.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
