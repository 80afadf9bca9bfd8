#!/usr/bin/env bash
# The flash runtime on opt-mini (docs/BENCHMARKS.md, "Flash runtime on opt-mini"): convert (bundled and
# split layouts), record activations over the training sample, train predictors, then the per-token
# breakdown of naive / hybrid / predictor (no window) / flash at several DRAM budgets, the split-layout
# ablation, the page-cache effect, and the process's resident memory.
# Usage: scripts/flash-modes.sh [WORK_DIR] [RECORD_TOKENS]     (defaults: /tmp/llmflash-flash-modes, 24576)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/llmflash-flash-modes}"
tokens="${2:-24576}"
mkdir -p "$work"
lf="$root/llmflash"
for layout in bundled split; do
  b="$work/opt-mini-$layout.bundle"
  "$lf" convert --input "$root/testdata/models/opt-mini" --output "$b" --layout "$layout" --force >/dev/null 2>&1
  rm -rf "$work/$layout.acts"
  "$lf" record --model "$b" --text "$root/testdata/reference/train-sample.txt" --tokens "$tokens" --output "$work/$layout.acts" >/dev/null 2>&1
  "$lf" train-predictor --model "$b" --activations "$work/$layout.acts" > "$work/$layout.train.txt"
done
b="$work/opt-mini-bundled.bundle"
echo "== predictors (bundled)"; cat "$work/bundled.train.txt"
echo "== 50% of the model:"
"$lf" generate --model "$b" --prompt x --mode flash --memory 50% 2>&1 | tail -1 || true
for mem in 14M 15M 16M 18M; do
  echo "== bench --memory $mem --io-threads 8"
  "$lf" bench --model "$b" --memory "$mem" --io-threads 8 --tokens 64 --warmup 32 --methods naive,hybrid,predictor,flash,flash-page-cache --json > "$work/bench-$mem.json"
  python3 - "$work/bench-$mem.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'method':17s} {'FFN in DRAM':>11s} {'I/O wait':>8s} {'mem ms':>7s} {'compute':>8s} {'total':>7s} {'p50':>7s} {'read/token':>11s} {'device/token':>12s} {'hit rate':>8s} {'window':>6s} {'overflows':>9s}")
for m in d['methods']:
    share = m.get('cache_share_of_ffn', m.get('resident_share_of_ffn', 0.0))
    print(f"{m['method']:17s} {100*share:10.0f}% {m['io_wait_ms']:8.3f} {m['mem_ms']:7.3f} {m['compute_ms']:8.3f} {m['total_ms']:7.3f} {m['total_ms_p50']:7.3f} "
          f"{m['bytes_read_per_token']/1024:8.1f} KiB {m['device_bytes_read_per_token']/1024:9.1f} KiB {100*m['cache_hit_rate']:7.1f}% {m['window_tokens_mean']:6.1f} {m['overflows']:9d}")
PY
done
echo "== split layout (no bundling), --memory 15M --io-threads 8"
"$lf" bench --model "$work/opt-mini-split.bundle" --memory 15M --io-threads 8 --tokens 64 --warmup 32 --methods predictor,flash
echo "== resident memory: generate 256 tokens, flash --memory 15M --io-threads 8, and dense"
for mode in flash dense; do
  extra=(); [ "$mode" = flash ] && extra=(--memory 15M --io-threads 8)
  "$lf" generate --model "$b" --prompt "In the beginning God created" --max-tokens 256 --mode "$mode" "${extra[@]}" --json \
    | python3 -c "import json,sys; m=json.load(sys.stdin)['metrics']['memory']; print('$mode', {k: round(v/2**20, 2) for k, v in m.items()}, '(MiB)')"
done
