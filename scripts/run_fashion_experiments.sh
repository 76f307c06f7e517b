#!/usr/bin/env bash
# Runs the Fashion-MNIST ConvNet experiments of Tables 1 and 2 and writes their
# outputs under docs/results/fashion-convnet/ (checkpoints are git-ignored).
# Usage: BREGMAN_DATA=../shared/data bash scripts/run_fashion_experiments.sh [EPOCHS] [RUN...]
# RUN names: adabreg linbreg linbreg-momentum proxgd adam lasso prune group-adabreg group-linbreg
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-20}
shift || true
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(adabreg linbreg linbreg-momentum proxgd adam group-adabreg group-linbreg)
cargo build --release --quiet
out=${OUT:-docs/results/fashion-convnet}
# The authors step the plateau scheduler on the training loss; PLATEAU=val-acc gives SPEC §5.
plateau=${PLATEAU:-train-loss}
for r in "${runs[@]}"; do
  echo "== $r"
  case $r in
    group-*) ./target/release/bregman train --experiment fashion-convnet-group --optimizer "${r#group-}" \
               --epochs "$epochs" --out "$out/$r" --plateau-metric "$plateau" --quiet ;;
    *)       ./target/release/bregman train --experiment fashion-convnet --optimizer "$r" \
               --epochs "$epochs" --out "$out/$r" --plateau-metric "$plateau" --quiet ;;
  esac
done
