"""From a folder of images to a tuned CNN and pictures of what it learned.

1. Writes a small synthetic image folder (one sub-folder per class) with Pillow in a
   temporary directory: horizontal stripes, vertical stripes and checkerboards, with noise.
2. Loads it with ``fastcnn.datasets.load_image_folder``.
3. Tunes a ``CNNClassifier`` with ``GridSearchCV``.
4. Saves the learning curve, the first layer's filters and one image's feature maps as PNGs.

Run it as ``python examples/image_folder_search.py [OUTPUT_DIR]`` (default: the current
directory). Needs ``pip install "fastcnn[images,plot]"``; takes well under a minute.
"""
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split

from fastcnn import CNNClassifier
from fastcnn.datasets import load_image_folder
from fastcnn.layers import Conv2D, Dense, MaxPool2D
from fastcnn.plotting import plot_feature_maps, plot_filters, plot_learning_curve


def write_image_folder(root, n_per_class=30, size=16, seed=0):
    """root/<class>/<i>.png: three classes of noisy 16x16 RGB patterns."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    for name in ("checkerboard", "horizontal", "vertical"):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            period = rng.integers(3, 6)
            phase = rng.integers(0, period)
            if name == "horizontal":
                pattern = (rows + phase) // period % 2
            elif name == "vertical":
                pattern = (cols + phase) // period % 2
            else:
                pattern = ((rows + phase) // period + (cols + phase) // period) % 2
            colour = rng.uniform(0.4, 1.0, size=3)
            pixels = pattern[:, :, None] * colour + rng.normal(0, 0.1, (size, size, 3))
            pixels = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")


def main(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "patterns"
        write_image_folder(root)
        X, y, class_names = load_image_folder(root, image_size=(16, 16), color_mode="rgb")
    print(f"loaded {X.shape[0]} images of shape {X.shape[1:]}, classes {class_names}")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)

    clf = CNNClassifier(max_iter=15, batch_size=16, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=5, random_state=0)
    grid = {
        "learning_rate_init": [1e-3, 3e-3],
        "layers": [
            [Conv2D(8, 3, padding="same"), MaxPool2D(2), Dense(16)],
            [Conv2D(8, 5, padding="same"), MaxPool2D(2), Conv2D(16, 3), Dense(16)],
        ],
    }
    search = GridSearchCV(clf, grid, cv=3, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_train, y_train)
    print(f"best parameters: {search.best_params_}")
    print(f"cross-validated accuracy {search.best_score_:.3f}, "
          f"test accuracy {search.score(X_test, y_test):.3f}")
    best = search.best_estimator_
    print(best.summary())

    paths = []
    for name, draw in [
        ("learning_curve", lambda ax: plot_learning_curve(best, ax=ax)),
        ("filters", lambda ax: plot_filters(best, layer=0, ax=ax)),
        ("feature_maps", lambda ax: plot_feature_maps(best, X_test[0], layer=0, ax=ax)),
    ]:
        fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
        draw(ax)
        path = out_dir / f"image_folder_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    print("saved", ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
