#!/usr/bin/env bash
# Perplexity of the bundled small models on the checked-in test text (testdata/reference/dev.txt) in
# f16, q8 and q4, dense and flash: per model and precision, convert (--quant), record activations on
# the training sample through that bundle, train its predictors, then perplexity --mode dense and
# --mode flash, and the predictors' mean recall (--mode predicted: held in the bundle's precision). Prints a
# markdown table (and bundle sizes); the f16 dense figure is the one that
# equals Hugging Face's (docs/BENCHMARKS.md, "Perplexity").
# Usage: scripts/quant-quality.sh [WORK_DIR] [TOKENS]     (defaults: /tmp/llmflash-quant, 81920)
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
work="${1:-/tmp/llmflash-quant}"
tokens="${2:-81920}"
mkdir -p "$work"
rows=()
for m in opt-mini falcon-mini-relu; do
  for q in none q8 q4; do
    b="$work/$m-$q.bundle"
    echo "== $m $q" >&2
    "$root/llmflash" convert --input "$root/testdata/models/$m" --output "$b" --dtype f16 --quant "$q" --force >/dev/null 2>&1
    rm -rf "$work/$m-$q.acts"
    "$root/llmflash" record --model "$b" --text "$root/testdata/reference/train-sample.txt" --tokens "$tokens" \
      --output "$work/$m-$q.acts" >/dev/null 2>&1
    "$root/llmflash" train-predictor --model "$b" --activations "$work/$m-$q.acts" >/dev/null 2>&1
    dense=$("$root/llmflash" perplexity --model "$b" --text "$root/testdata/reference/dev.txt" --mode dense --json 2>/dev/null \
      | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])')
    flash=$("$root/llmflash" perplexity --model "$b" --text "$root/testdata/reference/dev.txt" --mode flash --json 2>/dev/null \
      | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])')
    recall=$("$root/llmflash" perplexity --model "$b" --text "$root/testdata/reference/dev.txt" --mode predicted --json 2>/dev/null \
      | python3 -c 'import json,sys; l=json.load(sys.stdin)["predicted_layers"]; print("%.2f%%" % (100 * sum(x["recall"] for x in l) / len(l)))')
    bytes=$(( $(stat -c %s "$b/resident.safetensors") + $(stat -c %s "$b/ffn.bin") ))
    rows+=("$m|$q|$bytes|$dense|$flash|$recall")
    echo "$m $q: bytes $bytes dense $dense flash $flash" >&2
  done
done
echo "| model | precision (predictors held in) | resident + ffn.bin bytes | dense ppl | vs f16 | flash ppl | vs f16 flash | predictor recall on dev.txt |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r m q bytes dense flash recall <<<"$r"
  [ "$q" = none ] && { bd=$dense; bf=$flash; }
  python3 - "$m" "$q" "$bytes" "$dense" "$flash" "$bd" "$bf" "$recall" <<'PY'
import sys
m, q, b, d, f, bd, bf, rc = sys.argv[1:]
name = {"none": "f16 (f16)", "q8": "q8 (Q8_0)", "q4": "q4 (Q4_0)"}[q]
pct = lambda a, r: "-" if q == "none" else "%+.2f%%" % (100 * (float(a) / float(r) - 1))
print(f"| {m} | {name} | {int(b):,} | {d} | {pct(d, bd)} | {f} | {pct(f, bf)} | {rc} |")
PY
done
