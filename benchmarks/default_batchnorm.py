"""Does BatchNorm help the default network? Digits, 5-fold CV, the default against the same
network with BatchNorm after each convolution (conv -> BatchNorm -> relu).

    python benchmarks/default_batchnorm.py [--seeds 0,1,2]

Same folds (StratifiedKFold, shuffled, random_state=0) and estimator settings for both;
prints each fold's accuracy, the mean per seed and the fit time.
"""
import argparse
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, cross_validate

from fastcnn import CNNClassifier
from fastcnn.estimators._defaults import default_layers
from fastcnn.layers import Activation, BatchNorm, Conv2D


def with_batchnorm(layers):
    out = []
    for spec in layers:
        if isinstance(spec, Conv2D):
            out += [spec.set_params(activation=None), BatchNorm(), Activation("relu")]
        else:
            out.append(spec)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    nets = {"default": default_layers((8, 8, 1)),
            "default + BatchNorm": with_batchnorm(default_layers((8, 8, 1)))}
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, layers in nets.items():
            start = time.perf_counter()
            result = cross_validate(CNNClassifier(layers=layers, image_shape=(8, 8),
                                                  random_state=seed), X, y, cv=cv)
            scores = result["test_score"]
            print(f"seed {seed}  {name:20s} mean {scores.mean():.4f}  folds "
                  + " ".join(f"{s:.4f}" for s in scores)
                  + f"  ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
