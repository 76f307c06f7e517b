#!/usr/bin/env bash
# 1 rank x 2 threads against 2 ranks x 1 thread, one Fashion ConvNet epoch each, alternated.
set -u
B=${BIN:-./target/release/bregman} # built with: cargo build --release --features mpi
export BREGMAN_DATA=${BREGMAN_DATA:-../shared/data} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$(dirname "$0")/.."
for opt in linbreg adam; do
  for round in 1 2; do
    rm -rf /tmp/dp-1x2 /tmp/dp-2x1
    s=$(date +%s.%N); RAYON_NUM_THREADS=2 $B train --experiment fashion-convnet --optimizer $opt --epochs 1 --out /tmp/dp-1x2 --quiet > /dev/null; e=$(date +%s.%N)
    echo "$opt round $round 1x2: process $(echo "$e - $s" | bc) s, epoch $(tail -1 /tmp/dp-1x2/metrics.csv | awk -F, '{print $12}') s"
    s=$(date +%s.%N); RAYON_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np 2 $B train --experiment fashion-convnet --optimizer $opt --epochs 1 --out /tmp/dp-2x1 --quiet > /dev/null; e=$(date +%s.%N)
    echo "$opt round $round 2x1: process $(echo "$e - $s" | bc) s, epoch $(tail -1 /tmp/dp-2x1/metrics.csv | awk -F, '{print $12}') s"
    paste -d' ' <(cut -d, -f3,6,8 /tmp/dp-1x2/metrics.csv | tail -1) <(cut -d, -f3,6,8 /tmp/dp-2x1/metrics.csv | tail -1)
  done
done
