#!/usr/bin/env bash
# Runs the MNIST MLP experiments of Fig. 2/3 on the full data and writes their
# outputs under docs/results/mnist-mlp/ (checkpoints are git-ignored).
# Usage: BREGMAN_DATA=../shared/data bash scripts/run_mnist_experiments.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-30}
cargo build --release --quiet
out=${OUT:-docs/results/mnist-mlp}
# The authors step the plateau scheduler on the training loss; PLATEAU=val-acc gives SPEC §5.
plateau=${PLATEAU:-train-loss}
run() { # name, then flags
  local name=$1; shift
  echo "== $name"
  ./target/release/bregman train --experiment mnist-mlp --epochs "$epochs" --out "$out/$name" --plateau-metric "$plateau" --quiet "$@"
}
for seed in 0 1 2; do
  run "sgd-seed$seed" --optimizer sgd --seed "$seed"
  run "linbreg-l0.1-seed$seed" --optimizer linbreg --lambda 0.1 --seed "$seed"
done
run linbreg-l0.001-seed0 --optimizer linbreg --lambda 0.001
run proxgd-l0.0001-seed0 --optimizer proxgd --lambda 0.0001
run linbreg-momentum-l0.1-seed0 --optimizer linbreg-momentum --lambda 0.1
run adabreg-l0.1-seed0 --optimizer adabreg --lambda 0.1
