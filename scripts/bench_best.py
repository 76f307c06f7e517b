#!/usr/bin/env python3
"""Best-of-runs table from saved criterion directories.

Usage: python3 scripts/bench_best.py DIR [DIR ...]
Each DIR is a copy of target/criterion/GROUP taken after one `cargo bench` run.
Prints, per function/input, the best (lowest) median over the runs, all medians,
and the throughput at the best median.
"""
import json, pathlib, sys

rows = {}
for d in sys.argv[1:]:
    root = pathlib.Path(d)
    for est in root.glob("**/new/estimates.json"):
        key = est.relative_to(root).parts[:-2]
        med = json.loads(est.read_text())["median"]["point_estimate"]
        tp = json.loads((est.parent / "benchmark.json").read_text()).get("throughput") or {}
        rows.setdefault(key, {"meds": [], "tp": tp})["meds"].append(med)

def fmt(ns):
    return f"{ns/1e6:.3f} ms" if ns > 1e5 else f"{ns/1e3:.1f} µs"

print("| function | input | best median | all medians | throughput at best |")
print("|---|---|---|---|---|")
for key in sorted(rows, key=lambda k: (k[1:], k[0])):
    r = rows[key]
    best = min(r["meds"])
    tp = r["tp"]
    rate = ""
    if "Elements" in tp:
        # Elements are FLOPs in the GEMM bench (billions per second) and
        # images in the train-step bench (a few thousand per second).
        per_s = tp["Elements"] / best * 1e9
        rate = f"{per_s / 1e9:.1f} GFLOP/s" if per_s >= 1e9 else f"{per_s:,.0f} images/s"
    elif "Bytes" in tp:
        rate = f"{tp['Bytes'] / best:.1f} GB/s"
    print(f"| {key[0]} | {'/'.join(key[1:])} | {fmt(best)} | {', '.join(fmt(m) for m in r['meds'])} | {rate} |")
