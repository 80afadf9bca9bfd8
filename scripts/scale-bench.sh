#!/usr/bin/env bash
# The scale benchmark (docs/BENCHMARKS.md, "Scale"): an OPT-6.7B-shaped model (random f16 weights,
# 13.3 GB) run at a DRAM budget of 50% of its size, every method in its own JVM, with the machine's
# reference figures measured in the same run and the charts written to docs/figures/SHAPE/.
#   scripts/scale-bench.sh [--quick] [WORK_DIR]
#     --quick: the opt-1.3b shape (2.6 GB) instead of opt-6.7b
#     WORK_DIR: where the checkpoint and its bundles go (default /work/synth-out; about 3x the model's size)
# Activity: the synthetic generator calibrated to the paper (--activity synthetic: 10.5% of each layer
# predicted per token, 2.4% of the FFN new per token with a 5-token window), because random weights
# have no realistic sparsity; a random predictor per layer (rank 128, the paper's for OPT-6.7B; 64 for
# opt-1.3b, the same 2% of the FFN's parameters) is evaluated for its cost.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shape=opt-6.7b; rank=128; memory=50%
# opt-1.3b's resident part is 37% of it: at 50% the predictors (own + look-ahead) and the KV cache leave
# less than one token's predicted set per layer, which the plan refuses; 60% is the least round share that runs.
if [ "${1:-}" = "--quick" ]; then shape=opt-1.3b; rank=64; memory=60%; shift; fi
work="${1:-/work/synth-out}"
lf="$root/llmflash"
hf="$work/$shape"
mkdir -p "$work"
start=$(date +%s)
if [ ! -f "$hf/config.json" ]; then
  "$lf" synth --shape "$shape" --output "$hf"
fi
for layout in bundled split; do
  b="$work/$shape.bundle"; [ "$layout" = split ] && b="$work/$shape-split.bundle"
  if [ ! -f "$b/manifest.json" ] || [ "$hf/config.json" -nt "$b/manifest.json" ]; then
    "$lf" convert --input "$hf" --output "$b" --dtype f16 --layout "$layout" --force
  fi
done
out="$root/docs/figures/$shape"
mkdir -p "$out"
"$lf" bench --model "$work/$shape.bundle" --split-model "$work/$shape-split.bundle" --memory "$memory" \
  --methods naive,hybrid,predictor,window,all-threads,all-serial,all --activity synthetic --predictor-rank "$rank" --isolate --prewarm --limits --window-sweep 1,2,3,4,5,6,8 --sweep-memory 75% --tokens 32 --warmup 4 \
  --charts "$out" --json > "$out/bench.json"
python3 - "$out/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'method':10s} {'I/O':>7s} {'overlap':>7s} {'I/O cpu':>7s} {'I/O wait':>9s} {'mem ms':>8s} {'compute':>9s} {'total ms':>9s} {'p50':>9s} {'p90':>9s} {'read/token':>11s} {'read GB/s':>9s} {'hit':>6s} {'peak RSS':>9s}")
for m in d['methods'] + d.get('window_sweep', []):
    name = m['method'] + (f" K={m['window']}" if 'window' in m and m in d.get('window_sweep', []) else '')
    ov = m.get('overlap')
    print(f"{name:10s} {m['io_ms']:7.1f} {'-' if ov is None else f'{100*ov:.0f}%':>7s} {m.get('io_cpu_ms', 0):7.1f} {m['io_wait_ms']:9.1f} {m['mem_ms']:8.1f} {m['compute_ms']:9.1f} {m['total_ms']:9.1f} {m['total_ms_p50']:9.1f} {m['total_ms_p90']:9.1f} "
          f"{m['bytes_read_per_token']/1e6:8.1f} MB {m['read_gbps']:9.3f} {100*m['cache_hit_rate']:5.1f}% {m['peak_rss_bytes']/2**30:6.2f} GiB")
l = d['limits']
print(json.dumps(l, indent=1))
PY
echo "scale-bench $shape: $(( $(date +%s) - start )) s in all"
