"""Prediction: fastcnn's predict_proba against ONNX Runtime running the same network.

    python benchmarks/inference.py                         # every network, 1 and 2 threads
    python benchmarks/inference.py --networks lenet --threads 1 --rounds 5

Four networks on synthetic data, 10 classes, trained for one epoch (the weights only need
to be realistic, not good):
- lenet: 28x28x1, conv6 5x5, max pool 2, conv16 5x5, max pool 2, dense 120, 84;
- vgg: 32x32x3, conv32 3x3 x2, max pool 2, conv64 3x3 x2, max pool 2, dense 256;
- allconv: 32x32x3, conv32 3x3, conv32 3x3 stride 2, conv64 3x3, conv64 3x3 stride 2,
  conv128 3x3, global average pooling;
- avgpool64: 64x64x3, conv16 5x5, avg pool 2, conv32 5x5, avg pool 2, conv32 5x5, avg
  pool 2, dense 128.
The ONNX model is fastcnn's own export (``fastcnn.export``) with its input rewired to NCHW
images, the layout ONNX Runtime's convolutions want (so its runs include no transpose of
the input); its probabilities are checked against fastcnn's before timing. ONNX Runtime
gets every graph optimisation, sequential execution and ``--threads`` intra-op threads;
fastcnn gets ``n_threads``. Each gets its input ready in its own layout, C-contiguous
float32.

Throughput at batch sizes ``--batches``: in each round each contender runs in a fresh
process of its own (so that neither's thread pool spins on the cores while the other
works), one after the other, which goes first alternating from round to round. Within a
process the batch sizes take turns, one call each, for about ``--seconds`` per batch
size, a call's time being the median of its calls (so the machine's drift does not pass
for a cliff between batch sizes). A ratio is the median of the rounds' ratios, and every
round is printed.

Latency: LeNet-5 ``predict_proba`` on one image against scikit-learn's
``MLPClassifier(hidden_layer_sizes=(120, 84))`` on one 784-feature row, in the same run,
the two taking turns call by call in one process.
The targets of the inference issue are checked at the end (>= 1.2x ONNX Runtime at batch
256 and 4096, LeNet-5 batch-1 latency <= 0.55x MLPClassifier's, and no batch size from 16
to 1024 below 0.9x the best smaller one, in the same round: the median over the rounds of
that round's ratio); a target missed is reported, not hidden.
"""
import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocks import cpu_description  # noqa: E402
from run import in_subprocess  # noqa: E402

N_CLASSES = 10
TRAIN_IMAGES = 512
THROUGHPUT_TARGET = 1.2
LATENCY_TARGET = 0.55
CLIFF_BATCHES = (16, 64, 256, 1024)
CLIFF_TARGET = 0.9

NETWORKS = {
    "lenet": ((28, 28, 1), [("conv", 6, 5, 1, "valid"), ("max", 2), ("conv", 16, 5, 1, "valid"),
                            ("max", 2), ("dense", 120), ("dense", 84)]),
    "vgg": ((32, 32, 3), [("conv", 32, 3, 1, "same"), ("conv", 32, 3, 1, "same"), ("max", 2),
                          ("conv", 64, 3, 1, "same"), ("conv", 64, 3, 1, "same"), ("max", 2),
                          ("dense", 256)]),
    "allconv": ((32, 32, 3), [("conv", 32, 3, 1, "same"), ("conv", 32, 3, 2, "same"),
                              ("conv", 64, 3, 1, "same"), ("conv", 64, 3, 2, "same"),
                              ("conv", 128, 3, 1, "same"), ("gap",)]),
    "avgpool64": ((64, 64, 3), [("conv", 16, 5, 1, "same"), ("avg", 2),
                                ("conv", 32, 5, 1, "same"), ("avg", 2),
                                ("conv", 32, 5, 1, "same"), ("avg", 2), ("dense", 128)]),
}


def fastcnn_layers(name):
    from fastcnn.layers import AvgPool2D, Conv2D, Dense, GlobalAvgPool2D, MaxPool2D

    specs = []
    for layer in NETWORKS[name][1]:
        kind = layer[0]
        if kind == "conv":
            specs.append(Conv2D(layer[1], layer[2], stride=layer[3], padding=layer[4]))
        elif kind == "max":
            specs.append(MaxPool2D(layer[1]))
        elif kind == "avg":
            specs.append(AvgPool2D(layer[1]))
        elif kind == "gap":
            specs.append(GlobalAvgPool2D())
        else:
            specs.append(Dense(layer[1]))
    return specs


def images(name, n, seed):
    shape = NETWORKS[name][0]
    return np.random.default_rng(seed).random((n,) + shape, dtype=np.float32)


