"""The data gradient's paths for few input channels: kernel rows (or, dilated, columns)
against the stride phases, one layer at a time.

    python benchmarks/dx_paths.py
    python benchmarks/dx_paths.py --threads 2 --seconds 1

For each layer shape, dtype and SIMD path, ``ConvPlan.backward`` runs with and without
the data gradient for each path, the calls taking turns for about ``--seconds``; a path's
data-gradient time is the difference of the two medians. Prints both times, their ratio
and the path ``ConvPlan`` picks by itself (``fastcnn.ops._conv_plan``'s rule comes from
these figures), and whether that is the faster one.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocks import cpu_description  # noqa: E402
from inference import interleaved_seconds  # noqa: E402

from fastcnn import show_config  # noqa: E402
from fastcnn._ext import _conv  # noqa: E402
from fastcnn.ops import _bf16  # noqa: E402
from fastcnn.ops._conv_plan import ConvPlan  # noqa: E402

# (H, C, K, kernel, padding, stride, dilation), batch 64
SHAPES = [
    (12, 6, 16, 5, 0, 1, 1), (28, 6, 16, 5, 2, 1, 1), (16, 2, 16, 3, 1, 1, 1),
    (32, 3, 32, 3, 1, 1, 1), (32, 4, 32, 3, 1, 1, 1), (32, 6, 32, 3, 1, 1, 1),
    (32, 8, 32, 3, 1, 1, 1), (16, 8, 64, 3, 1, 1, 1), (32, 12, 32, 3, 1, 1, 1),
    (16, 12, 32, 3, 1, 1, 1), (32, 12, 32, 5, 2, 1, 1), (32, 15, 32, 3, 1, 1, 1),
    (32, 6, 32, 3, 1, 2, 1), (32, 5, 32, 3, 2, 1, 2), (32, 10, 32, 3, 2, 1, 2),
]
BATCH = 64


def variants():
    """(label, isa, dtype, bf16) for every SIMD path and precision this CPU has."""
    out = [("AVX-512 float32", 2, np.float32, False), ("AVX-512 float64", 2, np.float64, False),
           ("AVX2 float32", 1, np.float32, False)]
    out = [v for v in out if v[1] <= _conv.cpu_isa()]
    if _bf16.available():
        out.insert(1, ("AVX-512 bf16", 2, np.float32, True))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    print(cpu_description())
    show_config()
    print(f"batch {BATCH}, {args.threads} thread(s); data-gradient ms (medians)")
    rng = np.random.default_rng(0)
    wrong = 0
    for label, isa, dtype, bf16 in variants():
        for h, c, k, r, pad, s, d in SHAPES:
            x = rng.standard_normal((BATCH, h, h, c)).astype(dtype)
            w = rng.standard_normal((r, r, c, k)).astype(dtype)
            geometry = ((h, h, c), (r, r, c, k), (s, s), (pad,) * 4, (d, d), dtype, isa)
            few = "rows" if d == 1 else "columns"
            plans = [ConvPlan(*geometry, dx_path=path, bf16=bf16) for path in (few, "phases")]
            dy = rng.standard_normal((BATCH, plans[0].ho, plans[0].wo, k)).astype(dtype)
            fns = [lambda p=p, need=need: p.backward(x, w, dy, need, args.threads)
                   for p in plans for need in (True, False)]
            t = interleaved_seconds(fns, args.seconds)
            few_ms, phases_ms = (t[0] - t[1]) * 1e3, (t[2] - t[3]) * 1e3
            chosen = ConvPlan(*geometry, bf16=bf16).dx_path
            faster = "phases" if phases_ms < few_ms else few
            # within 10% either way is a tie
            ok = chosen == faster or abs(phases_ms / few_ms - 1) < 0.1
            wrong += not ok
            print(f"{label:16s} {h:2d}x{h:<2d} C={c:2d} K={k:2d} {r}x{r} pad {pad} stride {s} "
                  f"dilation {d}: {few} {few_ms:6.2f}, phases {phases_ms:6.2f} "
                  f"(phases/{few} {phases_ms / few_ms:4.2f}); picks {chosen:7s}"
                  f"{'' if ok else '  <- slower by more than 10%'}", flush=True)
    print(f"{wrong} choice(s) slower than the other path by more than 10%")


if __name__ == "__main__":
    main()
