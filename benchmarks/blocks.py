"""Networks of modern blocks, fastcnn against PyTorch CPU: ResNet-8 and a MobileNet-style net.

    python benchmarks/blocks.py                     # both networks, 1 and 2 threads
    python benchmarks/blocks.py --networks resnet8 --threads 1 --rounds 5

32x32x3 synthetic images, 10 classes, SGD with momentum 0.9, batch 64, as in
``benchmarks/run.py``:
- ResNet-8: conv16-BN-relu, then residual blocks (16, stride 1, identity), (32, stride 2,
  projection), (64, stride 2, projection), each conv3-BN-relu-conv3-BN, the sum through
  relu, then global average pooling and the output layer.
- MobileNet-style: conv32-BN-relu, then depthwise-separable blocks (depthwise 3x3-BN-relu,
  pointwise 1x1-BN-relu) to 64, 128 (stride 2), 128, 256 (stride 2), global average
  pooling and the output layer.
The two libraries run the same network: convolutions with biases, projections 1x1 with
bias and no BatchNorm. PyTorch runs in NCHW and channels_last; its faster layout is the
peer. Every measurement runs in a fresh subprocess; each round measures every contender
back to back, their order rotating; a ratio is the median of the rounds' ratios, and
every round is printed.
"""
import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_layer import median_seconds  # noqa: E402
from run import in_subprocess  # noqa: E402

BATCH = 64
N_CLASSES = 10
LR = 0.01
SHAPE = (32, 32, 3)
TRAIN_IMAGES = 1024
PREDICT_IMAGES = 2048

# (channels, stride, shortcut) per residual block; (channels, stride) per separable block
RESNET_BLOCKS = [(16, 1, "identity"), (32, 2, "projection"), (64, 2, "projection")]
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2)]


def data(n_images, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n_images,) + SHAPE, dtype=np.float32),
            rng.integers(0, N_CLASSES, n_images))


# ------------------------------------------------------------------------- fastcnn
def fastcnn_layers(name):
    from fastcnn.layers import (
        Activation,
        BatchNorm,
        Conv2D,
        DepthwiseConv2D,
        GlobalAvgPool2D,
        Residual,
    )

    def conv_bn(filters, kernel, stride=1, relu=True):
        layers = [Conv2D(filters, kernel, stride=stride, padding="same", activation=None),
                  BatchNorm()]
        return layers + [Activation("relu")] if relu else layers

    layers = []
    if name == "resnet8":
        layers += conv_bn(16, 3)
        for filters, stride, shortcut in RESNET_BLOCKS:
            body = conv_bn(filters, 3, stride) + conv_bn(filters, 3, relu=False)
            layers.append(Residual(body, shortcut=shortcut))
    else:
        layers += conv_bn(32, 3)
        for filters, stride in MOBILENET_BLOCKS:
            layers += [DepthwiseConv2D(3, stride=stride, padding="same", activation=None),
                       BatchNorm(), Activation("relu")]
            layers += conv_bn(filters, 1)
    return layers + [GlobalAvgPool2D()]


