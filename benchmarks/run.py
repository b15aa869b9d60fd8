"""fastcnn against PyTorch CPU: whole networks through the estimator, and single layers.

    python benchmarks/run.py                       # LeNet-5 and VGG-small, 1, 2 and all threads
    python benchmarks/run.py --networks lenet --threads 1 --plot scaling.png

For each network, thread count and library (fastcnn; PyTorch in NCHW and in channels_last
when torch is installed) a fresh subprocess trains on synthetic data of the network's
shape (SGD, momentum 0.9, batch 64, 10 classes) and predicts, timing the median of
``--repeats`` epochs after a warm-up epoch, and reports its peak resident memory. Then,
at one thread, every conv layer of the two networks is timed alone (forward, data
gradient, weight gradient) beside PyTorch's same layer and numpy's float32 matmul.
The table goes to stdout, the figures to ``--json`` (default benchmarks/results/run.json).

On a shared machine the speed of both libraries drifts while the benchmark runs, so it
runs in ``--rounds``: each round measures every library back to back (their order
rotating from round to round), and a ratio is the median of the rounds' ratios.
Throughputs are medians over the rounds, and every round's ratio is printed.

These machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE to force OpenBLAS's AVX2 kernel;
this script removes them before numpy loads (in itself and its subprocesses) and prints
the kernel OpenBLAS reports. Compare figures only within one run.
"""
import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_layer import blas_description, matmul_gflops, median_seconds  # noqa: E402

BATCH = 64
N_CLASSES = 10
LR = 0.01

# Each network: input shape (H, W, C) and layer list in a library-neutral form.
NETWORKS = {
    "lenet": dict(
        input=(28, 28, 1),
        layers=[("conv", 6, 5, 0), ("maxpool", 2), ("conv", 16, 5, 0), ("maxpool", 2),
                ("dense", 120), ("dense", 84)],
        train_images=8192, predict_images=8192),
    "vgg": dict(
        input=(32, 32, 3),
        layers=[("conv", 32, 3, "same"), ("conv", 32, 3, "same"), ("maxpool", 2),
                ("conv", 64, 3, "same"), ("conv", 64, 3, "same"), ("maxpool", 2),
                ("dense", 256)],
        train_images=1024, predict_images=2048),
    # a wider net: 64-64-pool-128-128-pool-256, global average pooling
    "wide": dict(
        input=(32, 32, 3),
        layers=[("conv", 64, 3, "same"), ("conv", 64, 3, "same"), ("maxpool", 2),
                ("conv", 128, 3, "same"), ("conv", 128, 3, "same"), ("maxpool", 2),
                ("conv", 256, 3, "same"), ("gap",)],
        train_images=512, predict_images=1024),
}


def synthetic_data(name, n_images):
    height, width, channels = NETWORKS[name]["input"]
    rng = np.random.default_rng(0)
    x = rng.random((n_images, height, width, channels), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, n_images)
    return x, y


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------- fastcnn
def fastcnn_layers(name):
    from fastcnn.layers import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D

    specs = []
    for layer in NETWORKS[name]["layers"]:
        if layer[0] == "conv":
            specs.append(Conv2D(layer[1], layer[2], padding="valid" if layer[3] == 0 else "same"))
        elif layer[0] == "maxpool":
            specs.append(MaxPool2D(layer[1]))
        elif layer[0] == "gap":
            specs.append(GlobalAvgPool2D())
        else:
            specs.append(Dense(layer[1]))
    return specs


def run_fastcnn(name, n_threads, repeats, dtype="float32"):
    import warnings

    from fastcnn import CNNClassifier

    x, y = synthetic_data(name, NETWORKS[name]["train_images"])
    x_pred, _ = synthetic_data(name, NETWORKS[name]["predict_images"])
    clf = CNNClassifier(layers=fastcnn_layers(name), solver="sgd", momentum=0.9,
                        nesterovs_momentum=False, learning_rate_init=LR, batch_size=BATCH,
                        max_iter=1, shuffle=True, random_state=0, n_threads=n_threads,
                        dtype=dtype)
    rss_before = peak_rss_mib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = median_seconds(lambda: clf.partial_fit(x, y, classes=np.arange(N_CLASSES)),
                               repeats, warmup=1)
    predict = median_seconds(lambda: clf.predict(x_pred), repeats, warmup=1)
    return dict(train_images_per_s=len(x) / train, predict_images_per_s=len(x_pred) / predict,
                peak_rss_mib=peak_rss_mib(), fit_rss_increase_mib=peak_rss_mib() - rss_before)


