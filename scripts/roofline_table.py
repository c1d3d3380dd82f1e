#!/usr/bin/env python3
"""Markdown tables (as in README.md) from the roofline's JSON lines.

    cargo run --release --example roofline -- --json > roofline.json
    python3 scripts/roofline_table.py roofline.json

One table per kernel: each layout and shape with GB/s and `frac` (÷ the plain-store copy of
the same bytes, same size and thread count, timed alternately with the kernel: the median of
the per-pair ratios) per thread count, the interquartile range of those ratios (`IQR`, when
the JSON has it), `frac_nt` (÷ the non-temporal copy) and the speedup over the naive scalar
version on one thread.
"""

import json
import sys
from collections import defaultdict

ORDER = ["dropout", "dropout bf16", "dropout f16", "dropout_mask", "dropout_mask bf16",
         "dropout_mask f16", "dropout_backward", "dropout_backward bf16", "dropout_backward f16",
         "dropout_channels", "dropout_channels bf16", "dropout_channels f16", "bn_train", "bn_train bf16", "bn_train f16",
         "two_pass_bound", "bn_stats", "bn_stats bf16", "bn_stats f16", "bn_apply", "bn_apply bf16",
         "bn_apply f16", "bn_infer", "bn_infer bf16", "bn_infer f16", "bn_add_relu",
         "bn_add_relu bf16", "bn_add_relu f16", "bn_backward", "bn_backward bf16", "bn_backward f16",
         "bn_backward_apply", "bn_backward_apply bf16", "bn_backward_apply f16"]
LAYOUTS = {"flat": "flat", "nchw": "NCHW", "nc": "NC", "nhwc": "NHWC"}


def main():
    rows = []
    for path in sys.argv[1:] or ["/dev/stdin"]:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.startswith("{")]
    by = defaultdict(dict)
    threads = sorted({r["threads"] for r in rows})
    for r in rows:
        # Rows of another element type than f32 get a table of their own ("dropout bf16").
        dtype = r.get("dtype", "f32")
        kernel = r["kernel"] if dtype == "f32" else f'{r["kernel"]} {dtype}'
        by[(kernel, r["layout"], r["shape"])][r["threads"]] = r
    # Kernels this script does not know yet go last, so no row is left out.
    extra = sorted({k[0] for k in by} - set(ORDER))
    for kernel in ORDER + extra:
        keys = [k for k in by if k[0] == kernel]
        if not keys:
            continue
        keys.sort(key=lambda k: (list(LAYOUTS).index(k[1]), by[k][min(by[k])]["elems"]))
        print(f"\n**{kernel}**\n")
        head = "| layout | shape |"
        for t in threads:
            head += f" GB/s ({t}t) | frac ({t}t) | IQR ({t}t) | frac_nt ({t}t) |"
        head += " vs naive (1t) |"
        print(head)
        print("|---|---|" + "---:|" * (4 * len(threads) + 1))
        for k in keys:
            line = f"| {LAYOUTS[k[1]]} | {k[2]} |"
            for t in threads:
                r = by[k].get(t)
                iqr = (f"{r['frac_q3'] - r['frac_q1']:.2f}" if r and "frac_q1" in r else "–")
                line += (f" {r['gbps']:.1f} | {r['frac']:.2f} | {iqr} | {r['frac_nt']:.2f} |"
                         if r else " – | – | – | – |")
            one = by[k].get(1, {}).get("speedup")
            line += f" {one:.1f}× |" if one else " – |"
            print(line)


if __name__ == "__main__":
    main()