def fitted_model(name, n_threads):
    from fastcnn import CNNClassifier

    x = images(name, TRAIN_IMAGES, 0)
    y = np.random.default_rng(1).integers(0, N_CLASSES, TRAIN_IMAGES)
    clf = CNNClassifier(layers=fastcnn_layers(name), max_iter=1, random_state=0,
                        n_threads=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # one epoch does not converge
        return clf.fit(x, y)


def nchw_onnx(clf, name):
    """The exported model with its Reshape-to-NHWC and Transpose-to-NCHW replaced by an
    NCHW image input, and only the probabilities as output."""
    import onnx

    import fastcnn.export

    onx = fastcnn.export.to_onnx(clf, images(name, 1, 2), options={"zipmap": False})
    graph = onx.graph
    transpose = next(n for n in graph.node
                     if n.op_type == "Transpose" and list(n.attribute[0].ints) == [0, 3, 1, 2])
    h, w, c = NETWORKS[name][0]
    new_input = onnx.helper.make_tensor_value_info("x_nchw", onnx.TensorProto.FLOAT,
                                                   ["N", c, h, w])
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == transpose.output[0]:
                node.input[i] = "x_nchw"
    del graph.input[:]
    graph.input.append(new_input)
    keep = [o for o in graph.output if o.name == "probabilities"]
    del graph.output[:]
    graph.output.extend(keep)
    # drop the nodes nothing needed reads any more (the input's reshape, the labels)
    needed = {"probabilities"}
    nodes = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def ort_session(model_bytes, n_threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def interleaved_seconds(fns, seconds):
    """Median time of one call of each function, the functions called in turn (one call
    of each, then again) for about ``seconds`` in all after a warm-up call of each: the
    machine's drift hits every contender alike."""
    once = 0.0
    for fn in fns:
        fn()
        start = time.perf_counter()
        fn()
        once += max(time.perf_counter() - start, 1e-7)
    times = [[] for _ in fns]
    for _ in range(max(5, int(seconds / once))):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) for spent in times]


def contender_rates(contender, name, n_threads, batches, seconds):
    """{batch: img/s} of one contender ("fastcnn" or "ort"), measured in this process."""
    clf = fitted_model(name, n_threads)
    x = images(name, max(batches), 3)
    if contender == "ort":
        session = ort_session(nchw_onnx(clf, name), n_threads)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

        def call(batch):
            return session.run(["probabilities"], {"x_nchw": x[:batch]})
    else:
        def call(batch):
            return clf.predict_proba(x[:batch])
    # the batch sizes take turns too, so that the no-cliff check compares like with like
    times = interleaved_seconds([lambda b=batch: call(b) for batch in batches],
                                seconds * len(batches))
    return {batch: batch / t for batch, t in zip(batches, times)}


def throughput(name, n_threads, batches, rounds, seconds):
    """{batch: (fastcnn img/s, ORT img/s, ratio)} as medians over the rounds."""
    clf = fitted_model(name, n_threads)
    session = ort_session(nchw_onnx(clf, name), n_threads)
    x = images(name, 64, 3)
    check = session.run(["probabilities"], {"x_nchw": np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))})[0]
    error = np.abs(check - clf.predict_proba(x)).max()
    print(f"  {name}: ONNX Runtime's probabilities within {error:.1e} of fastcnn's")
    if error > 1e-4:
        raise SystemExit(f"{name}: the exported model does not reproduce predict_proba")
    per_round = []
    for r in range(rounds):
        order = ["fastcnn", "ort"] if r % 2 == 0 else ["ort", "fastcnn"]
        rates = {key: in_subprocess(contender_rates, key, name, n_threads, batches, seconds)
                 for key in order}
        per_round.append(rates)
        for batch in batches:
            fast, ort_rate = rates["fastcnn"][batch], rates["ort"][batch]
            print(f"    {name} threads={n_threads} batch={batch:5d} round {r + 1}: fastcnn "
                  f"{fast:10,.0f} img/s, ONNX Runtime {ort_rate:10,.0f} img/s, "
                  f"ratio {fast / ort_rate:.2f}", flush=True)
    results = {}
    for batch in batches:
        fast = [rates["fastcnn"][batch] for rates in per_round]
        ort_rates = [rates["ort"][batch] for rates in per_round]
        results[batch] = (float(np.median(fast)), float(np.median(ort_rates)),
                          float(np.median([f / o for f, o in zip(fast, ort_rates)])),
                          _cliff(per_round, batches, batch))
    return results