# ------------------------------------------------------------------------- PyTorch
def torch_model(name):
    import torch

    height, width, channels = NETWORKS[name]["input"]
    modules = []
    for layer in NETWORKS[name]["layers"]:
        if layer[0] == "conv":
            padding = 0 if layer[3] == 0 else layer[2] // 2
            modules += [torch.nn.Conv2d(channels, layer[1], layer[2], padding=padding),
                        torch.nn.ReLU()]
            channels = layer[1]
            if padding == 0:
                height, width = height - layer[2] + 1, width - layer[2] + 1
        elif layer[0] == "maxpool":
            modules.append(torch.nn.MaxPool2d(layer[1]))
            height, width = height // layer[1], width // layer[1]
        elif layer[0] == "gap":
            modules += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
            height = width = 1
        else:
            if not any(isinstance(m, torch.nn.Flatten) for m in modules):
                modules.append(torch.nn.Flatten())
                channels = channels * height * width
            modules += [torch.nn.Linear(channels, layer[1]), torch.nn.ReLU()]
            channels = layer[1]
    modules.append(torch.nn.Linear(channels, N_CLASSES))
    return torch.nn.Sequential(*modules)


def run_torch(name, n_threads, repeats, channels_last, bf16=False):
    """``bf16``: training steps and prediction under torch.autocast("cpu", bfloat16)."""
    import contextlib

    import torch

    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    x, y = synthetic_data(name, NETWORKS[name]["train_images"])
    x_pred, _ = synthetic_data(name, NETWORKS[name]["predict_images"])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
    xp = torch.from_numpy(x_pred.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
    yt = torch.from_numpy(y)
    model = torch_model(name).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def autocast():
        return (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())

    def epoch():
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(xt[idx].contiguous(memory_format=fmt)), yt[idx])
            loss.backward()
            opt.step()

    def predict():
        with torch.inference_mode(), autocast():
            return torch.cat([model(xp[s:s + 256]).argmax(1) for s in range(0, len(xp), 256)])

    rss_before = peak_rss_mib()
    train = median_seconds(epoch, repeats, warmup=1)
    pred = median_seconds(predict, repeats, warmup=1)
    return dict(train_images_per_s=len(x) / train, predict_images_per_s=len(x_pred) / pred,
                peak_rss_mib=peak_rss_mib(), fit_rss_increase_mib=peak_rss_mib() - rss_before)


def _child(queue, fn, args):
    try:
        queue.put(("ok", fn(*args)))
    except Exception as exc:  # reported, not raised: one failure must not end the run
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def in_subprocess(fn, *args):
    """Run fn in a fresh process so thread pools and peak memory are its own."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


# ------------------------------------------------------------------------- layers
def conv_layer_shapes():
    """(name, batch, H, W, C, K, kernel, padding, first) of every conv layer of the networks.

    A network's first layer needs no data gradient: neither library computes one there."""
    shapes = []
    for name, net in NETWORKS.items():
        height, width, channels = net["input"]
        index = 0
        for layer in net["layers"]:
            if layer[0] == "conv":
                index += 1
                shapes.append((f"{name}.conv{index}", BATCH, height, width, channels, layer[1],
                               layer[2], layer[3], index == 1))
                channels = layer[1]
                if layer[3] == 0:
                    height, width = height - layer[2] + 1, width - layer[2] + 1
            elif layer[0] == "maxpool":
                height, width = height // layer[1], width // layer[1]
    return shapes


