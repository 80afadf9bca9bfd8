#!/usr/bin/env bash
# Predictor quality on the bundled small models, end to end: convert, record activations on the
# training sample, train the predictors, then dev.txt perplexity dense vs predicted (predicted neurons only, with recall) vs flash (the flash runtime).
# Usage: scripts/predictor-quality.sh [WORK_DIR] [TOKENS]     (defaults: /tmp/llmflash-predictors, 81920)
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
work="${1:-/tmp/llmflash-predictors}"
tokens="${2:-81920}"
mkdir -p "$work"
for m in opt-mini falcon-mini-relu; do
  b="$work/$m.bundle"
  echo "== $m"
  "$root/llmflash" convert --input "$root/testdata/models/$m" --output "$b" --force >/dev/null 2>&1
  rm -rf "$work/$m.acts"
  start=$(date +%s.%N)
  "$root/llmflash" record --model "$b" --text "$root/testdata/reference/train-sample.txt" --tokens "$tokens" --output "$work/$m.acts" 2>/dev/null
  "$root/llmflash" train-predictor --model "$b" --activations "$work/$m.acts"
  end=$(date +%s.%N)
  echo "record + train: $(echo "$end - $start" | bc) s"
  for mode in dense predicted flash; do
    echo -n "$mode: "
    "$root/llmflash" perplexity --model "$b" --text "$root/testdata/reference/dev.txt" --mode "$mode"
  done
done
