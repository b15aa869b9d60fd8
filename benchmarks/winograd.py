"""Winograd against the direct convolution, one layer at a time, at prediction.

    python benchmarks/winograd.py
    python benchmarks/winograd.py --threads 2 --seconds 2

For each layer shape (3x3 and 5x5 filters, 'same' padding, fused relu) the direct kernels
and the Winograd ones (F(4x4, 3x3); F(4x4, 5x5) and F(2x2, 5x5)) run the same weights,
taking turns call by call for about ``--seconds``; the time of each is the median of its calls.
GFLOP/s count the direct convolution's multiply-adds for both, so the ratio is the
speed-up. ``fastcnn.ops._winograd.MIN_CHANNELS`` comes from these figures; the largest
error against the direct result, relative to its largest value, is printed too. On a CPU
with AVX512_BF16 the bf16 direct kernel takes turns with them as well: a bf16 model
predicts its Winograd-eligible layers by float32 Winograd because of these figures.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocks import cpu_description  # noqa: E402
from inference import interleaved_seconds  # noqa: E402

# (N, H, C, K, kernel)
SHAPES = [
    (64, 32, 16, 16, 3), (64, 32, 32, 32, 3), (64, 16, 32, 64, 3), (64, 16, 64, 64, 3),
    (64, 8, 128, 128, 3),
    (32, 32, 16, 16, 5), (32, 32, 16, 32, 5), (32, 16, 32, 32, 5), (32, 16, 32, 64, 5),
    (32, 16, 64, 64, 5), (32, 8, 128, 128, 5),
]


def main():
    from fastcnn._ext import _conv
    from fastcnn.ops import _bf16, _winograd
    from fastcnn.ops.conv import ConvPlan

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}, threads={args.threads}")
    rng = np.random.default_rng(0)
    for n, h, c, k, r in SHAPES:
        x = rng.random((n, h, h, c), dtype=np.float32)
        w = (rng.standard_normal((r, r, c, k)) / np.sqrt(r * r * c)).astype(np.float32)
        b = np.zeros(k, np.float32)
        p = r // 2
        plan = ConvPlan((h, h, c), (r, r, c, k), (1, 1), (p, p, p, p), (1, 1), np.float32)
        direct = plan.prepare(w, b)
        y_direct = np.empty((n, h, h, k), np.float32)
        calls = [lambda: plan.forward(x, w, b, True, args.threads, out=y_direct, **direct)]
        # every Winograd form of this kernel size, set up by hand (below MIN_CHANNELS
        # prepare() would not choose one)
        forms = [tile for kernel, tile in sorted(_winograd.FORMS) if kernel == r]
        outputs = []
        for tile in forms:
            upack = _winograd.transformed_filter(w, plan.fwd_block, np.float32, tile)
            group = _winograd.group_tiles(c, upack.shape[1] * plan.fwd_block, 4,
                                          _conv.winograd_rows(plan.fwd_isa, plan.fwd_nv),
                                          _winograd.patch_size(r, tile))
            prepared = {"winograd": (upack, b, group, tile)}
            outputs.append(np.empty_like(y_direct))
            calls.append(lambda prepared=prepared, y=outputs[-1]: plan.forward(
                x, w, b, True, args.threads, out=y, **prepared))
        if _bf16.available():
            plan16 = ConvPlan((h, h, c), (r, r, c, k), (1, 1), (p, p, p, p), (1, 1),
                              np.float32, bf16=True)
            bf16 = plan16.prepare(w, b)
            y_bf16 = np.empty_like(y_direct)
            calls.append(lambda: plan16.forward(x, w, b, True, args.threads, out=y_bf16,
                                                **bf16))
        seconds = interleaved_seconds(calls, args.seconds)
        flops = 2 * n * h * h * r * r * c * k
        used = (f"F({_winograd.output_tile(r)}x{_winograd.output_tile(r)}, {r}x{r})"
                if plan.winograd_eligible else "direct")
        line = (f"{r}x{r} {c:3d}->{k:3d} at {h}x{h}, batch {n}: direct "
                f"{flops / seconds[0] / 1e9:6.1f} GFLOP/s")
        for i, (tile, y) in enumerate(zip(forms, outputs), 1):
            error = np.abs(y - y_direct).max() / np.abs(y_direct).max()
            line += (f"; F({tile}x{tile}, {r}x{r}) {flops / seconds[i] / 1e9:6.1f} "
                     f"({seconds[0] / seconds[i]:.2f}x, error {error:.1e})")
        if _bf16.available():
            fastest = min(seconds[1:1 + len(forms)])
            line += (f"; bf16 direct {flops / seconds[-1] / 1e9:6.1f} (fastest Winograd / "
                     f"bf16 {seconds[-1] / fastest:.2f}x)")
        print(line + f"; used at prediction: {used}", flush=True)


if __name__ == "__main__":
    main()
