#!/usr/bin/env bash
# Runs the denoising experiment of Sec. 4.6 (AdaBreg with row sparsity, and SGD for comparison)
# and writes the outputs under docs/results/mnist-denoiser/ (checkpoints are git-ignored).
# Usage: BREGMAN_DATA=../shared/data bash scripts/run_denoiser_experiments.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-20}
cargo build --release --quiet
out=${OUT:-docs/results/mnist-denoiser}
# The authors step the plateau scheduler on the training loss; PLATEAU=val-acc gives SPEC §5.
plateau=${PLATEAU:-train-loss}
echo "== adabreg"
./target/release/bregman train --experiment mnist-denoiser --optimizer adabreg --epochs "$epochs" --out "$out/adabreg-l0.07" --plateau-metric "$plateau" --quiet
echo "== sgd"
./target/release/bregman train --experiment mnist-denoiser --optimizer sgd --epochs "$epochs" --out "$out/sgd" --plateau-metric "$plateau" --quiet
