"""Two builds of fastcnn side by side in one run: whole networks and single conv layers.

    git clone -q . /tmp/old && git -C /tmp/old checkout -q <commit>
    (cd /tmp/old && python setup.py -q build_ext --inplace)
    python benchmarks/compare_builds.py --old /tmp/old --new .
    python benchmarks/compare_builds.py --old /tmp/old --dtype bfloat16 --layers none

Each measurement runs in a fresh subprocess with ``PYTHONPATH`` set to one tree (checked:
the subprocess reports where it imported fastcnn from). Per round, every workload is
measured on both builds back to back, the order alternating from round to round; a ratio
(new / old, above 1 = the new build is faster) is the median of the rounds' ratios, and
every round's ratio is printed. The workloads are those of ``benchmarks/run.py``:
LeNet-5 and VGG-small training epochs and prediction through the estimator (SGD, batch
64), and every conv layer of the two networks alone at one thread, forward and
forward + backward, through its plan with reused buffers.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in the subprocess: fastcnn comes from PYTHONPATH, the workloads from benchmarks/.
CHILD = r"""
import json, os, sys
for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(name, None)
sys.path.insert(0, {here!r})
import fastcnn
from run import conv_layer_shapes, layer_gflops, run_fastcnn

task = json.loads(sys.argv[1])
if task["kind"] == "network":
    result = run_fastcnn(task["name"], task["threads"], task["repeats"], task["dtype"])
else:
    shape = next(s for s in conv_layer_shapes() if s[0] == task["name"])
    row = layer_gflops(shape, task["repeats"], have_torch=False)
    result = {{"forward": row["fastcnn_forward"],
              "forward_backward": row["fastcnn_forward_backward"]}}
result["imported_from"] = os.path.dirname(fastcnn.__file__)
print("RESULT " + json.dumps(result))
"""


def measure(tree, task):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=HERE), json.dumps(task)],
                         env=env, capture_output=True, text=True, cwd=os.path.abspath(tree),
                         check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{tree}: {task}: {out.stderr[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    expected = os.path.join(os.path.abspath(tree), "fastcnn")
    if os.path.realpath(result["imported_from"]) != os.path.realpath(expected):
        raise RuntimeError(f"{tree}: imported fastcnn from {result['imported_from']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="source tree of the old build")
    parser.add_argument("--new", default=os.path.dirname(HERE))
    parser.add_argument("--networks", default="lenet,vgg")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--layers", default="all", help="'all', 'none' or names")
    parser.add_argument("--dtype", default="float32",
                        help="the networks' dtype ('bfloat16': mixed precision); the layers "
                             "are float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()

    sys.path.insert(0, HERE)
    from run import conv_layer_shapes

    tasks = []
    for name in filter(None, args.networks.split(",")):
        for n_threads in (int(t) for t in args.threads.split(",")):
            tasks.append({"kind": "network", "name": name, "threads": n_threads,
                          "repeats": args.repeats, "dtype": args.dtype})
    if args.layers != "none":
        names = [s[0] for s in conv_layer_shapes()]
        wanted = names if args.layers == "all" else args.layers.split(",")
        tasks += [{"kind": "layer", "name": n, "repeats": 5 * args.repeats} for n in wanted]

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    family = next((line.split(":")[1].strip() for line in lscpu.splitlines()
                   if line.startswith("CPU family")), "?")
    print(f"{platform.processor() or platform.machine()}, CPU family {family} "
          f"({ {'25': 'Zen 4', '26': 'Zen 5'}.get(family, 'not AMD Zen 4/5') }), "
          f"{os.cpu_count()} CPUs; old {args.old}, new {args.new}")
    records = []
    for task in tasks:
        keys = (["train_images_per_s", "predict_images_per_s"] if task["kind"] == "network"
                else ["forward", "forward_backward"])
        ratios = {key: [] for key in keys}
        values = {"old": [], "new": []}
        for rnd in range(args.rounds):
            order = ("old", "new") if rnd % 2 == 0 else ("new", "old")
            got = {build: measure(getattr(args, build), task) for build in order}
            for build in ("old", "new"):
                values[build].append(got[build])
            for key in keys:
                ratios[key].append(got["new"][key] / got["old"][key])
        label = task["name"] + (f" {task['threads']} thread(s) {task['dtype']}"
                                if task["kind"] == "network" else " 1 thread, GFLOP/s")
        print(f"\n{label}")
        for key in keys:
            old = np.median([v[key] for v in values["old"]])
            new = np.median([v[key] for v in values["new"]])
            print(f"  {key:<22} old {old:>10.1f}  new {new:>10.1f}  new/old "
                  f"{np.median(ratios[key]):.3f}  rounds: "
                  + " ".join(f"{r:.3f}" for r in ratios[key]))
        records.append({"task": task, "values": values, "ratios": ratios})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