def layer_gflops(shape, repeats, have_torch):
    """GFLOP/s of one conv layer as a network runs it: its plan, fused bias and relu
    forward, buffers reused from call to call (a Conv2D layer's workspace)."""
    try:  # the layout since fastcnn 0.2, then the one before (benchmarks/compare_builds.py)
        from fastcnn.ops.conv import ConvPlan
        from fastcnn.ops.geometry import padding_amounts
        from fastcnn.ops.workspace import Workspace
    except ImportError:
        from fastcnn._checks import padding_amounts
        from fastcnn._conv_plan import ConvPlan
        from fastcnn._workspace import Workspace

    _, n, h, w, c, k, r, pad, first = shape
    pads = padding_amounts("same" if pad == "same" else 0, (h, w), (r, r), (1, 1), (1, 1))
    plan = ConvPlan((h, w, c), (r, r, c, k), (1, 1), pads, (1, 1), np.float32)
    ws = Workspace()
    rng = np.random.default_rng(0)
    x = rng.random((n, h, w, c), dtype=np.float32)
    wt = rng.standard_normal((r, r, c, k)).astype(np.float32) * 0.1
    bias = np.zeros(k, dtype=np.float32)
    y = plan.forward(x, wt, bias, True, 1, ws)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    flops = 2.0 * n * y.shape[1] * y.shape[2] * k * r * r * c / 1e9
    fwd = median_seconds(lambda: plan.forward(x, wt, bias, True, 1, ws), repeats)
    bwd_w = median_seconds(lambda: plan.backward(x, wt, dy, False, 1, ws), repeats)
    bwd = median_seconds(lambda: plan.backward(x, wt, dy, True, 1, ws), repeats)
    passes = 2 if first else 3
    row = {"fastcnn_forward": flops / fwd, "fastcnn_backward_weights": flops / bwd_w,
           "fastcnn_backward_data": flops / max(bwd - bwd_w, 1e-9),
           "fastcnn_forward_backward": passes * flops / (fwd + (bwd_w if first else bwd))}
    if have_torch:
        import torch

        torch.set_num_threads(1)
        for layout, fmt in (("nchw", torch.contiguous_format),
                            ("channels_last", torch.channels_last)):
            xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
            conv = torch.nn.Conv2d(c, k, r, padding=r // 2 if pad == "same" else 0)
            conv = conv.to(memory_format=fmt)
            with torch.inference_mode():
                t_fwd = median_seconds(lambda: torch.relu(conv(xt)), repeats)
            xg = xt.detach().clone().requires_grad_(not first)
            grad = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)

            def fwd_bwd():
                conv.zero_grad(set_to_none=True)
                conv(xg).backward(grad)

            t_fb = median_seconds(fwd_bwd, repeats)
            row[f"torch_{layout}_forward"] = flops / t_fwd
            row[f"torch_{layout}_forward_backward"] = passes * flops / t_fb
    return row


# ------------------------------------------------------------------------- report
def summarize_rounds(name, rounds, counts, libraries, args):
    """Print and return the medians over rounds, and each round's ratios."""
    print(f"\n{name}: training / prediction images per second, batch {BATCH} (median over "
          f"{len(rounds)} rounds of the median of {args.repeats} epochs), peak RSS MiB")
    print(f"{'threads':>7} {'library':<20}{'train/s':>10}{'predict/s':>11}{'peak MiB':>10}"
          f"{'fit +MiB':>10}")
    per_net = {}
    for n_threads in counts:
        rows = {}
        for lib, _, _ in libraries:
            got = [rnd[n_threads][lib] for rnd in rounds if lib in rnd.get(n_threads, {})]
            if not got:
                continue
            rows[lib] = {key: float(np.median([g[key] for g in got])) for key in got[0]}
            rows[lib]["rounds"] = got
            r = rows[lib]
            print(f"{n_threads:>7} {lib:<20}{r['train_images_per_s']:>10.0f}"
                  f"{r['predict_images_per_s']:>11.0f}{r['peak_rss_mib']:>10.0f}"
                  f"{r['fit_rss_increase_mib']:>10.0f}")
        per_round = {"train": [], "predict": []}
        for rnd in rounds:
            libs = rnd.get(n_threads, {})
            torch_rows = [libs[k] for k in ("torch_nchw", "torch_channels_last") if k in libs]
            if "fastcnn" not in libs or not torch_rows:
                continue
            for kind in per_round:
                key = f"{kind}_images_per_s"
                per_round[kind].append(libs["fastcnn"][key] / max(r[key] for r in torch_rows))
        if per_round["train"]:
            ratio = {kind: float(np.median(v)) for kind, v in per_round.items()}
            rows["ratio_vs_best_torch"] = dict(ratio, rounds=per_round)
            print(f"{n_threads:>7} {'fastcnn / best torch':<20}{ratio['train']:>9.2f}x"
                  f"{ratio['predict']:>10.2f}x   rounds: train "
                  + " ".join(f"{v:.2f}" for v in per_round["train"]) + ", predict "
                  + " ".join(f"{v:.2f}" for v in per_round["predict"]))
        per_net[str(n_threads)] = rows
    if 1 in counts and 2 in counts:
        scaling = [rnd[2]["fastcnn"]["train_images_per_s"] / rnd[1]["fastcnn"]["train_images_per_s"]
                   for rnd in rounds if "fastcnn" in rnd.get(1, {}) and "fastcnn" in rnd.get(2, {})]
        if scaling:
            per_net["scaling_2_over_1_train"] = float(np.median(scaling))
            print(f"  fastcnn 2 threads / 1 thread training: {np.median(scaling):.2f}x   "
                  "rounds: " + " ".join(f"{v:.2f}" for v in scaling))
    return per_net


