#!/usr/bin/env bash
# Runs the sparse-backpropagation experiments of docs/RESULTS.md ("Sparse backpropagation")
# and writes their outputs under docs/results/sparse-backprop/ (checkpoints are git-ignored).
# Usage: BREGMAN_DATA=../shared/data bash scripts/run_sparse_backprop_experiments.sh [PART...]
# PARTS: sweep (MNIST, 20 epochs, every rule at K = 4/16/64), mnist (100 epochs, 3 seeds),
# timing (MNIST, 10 epochs, 2 threads, one run at a time, twice), fashion (ConvNet, 15 epochs).
# Default: all. The accuracy runs go two at a time with one rayon thread each (as in RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=./target/release/bregman
out=${OUT:-docs/results/sparse-backprop}
parts=${*:-sweep mnist timing fashion}
# NAME ARGS... lines, run two at a time with one thread each.
pairs() {
  while read -r name args; do
    [ -n "$name" ] || continue
    echo "RAYON_NUM_THREADS=1 $bin train --out $out/$name --quiet $args"
  done | xargs -P 2 -I{} bash -c {}
}
for part in $parts; do
  case $part in
    sweep)
      {
        for opt in linbreg adabreg; do
          echo "mnist-mlp/sweep-20ep/e_${opt}_k1 --optimizer $opt --epochs 20"
          for k in 4 16 64; do for rule in none sqrt linear; do
            echo "mnist-mlp/sweep-20ep/e_${opt}_k${k}_${rule} --optimizer $opt --epochs 20 --sparse-backprop $k --sparse-backprop-catch-up $rule"
          done; done
        done
      } | pairs ;;
    mnist)
      {
        for s in 0 1 2; do
          echo "mnist-mlp/f_lb_exact_s$s --optimizer linbreg --seed $s"
          echo "mnist-mlp/f_lb_k4lin_s$s --optimizer linbreg --seed $s --sparse-backprop 4 --sparse-backprop-catch-up linear"
          echo "mnist-mlp/f_lb_k4sqrt_s$s --optimizer linbreg --seed $s --sparse-backprop 4 --sparse-backprop-catch-up sqrt"
          echo "mnist-mlp/f_lb_k16lin_s$s --optimizer linbreg --seed $s --sparse-backprop 16 --sparse-backprop-catch-up linear"
          echo "mnist-mlp/f_ab_exact_s$s --optimizer adabreg --seed $s"
          echo "mnist-mlp/f_ab_k4none_s$s --optimizer adabreg --seed $s --sparse-backprop 4 --sparse-backprop-catch-up none"
          echo "mnist-mlp/f_ab_k16sqrt_s$s --optimizer adabreg --seed $s --sparse-backprop 16 --sparse-backprop-catch-up sqrt"
          echo "mnist-mlp/f_sgd_s$s --optimizer sgd --seed $s"
        done
      } | pairs ;;
    timing)
      for rep in 1 2; do
        while read -r name args; do
          $bin train --out "$out/mnist-mlp/timing/t${rep}_$name" --quiet --epochs 10 $args
        done <<'RUNS'
lb_exact --optimizer linbreg
lb_k4lin --optimizer linbreg --sparse-backprop 4 --sparse-backprop-catch-up linear
lb_k16lin --optimizer linbreg --sparse-backprop 16 --sparse-backprop-catch-up linear
lb_k4sqrt --optimizer linbreg --sparse-backprop 4 --sparse-backprop-catch-up sqrt
sgd --optimizer sgd
ab_exact --optimizer adabreg
ab_k16sqrt --optimizer adabreg --sparse-backprop 16 --sparse-backprop-catch-up sqrt
RUNS
      done ;;
    fashion)
      {
        for s in 0 1 2; do
          sfx=$([ "$s" = 0 ] && echo "" || echo "_s$s")
          echo "fashion-convnet/fa_exact$sfx --experiment fashion-convnet --optimizer adabreg --epochs 15 --seed $s"
          echo "fashion-convnet/fa_k4sqrt$sfx --experiment fashion-convnet --optimizer adabreg --epochs 15 --sparse-backprop 4 --seed $s"
          echo "fashion-convnet/fa_k16sqrt$sfx --experiment fashion-convnet --optimizer adabreg --epochs 15 --sparse-backprop 16 --seed $s"
        done
        echo "fashion-convnet/fg_exact --experiment fashion-convnet-group --optimizer adabreg --epochs 15"
        echo "fashion-convnet/fg_k16sqrt --experiment fashion-convnet-group --optimizer adabreg --epochs 15 --sparse-backprop 16"
        echo "fashion-convnet/fadam --experiment fashion-convnet --optimizer adam --epochs 15"
      } | pairs ;;
    *) echo "unknown part $part (sweep, mnist, timing, fashion)" >&2; exit 2 ;;
  esac
done
