"""bfloat16 mixed precision: fastcnn against PyTorch's torch.autocast bf16, whole networks.

    python benchmarks/bf16.py                          # lenet, vgg, wide; 1 and 2 threads
    python benchmarks/bf16.py --networks vgg --threads 1 --rounds 5

Contenders, each trained (SGD momentum 0.9, batch 64, synthetic data of the network's
shape, median of ``--repeats`` epochs after a warm-up one) and then predicting, in a fresh
process per measurement (run.py's harness):

    torch fp32 cl     PyTorch float32, channels_last
    torch bf16 nchw   PyTorch under torch.autocast("cpu", dtype=torch.bfloat16), NCHW
    torch bf16 cl     the same, channels_last
    fastcnn fp32      CNNClassifier(dtype="float32")
    fastcnn bf16      CNNClassifier(dtype="bfloat16")

The contenders run back to back in ``--rounds`` rounds, their order rotating from round to
round; a ratio is computed within each round (fastcnn bf16 against the faster of PyTorch's
two bf16 layouts, and against fastcnn fp32), every round's ratio is printed and the median
is the figure. Needs a CPU with AVX512_BF16 and PyTorch (pip install torch==2.13.0).
"""
import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BATCH, in_subprocess, run_fastcnn, run_torch, thread_counts  # noqa: E402

CONTENDERS = [
    ("torch fp32 cl", run_torch, (True, False)),
    ("torch bf16 nchw", run_torch, (False, True)),
    ("torch bf16 cl", run_torch, (True, True)),
    ("fastcnn fp32", run_fastcnn, ("float32",)),
    ("fastcnn bf16", run_fastcnn, ("bfloat16",)),
]
KINDS = ("train", "predict")


def cpu_description():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in info.splitlines()[:30] if ":" in line)
    get = {k.strip(): v.strip() for k, v in fields.items()}.get
    return f"{get('model name')}, family {get('cpu family')} model {get('model')}"


def ratios(rnd):
    """This round's fastcnn bf16 ratios: against the faster PyTorch bf16 layout and
    against fastcnn fp32, for training and prediction."""
    out = {}
    if "fastcnn bf16" not in rnd:
        return out
    ours = rnd["fastcnn bf16"]
    torch_bf16 = [rnd[k] for k in ("torch bf16 nchw", "torch bf16 cl") if k in rnd]
    for kind in KINDS:
        key = f"{kind}_images_per_s"
        if torch_bf16:
            out[f"{kind} vs torch bf16"] = ours[key] / max(r[key] for r in torch_bf16)
        if "fastcnn fp32" in rnd:
            out[f"{kind} vs fastcnn fp32"] = ours[key] / rnd["fastcnn fp32"][key]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="lenet,vgg,wide")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "bf16.json"))
    args = parser.parse_args()

    import torch

    import fastcnn
    from fastcnn.ops import _bf16

    if not _bf16.available():
        sys.exit("this CPU has no AVX512_BF16: nothing to compare")
    print(f"CPU: {cpu_description()}")
    print(fastcnn.config_summary())
    print(f"PyTorch {torch.__version__}; batch {BATCH}; median of {args.repeats} epochs per "
          f"measurement, {args.rounds} rounds")
    counts = thread_counts(args.threads)
    results = {"cpu": cpu_description(), "networks": {}}
    for name in filter(None, args.networks.split(",")):
        per_threads = {}
        for n_threads in counts:
            rounds = []
            for r in range(args.rounds):
                rnd = {}
                for i in range(len(CONTENDERS)):
                    label, fn, extra = CONTENDERS[(i + r) % len(CONTENDERS)]
                    try:
                        rnd[label] = in_subprocess(fn, name, n_threads, args.repeats, *extra)
                    except RuntimeError as exc:
                        print(f"{name}, {n_threads} thread(s), {label} failed: {exc}")
                rnd["ratios"] = ratios(rnd)
                rounds.append(rnd)
                print(f"{name} {n_threads} thread(s) round {r}: " + ", ".join(
                    f"{k} {v['train_images_per_s']:.0f}/{v['predict_images_per_s']:.0f}"
                    for k, v in rnd.items() if k != "ratios") + " (train/predict img/s); "
                    + ", ".join(f"{k} {v:.2f}x" for k, v in rnd["ratios"].items()), flush=True)
            per_threads[n_threads] = rounds
        results["networks"][name] = summarize(name, per_threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.json}")


def summarize(name, per_threads):
    print(f"\n{name}: images per second, train / predict (medians over rounds)")
    print(f"{'threads':>7}  " + "".join(f"{label:>20}" for label, _, _ in CONTENDERS))
    summary = {}
    for n_threads, rounds in per_threads.items():
        medians = {}
        for label, _, _ in CONTENDERS:
            got = [rnd[label] for rnd in rounds if label in rnd]
            if got:
                medians[label] = {k: float(np.median([g[k] for g in got])) for k in got[0]}
        print(f"{n_threads:>7}  " + "".join(
            f"{medians[label]['train_images_per_s']:>10.0f} /"
            f"{medians[label]['predict_images_per_s']:>7.0f}" if label in medians
            else f"{'failed':>20}" for label, _, _ in CONTENDERS))
        keys = sorted({k for rnd in rounds for k in rnd["ratios"]})
        ratio_medians = {}
        for key in keys:
            values = [rnd["ratios"][key] for rnd in rounds if key in rnd["ratios"]]
            ratio_medians[key] = float(np.median(values))
            print(f"{'':>9}fastcnn bf16 {key}: {ratio_medians[key]:.2f}x   rounds: "
                  + " ".join(f"{v:.2f}" for v in values))
        summary[str(n_threads)] = {"medians": medians, "ratios": ratio_medians,
                                   "rounds": rounds}
    return summary


if __name__ == "__main__":
    main()
