#!/usr/bin/env bash
# The runs of docs/RESULTS.md's Table 1 / Table 2 / denoiser reproduction (#18).
# Usage: BREGMAN_DATA=../shared/data bash scripts/run_reproduction.sh JOBFILE [OUT]
# JOBFILE: one run per line, `NAME EPOCHS ARGS...` (ARGS are `bregman train` flags;
# `#` starts a comment). A run whose checkpoint exists is resumed up to EPOCHS, so a
# sweep run of 20 epochs becomes the first 20 epochs of the long run of the same
# name, and an interrupted job file can simply be started again.
# Every run has one rayon thread (two job files run side by side on 2 cores),
# early stopping after 15 epochs without +0.1 pp of validation accuracy (SSIM
# for the denoiser) unless ARGS say otherwise, and its data directory recorded as
# $BREGMAN_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$1
out=${2:-runs/t18}
: "${BREGMAN_DATA:?set BREGMAN_DATA to the directory holding fashion-mnist/ and mnist/}"
export BREGMAN_DATA RAYON_NUM_THREADS=1
# The runs use a copy of the binary named after the commit, so rebuilding while
# they run changes nothing under them.
mkdir -p "$out"
bin="$out/bregman-$(git rev-parse --short HEAD)"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet
  # Copied under a temporary name and renamed, so a second job file started
  # at the same time never sees (or runs) a half-written binary.
  cp ./target/release/bregman "$bin.$$.tmp"
  mv -f "$bin.$$.tmp" "$bin"
fi
while read -r name epochs args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  dir="$out/$name"
  echo "== $(date -u +%H:%M:%S) $name ($epochs epochs): $args"
  if [ -f "$dir/checkpoint.safetensors" ]; then
    "$bin" train --resume "$dir" --epochs "$epochs" --quiet || echo "!! $name failed"
  else
    # shellcheck disable=SC2086
    "$bin" train $args --epochs "$epochs" --out "$dir" --quiet || echo "!! $name failed"
  fi
done < "$jobs"
