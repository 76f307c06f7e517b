#!/usr/bin/env python3
"""Print criterion medians (and GFLOP/s or GB/s where a throughput is set) as a Markdown table.

Usage: python3 scripts/bench_table.py GROUP   (reads target/criterion/GROUP/*/*/new/)
"""
import json, pathlib, sys

group = sys.argv[1]
root = pathlib.Path("target/criterion") / group
print("| function | input | median | throughput |")
print("|---|---|---|---|")
for est in sorted(root.glob("**/new/estimates.json")):
    parts = est.relative_to(root).parts[:-2]
    bench = json.loads((est.parent / "benchmark.json").read_text())
    med_ns = json.loads(est.read_text())["median"]["point_estimate"]
    tp = bench.get("throughput") or {}
    rate = ""
    if "Elements" in tp:
        rate = f"{tp['Elements'] / med_ns:.1f} GFLOP/s"
    elif "Bytes" in tp:
        rate = f"{tp['Bytes'] / med_ns:.1f} GB/s"
    med = f"{med_ns/1e6:.3f} ms" if med_ns > 1e5 else f"{med_ns/1e3:.1f} µs"
    fn = parts[0]
    inp = "/".join(parts[1:])
    print(f"| {fn} | {inp} | {med} | {rate} |")
