"""Pooling and activation kernels of two builds of fastcnn, compared in one run.

Each contender (a source tree with its extensions built in place) runs in a worker
process of its own with PYTHONPATH pointing at it. Every round times every kernel in both
workers back to back, the order alternating between rounds, and prints the round: the
machine is shared and noisy, so only same-round ratios mean much. The summary gives the
medians over rounds and the median of the rounds' ratios. Each kernel's output is hashed
once in each build and the summary says whether the two builds agree bitwise.

The kernels are called through ``fastcnn._ext`` directly (the signatures are the same in
both builds), on shapes of LeNet-5 and VGG-small batches of 64.

Usage (the old build from a worktree of the commit before the change, built in place):

    git worktree add /tmp/kern_old <commit> && (cd /tmp/kern_old &&
        python setup.py -q build_ext --inplace)
    python benchmarks/ops_kernels.py --old /tmp/kern_old --new . --rounds 7
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

# name -> (module, function, builder name, builder arguments); see _build() for the builders
CASES = {}


def _case(name, builder, *args):
    CASES[name] = (builder, args)


for _shape, _tag in [((64, 24, 24, 6), "lenet1"), ((64, 8, 8, 16), "lenet2"),
                     ((64, 32, 32, 32), "vgg1"), ((64, 16, 16, 64), "vgg2")]:
    _case(f"max_pool fwd {_tag} {_shape} p2", "max_fwd", _shape, "float32")
    _case(f"max_pool bwd {_tag} {_shape} p2", "max_bwd", _shape, "float32")
    _case(f"avg_pool fwd {_tag} {_shape} p2", "avg_fwd", _shape, "float32")
    _case(f"avg_pool bwd {_tag} {_shape} p2", "avg_bwd", _shape, "float32")
_case("max_pool fwd vgg1 (64, 32, 32, 32) p2 f64", "max_fwd", (64, 32, 32, 32), "float64")
_case("avg_pool fwd vgg1 (64, 32, 32, 32) p2 f64", "avg_fwd", (64, 32, 32, 32), "float64")
for _shape in [(64, 8, 8, 128), (64, 16, 16, 64), (64, 4, 4, 16)]:
    _case(f"global_avg fwd {_shape}", "gap_fwd", _shape, "float32")
    _case(f"global_avg bwd {_shape}", "gap_bwd", _shape, "float32")
_ACT_SHAPE = (64, 32, 32, 32)
for _kind in ("relu", "sigmoid", "tanh"):
    _case(f"{_kind} fwd {_ACT_SHAPE}", "act_fwd", _kind, _ACT_SHAPE, "float32")
    _case(f"{_kind} bwd {_ACT_SHAPE}", "act_bwd", _kind, _ACT_SHAPE, "float32")
_case(f"sigmoid fwd {_ACT_SHAPE} f64", "act_fwd", "sigmoid", _ACT_SHAPE, "float64")
_case(f"tanh fwd {_ACT_SHAPE} f64", "act_fwd", "tanh", _ACT_SHAPE, "float64")
_case("softmax (64, 10)", "softmax", (64, 10), "float32")
_case("softmax (256, 1000)", "softmax", (256, 1000), "float32")
_case("softmax_cross_entropy (64, 10)", "xent", (64, 10), "float32")
_case("softmax_cross_entropy (256, 1000)", "xent", (256, 1000), "float32")


def _build(builder, args, n_threads):
    """A zero-argument call of one kernel on fixed inputs, and the arrays it writes."""
    import numpy as np

    from fastcnn._ext import _activations, _pool

    rng = np.random.default_rng(0)
    if builder in ("max_fwd", "max_bwd", "avg_fwd", "avg_bwd"):
        shape, dtype = args
        n, h, w, c = shape
        x = rng.standard_normal(shape).astype(dtype)
        y = np.empty((n, h // 2, w // 2, c), dtype)
        dx = np.empty(shape, dtype)
        argmax = np.empty(y.shape, np.int64)
        _pool.max_pool2d_forward(x, y, argmax, 2, 2, 2, 2, n_threads)
        dy = rng.standard_normal(y.shape).astype(dtype)
        return {
            "max_fwd": (lambda: _pool.max_pool2d_forward(x, y, argmax, 2, 2, 2, 2, n_threads),
                        (y, argmax)),
            "max_bwd": (lambda: _pool.max_pool2d_backward(dy, argmax, dx, n_threads), (dx,)),
            "avg_fwd": (lambda: _pool.avg_pool2d_forward(x, y, 2, 2, 2, 2, n_threads), (y,)),
            "avg_bwd": (lambda: _pool.avg_pool2d_backward(dy, dx, 2, 2, 2, 2, n_threads),
                        (dx,)),
        }[builder]
    if builder in ("gap_fwd", "gap_bwd"):
        shape, dtype = args
        x = rng.standard_normal(shape).astype(dtype)
        y = np.empty((shape[0], shape[3]), dtype)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = np.empty(shape, dtype)
        if builder == "gap_fwd":
            return lambda: _pool.global_avg_pool2d_forward(x, y, n_threads), (y,)
        return lambda: _pool.global_avg_pool2d_backward(dy, dx, n_threads), (dx,)
    if builder in ("act_fwd", "act_bwd"):
        kind, shape, dtype = args
        x = (3 * rng.standard_normal(shape)).astype(dtype).ravel()
        # the gradients' inputs from NumPy, not from the build's own forward kernel
        y = {"relu": np.maximum(x, 0), "sigmoid": 1 / (1 + np.exp(-x)),
             "tanh": np.tanh(x)}[kind].astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        dx = np.empty_like(x)
        if builder == "act_fwd":
            f = getattr(_activations, f"{kind}_forward")
            return lambda: f(x, y, n_threads), (y,)
        f = getattr(_activations, f"{kind}_backward")
        return lambda: f(dy, y, dx, n_threads), (dx,)
    shape, dtype = args
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    out = np.empty_like(logits)
    if builder == "softmax":
        return lambda: _activations.softmax_forward(logits, out, n_threads), (out,)
    labels = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    row_loss = np.empty(shape[0], np.float64)
    loss = np.empty(1, np.float64)

    def xent():
        loss[0] = _activations.softmax_cross_entropy_forward_backward(
            logits, labels, out, row_loss, None, n_threads)
    return xent, (out, loss)


def _worker(n_threads):
    """Answers one JSON request per line on stdin: time a case, or hash its output."""
    import fastcnn
    from fastcnn._ext import _conv

    built = {}
    print(json.dumps({"file": fastcnn.__file__, "isa": _conv.cpu_isa()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        name = request["case"]
        if name not in built:
            builder, args = CASES[name]
            built[name] = _build(builder, args, n_threads)
        call, outputs = built[name]
        if request["what"] == "hash":
            call()
            digest = hashlib.sha1()
            for a in outputs:
                digest.update(a.tobytes())
            print(json.dumps({"hash": digest.hexdigest()}), flush=True)
            continue
        inner = request["inner"]
        best = float("inf")
        for _ in range(request["repeat"]):
            start = time.perf_counter()
            for _ in range(inner):
                call()
            best = min(best, (time.perf_counter() - start) / inner)
        print(json.dumps({"seconds": best}), flush=True)


class _Contender:
    def __init__(self, label, tree, n_threads):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(n_threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=os.path.abspath(tree))
        self.info = json.loads(self.proc.stdout.readline())

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _cpu_description():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "lscpu not available"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    family = fields.get("CPU family", "?").strip()
    kind = {"25": "Zen 4", "26": "Zen 5"}.get(family, "not Zen 4/5")
    return (f"{fields.get('Model name', '?').strip()}, CPU family {family} ({kind}), "
            f"{fields.get('CPU(s)', '?').strip()} CPUs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="/tmp/kern_old", help="tree of the old build")
    parser.add_argument("--new", default=os.path.join(os.path.dirname(__file__), ".."),
                        help="tree of the new build")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.threads)

    names = [n for n in CASES if args.filter in n]
    contenders = [_Contender("old", args.old, args.threads),
                  _Contender("new", args.new, args.threads)]
    print(f"CPU: {_cpu_description()}")
    for c in contenders:
        print(f"{c.label}: {c.info['file']} (detected isa {c.info['isa']})")
    print(f"threads {args.threads}, {args.rounds} rounds, best of {args.repeat} per round")
    same = {n: len({c.ask(what="hash", case=n)["hash"] for c in contenders}) == 1
            for n in names}
    # calls per timing: enough for about 2 ms, measured once on the old build
    inner = {}
    for n in names:
        t = contenders[0].ask(what="time", case=n, inner=1, repeat=3)["seconds"]
        inner[n] = max(1, int(2e-3 / max(t, 1e-7)))
    times = {n: {c.label: [] for c in contenders} for n in names}
    for r in range(args.rounds):
        print(f"--- round {r + 1}")
        for i, n in enumerate(names):
            order = contenders if (r + i) % 2 == 0 else contenders[::-1]
            for c in order:
                seconds = c.ask(what="time", case=n, inner=inner[n], repeat=args.repeat)
                times[n][c.label].append(seconds["seconds"])
            old, new = times[n]["old"][-1], times[n]["new"][-1]
            print(f"  {n:44s} old {old * 1e6:9.1f} us  new {new * 1e6:9.1f} us  "
                  f"old/new {old / new:5.2f}", flush=True)
    for c in contenders:
        c.close()
    print("--- summary: medians over rounds (us), median of the rounds' old/new ratios, "
          "bitwise equal outputs")
    for n in names:
        old, new = times[n]["old"], times[n]["new"]
        ratio = statistics.median(o / w for o, w in zip(old, new))
        print(f"  {n:44s} old {statistics.median(old) * 1e6:9.1f}  "
              f"new {statistics.median(new) * 1e6:9.1f}  x{ratio:5.2f}  "
              f"{'same' if same[n] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
