#!/usr/bin/env python3
"""Each run's last epoch and its best-validation epoch, from `metrics.csv`.

The authors' notebooks keep the model of the best validation accuracy
(`train.best_model` of TimRoith/BregmanLearning: score = validation accuracy,
`>=`, so the latest of tied epochs) besides the last one; this prints both
views of every run directory given, as a Markdown table. Denoiser runs (no
accuracy) are listed by test SSIM.

Usage: python3 scripts/best_val_epoch.py RUN_DIR...
"""
import csv
import os
import sys


def pct(row, key):
    return f"{float(row[key]) * 100:.2f}%" if row.get(key) else "—"


def main(dirs):
    print("| run | epochs | last: test / N_total | best val (epoch) | its test / N_total / N_linear / N_conv |")
    print("|---|---|---|---|---|")
    for d in dirs:
        path = os.path.join(d, "metrics.csv")
        if not os.path.exists(path):
            continue
        rows = list(csv.DictReader(open(path)))
        if not rows:
            continue
        last, name = rows[-1], os.path.basename(os.path.normpath(d))
        if rows[0]["val_acc"]:
            best = max(rows, key=lambda r: (float(r["val_acc"]), int(r["epoch"])))
            print(
                f"| {name} | {len(rows)} | {pct(last, 'test_acc')} / {pct(last, 'n_total')} "
                f"| {pct(best, 'val_acc')} ({best['epoch']}) | {pct(best, 'test_acc')} / "
                f"{pct(best, 'n_total')} / {pct(best, 'n_linear')} / {pct(best, 'n_conv')} |"
            )
        else:
            best = max(rows, key=lambda r: (float(r["test_ssim"] or 0), int(r["epoch"])))
            print(
                f"| {name} | {len(rows)} | SSIM {float(last['test_ssim']):.3f} / {pct(last, 'n_total')} "
                f"| — | SSIM {float(best['test_ssim']):.3f} (epoch {best['epoch']}) / {pct(best, 'n_total')} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
