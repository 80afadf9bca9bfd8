#!/usr/bin/env bash
# Look-ahead predictor quality on the bundled small models, with predictor-quality.sh's procedure:
# convert, record activations on the training sample, train-predictor (defaults, look-ahead on), then a
# per-layer table from predictors.json's training info: the own predictor's held-out recall and
# densities beside the look-ahead's (reads layer l-1's FFN input, predicts layer l) held-out recall,
# precision and predicted density. All figures are on the held-out last 10% of the recorded tokens.
# Usage: scripts/lookahead-recall.sh [WORK_DIR] [TOKENS]     (defaults: /tmp/llmflash-lookahead, 81920)
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
work="${1:-/tmp/llmflash-lookahead}"
tokens="${2:-81920}"
command -v jq >/dev/null || { echo "lookahead-recall.sh: needs jq" >&2; exit 2; }
mkdir -p "$work"
for m in opt-mini falcon-mini-relu; do
  b="$work/$m.bundle"
  echo "== $m ($tokens recorded tokens)"
  "$root/llmflash" convert --input "$root/testdata/models/$m" --output "$b" --force >/dev/null 2>&1
  rm -rf "$work/$m.acts"
  start=$(date +%s.%N)
  "$root/llmflash" record --model "$b" --text "$root/testdata/reference/train-sample.txt" --tokens "$tokens" --output "$work/$m.acts" 2>/dev/null >/dev/null
  "$root/llmflash" train-predictor --model "$b" --activations "$work/$m.acts" > "$work/$m.train.txt"
  end=$(date +%s.%N)
  echo "record + train: $(echo "$end - $start" | bc) s"
  jq -r '
    def pct: if . == null then "-" else (. * 10000 | round / 100 | tostring) + "%" end;
    .training as $t
    | ($t.lookahead_layers | map({key: (.layer | tostring), value: .}) | from_entries) as $la
    | "layer | own | own recall | own precision | own pred. dens. | true dens. | look-ahead | la. recall | la. precision | la. pred. dens.",
      "---|---|---|---|---|---|---|---|---|---",
      ($t.layers[] | . as $o | ($la[$o.layer | tostring]) as $a
        | "\($o.layer) | \(if $o.dense then "dense" else "pred" end) | \($o.recall | pct) | \($o.precision | pct) | \($o.predicted_density | pct) | \($o.true_density | pct) | \(if $a == null then "-" elif $a.stored then "pred" else "too dense" end) | \($a.recall | pct) | \($a.precision | pct) | \($a.predicted_density | pct)")
  ' "$b/predictors.json"
done
