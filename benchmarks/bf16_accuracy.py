"""Mixed precision's accuracy: digits, 5-fold CV, the default network trained with
dtype="float32" and with dtype="bfloat16", the same folds and settings.

    python benchmarks/bf16_accuracy.py [--seeds 0,1,2]

Prints each fold's accuracy, the mean per seed and dtype, the bf16 - float32 difference
of the means per seed and over all seeds, and the fit times.
"""
import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_validate

from fastcnn import CNNClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    from fastcnn.ops import _bf16

    if not _bf16.available():
        sys.exit("this CPU has no AVX512_BF16: bfloat16 cannot be trained here")
    warnings.simplefilter("ignore", ConvergenceWarning)   # the default's fixed max_iter
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    means = {"float32": [], "bfloat16": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        for dtype in means:
            start = time.perf_counter()
            result = cross_validate(CNNClassifier(image_shape=(8, 8), dtype=dtype,
                                                  random_state=seed), X, y, cv=cv)
            scores = result["test_score"]
            means[dtype].append(scores.mean())
            print(f"seed {seed}  {dtype:9s} mean {scores.mean():.4f}  folds "
                  + " ".join(f"{s:.4f}" for s in scores)
                  + f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        diff = means["bfloat16"][-1] - means["float32"][-1]
        print(f"seed {seed}  bfloat16 - float32: {diff:+.4f}")
    diff = np.mean(means["bfloat16"]) - np.mean(means["float32"])
    print(f"over {len(means['float32'])} seeds: float32 {np.mean(means['float32']):.4f}, "
          f"bfloat16 {np.mean(means['bfloat16']):.4f}, difference {diff:+.4f}")


if __name__ == "__main__":
    main()
