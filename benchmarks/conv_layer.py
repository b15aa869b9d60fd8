"""Single-layer convolution throughput beside numpy's float32 matmul, in one run.

    python benchmarks/conv_layer.py                      # 3x3, 64->64, 32x32, batch 32, 1 thread
    python benchmarks/conv_layer.py --threads 2 --channels 32 --size 16

Prints GFLOP/s (median of the repeats, after a warm-up) of fastcnn's forward, data
gradient and weight gradient, and of single-thread ``numpy.matmul`` in float32 measured in
the same process, with the ratio of each to matmul. On a CPU with AVX512_BF16 it then
measures the same layer in float32 and in bfloat16 mixed precision (``bf16=True``) in
``--rounds`` alternating rounds, and prints every round's bf16 / float32 ratio and their
median for the forward pass and for forward + backward. These machines set
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE to force OpenBLAS's AVX2 kernel; this script removes
them from its own environment before numpy loads, and prints the kernel OpenBLAS reports.
"""
import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402


def median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def blas_description():
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
    return "unknown BLAS"


def matmul_gflops(repeats, size=1024):
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    with threadpool_limits(1, user_api="blas"):
        seconds = median_seconds(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def conv_gflops(args, bf16=False):
    from fastcnn import functional as F

    rng = np.random.default_rng(0)
    n, hw, c, k, r = args.batch, args.size, args.channels, args.out_channels, args.kernel
    x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
    w = rng.standard_normal((r, r, c, k), dtype=np.float32) * 0.1
    y = F.conv2d(x, w, padding="same", n_threads=args.threads)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    opts = dict(padding="same", n_threads=args.threads, bf16=bf16)
    flops = 2.0 * n * y.shape[1] * y.shape[2] * k * r * r * c
    passes = {
        "forward": lambda: F.conv2d(x, w, **opts),
        "backward_data+weights": lambda: F.conv2d_backward(x, w, dy, **opts),
        "backward_weights": lambda: F.conv2d_backward(x, w, dy, need_dx=False, **opts),
    }
    seconds = {name: median_seconds(fn, args.repeats) for name, fn in passes.items()}
    result = {
        "forward": flops / seconds["forward"] / 1e9,
        "backward_weights": flops / seconds["backward_weights"] / 1e9,
        "backward_data": flops / max(seconds["backward_data+weights"]
                                     - seconds["backward_weights"], 1e-12) / 1e9,
        "forward+backward": 3 * flops / (seconds["forward"]
                                         + seconds["backward_data+weights"]) / 1e9,
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--out-channels", type=int, default=64)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating float32 / bfloat16 rounds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    import fastcnn

    print(f"BLAS: {blas_description()}")
    print(f"fastcnn: {fastcnn.config_summary()}")
    print(f"layer: {args.kernel}x{args.kernel} conv, {args.channels}->{args.out_channels}, "
          f"{args.size}x{args.size}, batch {args.batch}, float32, {args.threads} thread(s)")
    mm_before = matmul_gflops(args.repeats)
    conv = conv_gflops(args)
    mm_after = matmul_gflops(args.repeats)
    matmul = float(np.median([mm_before, mm_after]))
    print(f"{'pass':<20}{'GFLOP/s':>10}{'/ matmul':>10}")
    print(f"{'numpy matmul (1 thr)':<20}{matmul:>10.1f}{1.0:>10.2f}")
    for name, gflops in conv.items():
        print(f"{name:<20}{gflops:>10.1f}{gflops / matmul:>10.2f}")
    results = {"args": vars(args), "matmul_gflops": matmul, "conv_gflops": conv}
    from fastcnn.ops import _bf16

    if _bf16.available():
        results["bf16"] = compare_bf16(args)
    else:
        print("no AVX512_BF16 on this CPU: bfloat16 not measured")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def compare_bf16(args):
    """float32 and bf16 rounds alternating (which goes first alternates too); per round
    the bf16 / float32 ratio of forward and of forward + backward GFLOP/s."""
    keys = ("forward", "backward_data", "backward_weights", "forward+backward")
    short = dict(zip(keys, ("fwd", "b-data", "b-wts", "f+b")))
    rounds = []
    print(f"\nbfloat16 mixed precision against float32, {args.rounds} rounds, GFLOP/s")
    print(f"{'round':<7}" + "".join(f"{'fp32 ' + short[k]:>12}{'bf16 ' + short[k]:>12}"
                                    for k in keys))
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {bf16: conv_gflops(args, bf16) for bf16 in order}
        rounds.append({k: got[True][k] / got[False][k] for k in keys})
        print(f"{r:<7}" + "".join(f"{got[False][k]:>12.1f}{got[True][k]:>12.1f}"
                                  for k in keys))
    print(f"{'ratio':<7}" + "".join(f"{'bf16/fp32 ' + short[k]:>24}" for k in keys))
    for r, ratio in enumerate(rounds):
        print(f"{r:<7}" + "".join(f"{ratio[k]:>23.2f}x" for k in keys))
    median = {k: float(np.median([ratio[k] for ratio in rounds])) for k in keys}
    print(f"{'median':<7}" + "".join(f"{median[k]:>23.2f}x" for k in keys))
    return {"rounds": rounds, "median": median}


if __name__ == "__main__":
    main()
