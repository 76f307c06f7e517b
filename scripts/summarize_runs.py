#!/usr/bin/env python3
"""Summarise run directories (metrics.csv + config.toml) as a Markdown table.

Usage: python3 scripts/summarize_runs.py RUN_DIR [RUN_DIR ...]
Columns: run, epochs, wall time (sum of the per-epoch seconds), final and best validation
accuracy, final test accuracy, final N_total / N_linear / N_conv.
"""
import csv, pathlib, sys

def pct(x):
    return "" if x in ("", None) else f"{100 * float(x):.2f}%"

print("| run | epochs | wall time | final val acc | best val acc (epoch) | final test acc | N_total | N_linear | N_conv |")
print("|---|---|---|---|---|---|---|---|---|")
for d in sys.argv[1:]:
    d = pathlib.Path(d)
    rows = list(csv.DictReader(open(d / "metrics.csv")))
    if not rows:
        continue
    last = rows[-1]
    accs = [(float(r["val_acc"]), int(r["epoch"])) for r in rows if r["val_acc"]]
    best = max(accs, key=lambda a: a[0]) if accs else None
    secs = sum(float(r["seconds"]) for r in rows)
    best_s = f"{100 * best[0]:.2f}% ({best[1]})" if best else ""
    print(f"| {d.name} | {last['epoch']} | {secs:.0f} s | {pct(last['val_acc'])} | {best_s} | {pct(last['test_acc'])} "
          f"| {pct(last['n_total'])} | {pct(last['n_linear'])} | {pct(last['n_conv'])} |")
