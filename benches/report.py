#!/usr/bin/env python3
"""Turns criterion's results for the frame benches into the markdown tables of
docs/benchmarks.md ("Frame path").

    python3 benches/report.py [CRITERION_DIR]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion. Each
cell is the throughput of the fastest of criterion's samples (GB/s = 1e9 bytes/s; ns
for size 0 and for the header group): on a machine shared with other jobs, noise only
ever adds time, and medians of the same loop were seen to swing 3x between groups.
Set STAT=median for criterion's median instead. A ratio is baseline time / ours time,
so > 1 means ringwire is faster.
"""
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

SIZE_NAMES = {0: "0", 2: "2", 125: "125", 126: "126", 1024: "1 KiB", 16384: "16 KiB", 65536: "64 KiB", 1048576: "1 MiB"}

# group prefix -> (ours, [baselines]) pairs for the ratio columns
RATIOS = {
    "unmask": [("ringwire", ["byte loop", "fastwebsockets", "ringwire fallback"])],
    "utf8": [("ringwire", ["std"]), ("ringwire streamed", ["std"])],
    "header": [("ringwire", ["tungstenite"])],
    "decode": [("ringwire", ["byte loop + std", "tungstenite"])],
    "encode": [("ringwire server", ["tungstenite server"]), ("ringwire client", ["tungstenite client"])],
}


def load(root):
    groups = defaultdict(lambda: defaultdict(dict))  # group -> function -> size -> ns
    for bench in root.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        size = int(meta["value_str"])
        if os.environ.get("STAT") == "median":
            est = json.loads((bench.parent / "estimates.json").read_text())
            ns = est["median"]["point_estimate"]
        else:
            sample = json.loads((bench.parent / "sample.json").read_text())
            ns = min(t / n for t, n in zip(sample["times"], sample["iters"]))
        groups[meta["group_id"]][meta["function_id"]][size] = ns
    return groups


def cell(ns, size, per_element):
    if per_element or size == 0:
        return f"{ns:.1f} ns"
    return f"{size / ns:.2f}"


def table(group, funcs):
    per_element = group == "header"
    kind = next(k for k in RATIOS if group.startswith(k))
    names = list(funcs)
    # ours first, then the other ringwire kernels, then the baselines
    names.sort(key=lambda n: (not n.startswith("ringwire"), n != RATIOS[kind][0][0], n))
    ratio_cols = [(o, b) for o, bs in RATIOS[kind] for b in bs if o in funcs and b in funcs]
    unit = "ns per header" if per_element else "GB/s"
    head = ["size"] + [f"{n}" for n in names] + [f"{o} / {b}" for o, b in ratio_cols]
    lines = [f"**{group}** ({unit}; ratio = how many times faster ours is)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in sorted({s for f in funcs.values() for s in f}):
        row = [SIZE_NAMES.get(size, str(size))]
        row += [cell(funcs[n][size], size, per_element) if size in funcs[n] else "" for n in names]
        for o, b in ratio_cols:
            if size in funcs[o] and size in funcs[b]:
                row.append(f"{funcs[b][size] / funcs[o][size]:.2f}x")
            else:
                row.append("")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        root = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    groups = load(root)
    if not groups:
        sys.exit(f"no criterion results under {root}")
    order = ["unmask", "utf8", "header", "decode", "encode"]
    for g in sorted(groups, key=lambda g: (order.index(next(k for k in order if g.startswith(k))), g)):
        print(table(g, groups[g]))
        print()


if __name__ == "__main__":
    main()