def thread_counts(spec):
    from joblib import cpu_count

    counts = []
    for item in spec.split(","):
        n = cpu_count() if item == "all" else int(item)
        if n not in counts:
            counts.append(n)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="lenet,vgg",
                        help="comma-separated subset of lenet,vgg,wide; empty for layers only")
    parser.add_argument("--threads", default="1,2,all")
    parser.add_argument("--repeats", type=int, default=5,
                        help="epochs timed per measurement (the median is kept)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of measuring every library back to back")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-layers", action="store_true")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "run.json"))
    parser.add_argument("--plot", help="save a PNG of throughput against threads (matplotlib)")
    args = parser.parse_args()

    try:
        import torch  # noqa: F401

        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
        print("PyTorch is not installed: fastcnn figures only (pip install torch==2.13.0)")
    import fastcnn

    print(f"BLAS: {blas_description()}")
    print(fastcnn.config_summary())
    if have_torch:
        import torch

        print(f"PyTorch {torch.__version__}")
    results = {"networks": {}, "layers": {}, "blas": blas_description()}

    libraries = [("fastcnn", run_fastcnn, ())]
    if have_torch:
        libraries += [("torch_nchw", run_torch, (False,)),
                      ("torch_channels_last", run_torch, (True,))]
    counts = thread_counts(args.threads)
    for name in filter(None, args.networks.split(",")):
        # rounds[r][n_threads][lib] -> that round's figures
        rounds = []
        for r in range(args.rounds):
            this_round = {}
            for n_threads in counts:
                for i in range(len(libraries)):
                    lib, fn, extra = libraries[(i + r) % len(libraries)]
                    try:
                        this_round.setdefault(n_threads, {})[lib] = in_subprocess(
                            fn, name, n_threads, args.repeats, *extra)
                    except RuntimeError as exc:
                        print(f"{name}, {n_threads} thread(s), {lib} failed: {exc}")
            rounds.append(this_round)
        results["networks"][name] = summarize_rounds(name, rounds, counts, libraries, args)
    if not args.no_layers:
        results["matmul_gflops_1_thread"] = matmul_gflops(args.repeats)
        print(f"\nconv layers alone, 1 thread, GFLOP/s, median over {args.rounds} rounds "
              f"(numpy float32 matmul: {results['matmul_gflops_1_thread']:.0f})")
        columns = ["fastcnn_forward", "fastcnn_backward_data", "fastcnn_backward_weights",
                   "fastcnn_forward_backward"]
        if have_torch:
            columns += ["torch_nchw_forward", "torch_channels_last_forward",
                        "torch_nchw_forward_backward", "torch_channels_last_forward_backward"]
        short = {c: c.replace("fastcnn_", "fc ").replace("torch_channels_last_", "pt-cl ")
                 .replace("torch_nchw_", "pt-nchw ").replace("forward_backward", "f+b")
                 .replace("backward_", "b-").replace("forward", "fwd") for c in columns}
        print(f"{'layer':<36}" + "".join(f"{short[c]:>12}" for c in columns))
        for shape in conv_layer_shapes():
            got = [layer_gflops(shape, args.repeats, have_torch) for _ in range(args.rounds)]
            row = {c: float(np.median([g[c] for g in got])) for c in got[0]}
            results["layers"][shape[0]] = dict(shape=shape[1:], rounds=got, **row)
            label = f"{shape[0]} {shape[2]}x{shape[3]} {shape[4]}->{shape[5]} {shape[6]}x{shape[6]}"
            label += " (no dx)" if shape[8] else ""
            print(f"{label:<36}" + "".join(f"{row[c]:>12.1f}" for c in columns))

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.json}")
    if args.plot:
        plot(results, args.plot)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(results["networks"])
    fig, axes = plt.subplots(1, len(nets), figsize=(5 * len(nets), 4), squeeze=False)
    for ax, name in zip(axes[0], nets):
        per_thread = results["networks"][name]
        threads = sorted(int(t) for t in per_thread if t.isdigit())
        for lib in ("fastcnn", "torch_nchw", "torch_channels_last"):
            points = [(t, per_thread[str(t)][lib]["train_images_per_s"]) for t in threads
                      if lib in per_thread[str(t)]]
            if points:
                ax.plot(*zip(*points), marker="o", label=lib)
        ax.set_title(f"{name}: training throughput")
        ax.set_xlabel("threads")
        ax.set_ylabel("images / s")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