def run_fastcnn(name, n_threads, repeats):
    import warnings

    from fastcnn import CNNClassifier

    x, y = data(TRAIN_IMAGES)
    x_pred, _ = data(PREDICT_IMAGES, seed=1)
    clf = CNNClassifier(layers=fastcnn_layers(name), solver="sgd", momentum=0.9,
                        nesterovs_momentum=False, learning_rate_init=LR, batch_size=BATCH,
                        max_iter=1, shuffle=True, random_state=0, n_threads=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = median_seconds(lambda: clf.partial_fit(x, y, classes=np.arange(N_CLASSES)),
                               repeats, warmup=1)
    predict = median_seconds(lambda: clf.predict(x_pred), repeats, warmup=1)
    return {"train": len(x) / train, "predict": len(x_pred) / predict}


# ------------------------------------------------------------------------- PyTorch
def torch_model(name):
    import torch
    from torch import nn

    def conv_bn(c_in, c_out, kernel, stride=1, relu=True, groups=1):
        layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2,
                            groups=groups), nn.BatchNorm2d(c_out)]
        return layers + [nn.ReLU()] if relu else layers

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride, shortcut):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(c_in, c_out, 3, stride),
                                      *conv_bn(c_out, c_out, 3, relu=False))
            self.projection = (nn.Conv2d(c_in, c_out, 1, stride=stride)
                               if shortcut == "projection" else None)

        def forward(self, x):
            s = x if self.projection is None else self.projection(x)
            return torch.relu(self.body(x) + s)

    if name == "resnet8":
        layers, channels = conv_bn(3, 16, 3), 16
        for filters, stride, shortcut in RESNET_BLOCKS:
            layers.append(Block(channels, filters, stride, shortcut))
            channels = filters
    else:
        layers, channels = conv_bn(3, 32, 3), 32
        for filters, stride in MOBILENET_BLOCKS:
            layers += conv_bn(channels, channels, 3, stride, groups=channels)
            layers += conv_bn(channels, filters, 1)
            channels = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, N_CLASSES)]
    return nn.Sequential(*layers)


def run_torch(name, n_threads, repeats, channels_last):
    import torch

    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    x, y = data(TRAIN_IMAGES)
    x_pred, _ = data(PREDICT_IMAGES, seed=1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
    xp = torch.from_numpy(x_pred.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
    yt = torch.from_numpy(y)
    model = torch_model(name).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        model.train()
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx].contiguous(memory_format=fmt)), yt[idx])
            loss.backward()
            opt.step()

    def predict():
        model.eval()
        with torch.inference_mode():
            return torch.cat([model(xp[s:s + 256]).argmax(1) for s in range(0, len(xp), 256)])

    train = median_seconds(epoch, repeats, warmup=1)
    pred = median_seconds(predict, repeats, warmup=1)
    return {"train": len(x) / train, "predict": len(x_pred) / pred}


CONTENDERS = {
    "fastcnn": lambda name, t, r: in_subprocess(run_fastcnn, name, t, r),
    "torch NCHW": lambda name, t, r: in_subprocess(run_torch, name, t, r, False),
    "torch channels_last": lambda name, t, r: in_subprocess(run_torch, name, t, r, True),
}


def cpu_description():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    family = fields.get("CPU family", "?").strip()
    kind = {"25": "Zen 4", "26": "Zen 5"}.get(family, "not AMD Zen 4/5")
    return (f"{fields.get('Model name', '?').strip()}, CPU family {family} ({kind}), "
            f"{os.cpu_count()} CPUs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="resnet8,mobilenet")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()
    print(cpu_description())
    results = {}
    for name in args.networks.split(","):
        for n_threads in (int(t) for t in args.threads.split(",")):
            rounds = []
            for r in range(args.rounds):
                order = list(CONTENDERS)
                order = order[r % len(order):] + order[:r % len(order)]
                rounds.append({c: CONTENDERS[c](name, n_threads, args.repeats) for c in order})
            results[f"{name}/{n_threads}"] = rounds
            print(f"\n{name}, {n_threads} thread(s), images/s (median of {args.rounds} rounds)")
            for task in ("train", "predict"):
                med = {c: float(np.median([r[c][task] for r in rounds])) for c in CONTENDERS}
                ratios = [r["fastcnn"][task] / max(r["torch NCHW"][task],
                                                    r["torch channels_last"][task])
                          for r in rounds]
                print(f"  {task:8s} fastcnn {med['fastcnn']:8.0f}  torch NCHW "
                      f"{med['torch NCHW']:8.0f}  channels_last {med['torch channels_last']:8.0f}"
                      f"  fastcnn/best torch {np.median(ratios):.2f}  rounds: "
                      + " ".join(f"{x:.2f}" for x in ratios))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