def _cliff(per_round, batches, batch):
    """fastcnn's img/s at ``batch`` over the best of the smaller checked batch sizes, in
    the same round (whose batch sizes took turns), the median over the rounds; None for
    a batch size the no-cliff target does not check."""
    smaller = [b for b in batches if CLIFF_BATCHES[0] <= b < batch]
    if batch not in CLIFF_BATCHES or not smaller:
        return None
    return float(np.median([rates["fastcnn"][batch] / max(rates["fastcnn"][b] for b in smaller)
                            for rates in per_round]))


def latency(rounds, seconds, n_threads):
    """(fastcnn LeNet-5 us, MLPClassifier(120, 84) us, ratio) for predict_proba on one
    sample, medians over the rounds."""
    from sklearn.neural_network import MLPClassifier

    clf = fitted_model("lenet", n_threads)
    x = images("lenet", 1, 4)
    flat = x.reshape(1, -1).astype(np.float64)
    rng = np.random.default_rng(5)
    mlp_x = rng.random((TRAIN_IMAGES, 784))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(120, 84), max_iter=1, random_state=0).fit(
            mlp_x, rng.integers(0, N_CLASSES, TRAIN_IMAGES))
    per_round = []
    for r in range(rounds):
        fns = [lambda: clf.predict_proba(x), lambda: mlp.predict_proba(flat)]
        order = [0, 1] if r % 2 == 0 else [1, 0]
        times = [None, None]
        for i, t in zip(order, interleaved_seconds([fns[i] for i in order], seconds)):
            times[i] = t * 1e6
        per_round.append(times)
        print(f"    latency threads={n_threads} round {r + 1}: fastcnn LeNet-5 {times[0]:.1f} us, "
              f"MLPClassifier(120, 84) {times[1]:.1f} us, ratio {times[0] / times[1]:.2f}",
              flush=True)
    fast, mlp_us = (float(np.median(v)) for v in zip(*per_round))
    return fast, mlp_us, float(np.median([f / m for f, m in per_round]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,16,64,256,1024,4096")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="how long each batch size's calls take in a round")
    args = parser.parse_args()
    networks = args.networks.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    batches = sorted(int(b) for b in args.batches.split(","))
    import onnxruntime

    import fastcnn

    print(f"CPU: {cpu_description()}")
    print(f"fastcnn {fastcnn.__version__}, onnxruntime {onnxruntime.__version__}, numpy "
          f"{np.__version__}")
    tables, misses, cliff_lines = {}, [], []
    for n_threads in threads:
        for name in networks:
            tables[name, n_threads] = throughput(name, n_threads, batches, args.rounds,
                                                 args.seconds)
    lat = {t: latency(args.rounds, args.seconds, t) for t in threads}

    print("\nimg/s, fastcnn / ONNX Runtime (ratio), medians of rounds")
    print("| network | threads | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in batches) + " |")
    for (name, n_threads), rows in tables.items():
        cells = [f"{f:,.0f} / {o:,.0f} ({r:.2f}x)" for f, o, r, _ in rows.values()]
        print(f"| {name} | {n_threads} | " + " | ".join(cells) + " |")
        for batch in (256, 4096):
            if batch in rows and rows[batch][2] < THROUGHPUT_TARGET:
                misses.append(f"{name}, {n_threads} thread(s), batch {batch}: "
                              f"{rows[batch][2]:.2f}x ONNX Runtime (target "
                              f">= {THROUGHPUT_TARGET}x)")
        cliffs = {batch: row[3] for batch, row in rows.items() if row[3] is not None}
        cliff_lines.append(f"  {name}, {n_threads} thread(s): " + ", ".join(
            f"batch {b} {c:.2f}x" for b, c in cliffs.items()))
        for batch, cliff in cliffs.items():
            if cliff < CLIFF_TARGET:
                misses.append(f"{name}, {n_threads} thread(s): batch {batch} at "
                              f"{cliff:.2f}x the best smaller batch (cliff)")
    print("\nNo cliff: img/s against the best smaller batch size of the same round "
          "(medians of rounds)")
    print("\n".join(cliff_lines))
    print("\nLeNet-5 predict_proba on one image against MLPClassifier(120, 84) on one row")
    for n_threads, (fast, mlp_us, ratio) in lat.items():
        print(f"  threads={n_threads}: fastcnn {fast:.1f} us, MLPClassifier {mlp_us:.1f} us, "
              f"ratio {ratio:.2f} (target <= {LATENCY_TARGET})")
        if ratio > LATENCY_TARGET:
            misses.append(f"latency at {n_threads} thread(s): {ratio:.2f}x MLPClassifier's "
                          f"(target <= {LATENCY_TARGET}x)")
    print("\nTargets missed:" if misses else "\nEvery target met.")
    for miss in misses:
        print(f"  - {miss}")


if __name__ == "__main__":
    main()
