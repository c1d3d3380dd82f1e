#!/usr/bin/env python3
"""Side-by-side throughput of dropnorm, PyTorch and ONNX Runtime on this machine.

Setup (once; this script installs nothing):

    python3 -m venv .venv-compare
    .venv-compare/bin/pip install torch onnxruntime onnx numpy matplotlib
    .venv-compare/bin/python scripts/compare.py            # full run, ~15 min on 2 cores
    .venv-compare/bin/python scripts/compare.py --quick    # smaller shapes, 1 round

What it does:

* builds and runs dropnorm's roofline (`cargo run --release --example roofline -- --json`),
  which also measures this machine's copy bandwidth per size and thread count;
* runs the same workloads in PyTorch (NCHW contiguous, channels_last for NHWC, 2-D for NC:
  `F.dropout`, `native_dropout` (mask), `native_dropout_backward`, `native_batch_norm`
  training and eval, eval + `add_` + `relu_` for the residual tail,
  `native_batch_norm_backward`) and in ONNX Runtime (a one-node `BatchNormalization` model,
  and BatchNormalization -> Add -> Relu for the residual tail; NCHW and NC only: ONNX's
  BatchNormalization has the channel at axis 1);
* in f32, and for every row the roofline has in bf16 and f16 also in PyTorch's bf16 and f16
  (activations in the type; weights and statistics f32, PyTorch's mixed precision; ONNX
  Runtime's CPU BatchNormalization takes f32 only);
* at the same thread counts (`torch.set_num_threads`, ORT `intra_op_num_threads`), with
  outputs preallocated where the peer allows (`.out` variants in PyTorch, IOBinding in ORT;
  `F.dropout` and `native_dropout` have no `out=`);
* alternating the systems round by round (the order rotates), so drift hits all alike, and
  keeping the median over rounds;
* prints one table per workload: GB/s of the workload's minimum traffic, the same bytes for
  every system (8 B/element; 12 B for add+ReLU and backward; 8 B + 1 bit for dropout with
  its mask, which PyTorch stores as one byte per element; half of that for bf16 and f16 tensors, except the mask), the fraction of the plain-store copy bandwidth that the roofline measured at that
  size in the same round, and dropnorm's speedup over each peer;
* writes a bar chart (PNG) and, with --json-out, every measurement.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KERNELS = [
    "dropout",
    "dropout_mask",
    "dropout_backward",
    "bn_train",
    "bn_infer",
    "bn_add_relu",
    "bn_backward",
]
# Tensors each kernel streams (read or written), and the extra bytes per element (the mask).
STREAMS = {
    "dropout": (2, 0.0),
    "dropout_mask": (2, 1 / 8),
    "dropout_backward": (2, 0.0),
    "bn_train": (2, 0.0),
    "bn_infer": (2, 0.0),
    "bn_add_relu": (3, 0.0),
    "bn_backward": (3, 0.0),
}
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2}
DTYPES = ["f32", "bf16", "f16"]


def bytes_per_elem(kernel, dtype):
    streams, extra = STREAMS[kernel]
    return streams * DTYPE_BYTES[dtype] + extra


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    ap.add_argument("--budget-ms", type=int, default=200, help="time budget per measurement")
    ap.add_argument("--quick", action="store_true", help="roofline --quick shapes, 1 round")
    ap.add_argument("--filter", nargs="+", default=None,
                    help="only rows whose 'kernel layout shape' contain one of these")
    ap.add_argument("--png", default="compare.png", help="bar chart output")
    ap.add_argument("--json-out", default=None, help="write all measurements here")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.rounds = 1
    return a


def median_time(f, budget_s):
    """Median seconds of f() over repetitions filling the budget (>= 5, one warm-up), as the
    roofline measures."""
    f()
    runs = []
    start = time.perf_counter()
    while len(runs) < 5 or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        f()
        runs.append(time.perf_counter() - t)
        if len(runs) >= 1000:
            break
    return statistics.median(runs)


# ----------------------------------------------------------------------------- dropnorm


def build_roofline():
    subprocess.run(
        ["cargo", "build", "--release", "--example", "roofline"], cwd=ROOT, check=True
    )
    exe = ROOT / "target" / "release" / "examples" / "roofline"
    if not exe.exists():
        sys.exit(f"compare.py: {exe} was not built")
    return exe


def run_dropnorm(exe, threads, args):
    cmd = [str(exe), "--json", "--no-naive", "--threads", str(threads),
           "--budget-ms", str(args.budget_ms)]
    if args.quick:
        cmd.append("--quick")
    rows, seen = [], set()
    for f in args.filter or [None]:
        c = cmd + (["--filter", f] if f else [])
        out = subprocess.run(c, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                if key(r) not in seen:
                    seen.add(key(r))
                    rows.append(r)
    # Kernels only: the roofline's reference rows (two_pass_bound) have no peer workload.
    return [r for r in rows if r["kernel"] in KERNELS]


def parse_shape(layout, shape):
    dims = [int(v) for v in shape.strip("()[]").split(",")]
    return dims


# ----------------------------------------------------------------------------- PyTorch


class Torch:
    name = "pytorch"

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.version = torch.__version__

    def tensor(self, layout, dims, seed, dtype="f32"):
        torch = self.torch
        g = torch.Generator().manual_seed(seed)
        if layout == "flat":
            t = torch.rand(dims[0], generator=g)
        elif layout == "nc":
            t = torch.randn(dims[0], dims[1], generator=g) + 3.0
        else:
            t = torch.randn(*dims, generator=g) + 3.0
        t = t.to({"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype])
        if layout == "nhwc":
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def workload(self, kernel, layout, dims, dtype="f32"):
        """A zero-argument callable running the workload, or None if PyTorch has none."""
        torch, F = self.torch, self.F
        aten = torch.ops.aten
        x = self.tensor(layout, dims, 1, dtype)
        if kernel == "dropout":
            return lambda: F.dropout(x, 0.5, True)
        if kernel == "dropout_mask":
            return lambda: torch.native_dropout(x, 0.5, True)
        if kernel == "dropout_backward":
            _, mask = torch.native_dropout(x, 0.5, True)
            dx = torch.empty_like(x)
            return lambda: aten.native_dropout_backward.out(x, mask, 2.0, out=dx)
        c = dims[1]
        w, b = torch.full((c,), 1.5), torch.full((c,), 0.25)
        rm, rv = torch.zeros(c), torch.ones(c)
        y, sm, si = torch.empty_like(x), torch.empty(c), torch.empty(c)
        if kernel == "bn_train":
            return lambda: aten.native_batch_norm.out(
                x, w, b, rm, rv, True, 0.1, 1e-5, out=y, save_mean=sm, save_invstd=si)
        if kernel == "bn_infer":
            return lambda: aten.native_batch_norm.out(
                x, w, b, rm, rv, False, 0.1, 1e-5, out=y, save_mean=sm, save_invstd=si)
        if kernel == "bn_add_relu":
            r = self.tensor(layout, dims, 2, dtype)

            def add_relu():
                aten.native_batch_norm.out(
                    x, w, b, rm, rv, False, 0.1, 1e-5, out=y, save_mean=sm, save_invstd=si)
                y.add_(r).relu_()

            return add_relu
        if kernel == "bn_backward":
            dy = self.tensor(layout, dims, 2, dtype)
            _, mean, invstd = aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)
            dx, dw, db = torch.empty_like(x), torch.empty(c), torch.empty(c)
            return lambda: aten.native_batch_norm_backward.out(
                dy, x, w, rm, rv, mean, invstd, True, 1e-5, [True, True, True],
                out0=dx, out1=dw, out2=db)
        return None

    def set_threads(self, t):
        self.torch.set_num_threads(t)


# ----------------------------------------------------------------------------- ONNX Runtime


class Ort:
    name = "onnxruntime"

    def __init__(self):
        import numpy as np
        import onnx
        import onnxruntime as ort

        self.np, self.onnx, self.ort = np, onnx, ort
        self.version = ort.__version__
        self.threads = 1

    def set_threads(self, t):
        self.threads = t

    def model(self, dims, c, add_relu):
        from onnx import TensorProto, helper, numpy_helper

        np = self.np
        inits = [
            numpy_helper.from_array(np.full(c, 1.5, np.float32), "scale"),
            numpy_helper.from_array(np.full(c, 0.25, np.float32), "bias"),
            numpy_helper.from_array(np.zeros(c, np.float32), "mean"),
            numpy_helper.from_array(np.ones(c, np.float32), "var"),
        ]
        inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)]
        bn_out = "BN" if add_relu else "Y"
        nodes = [helper.make_node("BatchNormalization", ["X", "scale", "bias", "mean", "var"],
                                  [bn_out], epsilon=1e-5)]
        if add_relu:
            inputs.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, dims))
            nodes += [helper.make_node("Add", ["BN", "R"], ["S"]),
                      helper.make_node("Relu", ["S"], ["Y"])]
        graph = helper.make_graph(nodes, "bn", inputs,
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims)],
                                  initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
        m.ir_version = 8
        return m.SerializeToString()

    def workload(self, kernel, layout, dims, dtype="f32"):
        if (kernel not in ("bn_infer", "bn_add_relu") or layout not in ("nchw", "nc")
                or dtype != "f32"):
            return None
        np, ort = self.np, self.ort
        add_relu = kernel == "bn_add_relu"
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(self.model(dims, dims[1], add_relu), so,
                                    providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(1)
        x = (rng.standard_normal(dims, dtype=np.float32) + 3.0)
        y = np.empty_like(x)
        r = rng.standard_normal(dims, dtype=np.float32)
        io = sess.io_binding()
        io.bind_cpu_input("X", x)
        if add_relu:
            io.bind_cpu_input("R", r)
        io.bind_output("Y", "cpu", 0, np.float32, list(dims), y.ctypes.data)
        # The binding holds raw pointers: the closure keeps x, r and y alive with it.
        keep = (x, r, y)
        return lambda: (sess.run_with_iobinding(io), keep)


# ----------------------------------------------------------------------------- driver


def key(row):
    return (row["kernel"], row["layout"], row["shape"], row["threads"], row.get("dtype", "f32"))


def measure_peer(peer, rows, threads, args):
    peer.set_threads(threads)
    out = {}
    for row in rows:
        dims = parse_shape(row["layout"], row["shape"])
        dtype = row.get("dtype", "f32")
        f = peer.workload(row["kernel"], row["layout"], dims, dtype)
        if f is None:
            continue
        secs = median_time(f, args.budget_ms / 1000)
        del f
        gc.collect()
        out[key(row)] = bytes_per_elem(row["kernel"], dtype) * row["elems"] / secs / 1e9
    return out


def main():
    args = parse_args()
    exe = build_roofline()
    peers = []
    if not args.no_torch:
        peers.append(Torch())
    if not args.no_ort:
        peers.append(Ort())
    systems = ["dropnorm"] + [p.name for p in peers]
    by_name = {p.name: p for p in peers}
    gbps = defaultdict(list)  # (system, key) -> [GB/s per round]
    copy = defaultdict(list)  # key -> [copy GB/s per round]
    info = {}
    for rnd in range(args.rounds):
        for t in args.threads:
            order = systems[rnd % len(systems):] + systems[: rnd % len(systems)]
            rows = None  # dropnorm's rows define the workloads (round 0 runs it first)
            peer_results = {}
            for s in order:
                print(f"round {rnd + 1}/{args.rounds}, {t} thread(s): {s}", file=sys.stderr)
                if s == "dropnorm":
                    rows = run_dropnorm(exe, t, args)
                    for r in rows:
                        gbps[("dropnorm", key(r))].append(r["gbps"])
                        copy[key(r)].append(r["copy_gbps"])
                        info[key(r)] = r
                else:
                    known = rows if rows is not None else [v for k, v in info.items() if k[3] == t]
                    peer_results[s] = measure_peer(by_name[s], known, t, args)
            for s, res in peer_results.items():
                for k, v in res.items():
                    gbps[(s, k)].append(v)

    med = {k: statistics.median(v) for k, v in gbps.items()}
    cmed = {k: statistics.median(v) for k, v in copy.items()}
    print_tables(systems, med, cmed, info)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": {p.name: p.version for p in peers},
        "rounds": args.rounds,
        "budget_ms": args.budget_ms,
    }
    print("\n" + json.dumps(meta))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "rows": [
                {"system": s, "kernel": k[0], "layout": k[1], "shape": k[2], "threads": k[3],
                 "dtype": k[4], "gbps": v, "gelems": v / bytes_per_elem(k[0], k[4]), "copy_gbps": cmed[k], "frac": v / cmed[k]}
                for (s, k), v in sorted(med.items())]}, f, indent=1)
    plot(systems, med, cmed, info, args.png, meta)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def print_tables(systems, med, cmed, info):
    keys = sorted(info, key=lambda k: (KERNELS.index(k[0]), DTYPES.index(k[4]), k[3], k[1],
                                       info[k]["elems"]))
    peers = systems[1:]
    for kernel, dtype in [(k, d) for k in KERNELS for d in DTYPES]:
        ks = [k for k in keys if k[0] == kernel and k[4] == dtype]
        if not ks:
            continue
        print(f"\n## {kernel} {dtype} ({bytes_per_elem(kernel, dtype):g} B/element)\n")
        head = "| layout | shape | threads | copy GB/s | dropnorm GB/s (frac) |"
        for p in peers:
            head += f" {p} GB/s (frac) | vs {p} |"
        print(head)
        print("|" + "---|" * (5 + 2 * len(peers)))
        for k in ks:
            d = med.get(("dropnorm", k))
            line = f"| {k[1]} | {k[2]} | {k[3]} | {cmed[k]:.1f} | {d:.1f} ({d / cmed[k]:.2f}) |"
            for p in peers:
                v = med.get((p, k))
                if v is None:
                    line += " – | – |"
                else:
                    line += f" {v:.1f} ({v / cmed[k]:.2f}) | {d / v:.1f}× |"
            print(line)


def plot(systems, med, cmed, info, png, meta):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)
        return
    keys = sorted(info, key=lambda k: (KERNELS.index(k[0]), DTYPES.index(k[4]), k[3], k[1],
                                       info[k]["elems"]))
    threads = sorted({k[3] for k in keys})
    fig, axes = plt.subplots(len(threads), 1, figsize=(max(12, 0.32 * len(keys)), 5 * len(threads)),
                             squeeze=False)
    colors = {"dropnorm": "#d62728", "pytorch": "#1f77b4", "onnxruntime": "#7f7f7f"}
    for ax, t in zip(axes[:, 0], threads):
        ks = [k for k in keys if k[3] == t]
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            xs, ys = [], []
            for j, k in enumerate(ks):
                v = med.get((s, k))
                if v is not None:
                    xs.append(j + (i - (len(systems) - 1) / 2) * width)
                    ys.append(v / cmed[k])
            ax.bar(xs, ys, width, label=s, color=colors.get(s))
        ax.set_xticks(range(len(ks)))
        ax.set_xticklabels([f"{k[0]} {k[4]} {k[1]} {k[2]}" for k in ks], rotation=70, ha="right",
                           fontsize=7)
        ax.axhline(1.0, color="black", lw=0.6, ls="--")
        top = max([med[(s, k)] / cmed[k] for s in systems for k in ks if (s, k) in med] + [1])
        ax.set_ylim(0, top * 1.1)
        ax.set_ylabel("fraction of copy bandwidth")
        ax.set_title(f"{t} thread(s)")
        ax.legend()
    fig.suptitle(f"dropnorm vs peers — {meta['cpu']}, {meta['date']} "
                 f"(higher is better; copy = plain-store copy of the same bytes)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"chart: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
