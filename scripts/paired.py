#!/usr/bin/env python3
"""Before/after roofline comparison on a noisy machine: runs two roofline binaries
alternately, ROUNDS times each, and prints per row the median over rounds of the after/before
ratio of `frac` (kernel GB/s over the copy of the same bytes, timed in the same process) and of
the time, so drift between runs cancels pair by pair.

    scripts/paired.py BEFORE_BIN AFTER_BIN [--rounds 5] [roofline args...]

e.g. `git worktree add /tmp/before <commit>` and build its roofline with
`CARGO_TARGET_DIR=/tmp/before/target cargo build --release --example roofline` there, then
`scripts/paired.py /tmp/before/target/release/examples/roofline \
    target/release/examples/roofline --rounds 5 --no-naive --filter bn_`.
A row whose median frac ratio is below 0.95 is marked `<<`.
"""
import json
import statistics
import subprocess
import sys


def run(binary, args):
    out = subprocess.run([binary, "--json", *args], capture_output=True, text=True, check=True)
    rows = {}
    for line in out.stdout.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        key = (r["kernel"], r.get("dtype", "f32"), r["layout"], r["shape"], r["threads"], r["isa"])
        rows[key] = r
    return rows


def main():
    argv = sys.argv[1:]
    if len(argv) < 2:
        sys.exit(__doc__)
    before, after, rest = argv[0], argv[1], argv[2:]
    rounds = 5
    if "--rounds" in rest:
        i = rest.index("--rounds")
        rounds = int(rest[i + 1])
        rest = rest[:i] + rest[i + 2:]
    fr, tr = {}, {}
    for k in range(rounds):
        # Alternate which goes first, so a drift within a round favours neither.
        if k % 2 == 0:
            a = run(before, rest)
            b = run(after, rest)
        else:
            b = run(after, rest)
            a = run(before, rest)
        for key in a.keys() & b.keys():
            fr.setdefault(key, []).append(b[key]["frac"] / a[key]["frac"])
            tr.setdefault(key, []).append(a[key]["ms"] / b[key]["ms"])
        print(f"round {k + 1}/{rounds} done", file=sys.stderr)
    print(f"{'kernel':16} {'type':4} {'layout':6} {'shape':16} thr {'isa':8} frac×  (min–max)   speed×")
    for key in sorted(fr):
        f, t = fr[key], tr[key]
        m = statistics.median(f)
        flag = "  <<" if m < 0.95 else ""
        print(f"{key[0]:16} {key[1]:4} {key[2]:6} {key[3]:16} {key[4]:3} {key[5]:8} {m:5.2f}  "
              f"({min(f):.2f}–{max(f):.2f})  {statistics.median(t):5.2f}{flag}")


if __name__ == "__main__":
    main()
